"""Unit tests of course_utils.training (the loop, adversarial training, checkpoints; notebooks 04, 05, p1)."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import training
from course_utils.attacks import AttackConfig
from course_utils.evaluation import per_class_accuracy, robustness_ladder
from course_utils.training import AdversarialTrainingConfig, adversarial_fit, curriculum
from course_utils.checks.attacks import tiny_classifier


def _batch(seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    model = tiny_classifier(g)
    x = torch.rand(n, 1, 2, 6, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return model, x, y


def _adv_loss(model, x, y, attack):
    x_adv = attack(model, x, y)
    with torch.no_grad():
        return F.cross_entropy(model(x_adv), y).item()


def test_one_adversarial_step_lowers_the_adversarial_loss():
    model, x, y = _batch()
    attack = AttackConfig(0.1, alpha=0.025, steps=10)
    fixed = attack.replace(random_start=False)
    before = _adv_loss(model, x, y, fixed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss, _ = training.train_step(model, opt, x, y, fixed)
    after = _adv_loss(model, x, y, fixed)
    assert abs(loss.item() - before) < 1e-5  # trained on exactly the adversarial batch
    assert after < before
    assert str(attack) == "PGD linf eps=0.1 alpha=0.025 steps=10 restarts=1"
    assert str(fixed).endswith("start=x")


@pytest.mark.parametrize("kind,alpha", [("fgsm", 0.1), ("fgsm_rs", 0.125), ("pgd", 0.025)])
def test_training_attacks_stay_in_the_ball(kind, alpha):
    model, x, y = _batch(1)
    attack = AttackConfig(0.1, kind=kind, steps=10, generator=torch.Generator().manual_seed(0))
    assert attack.alpha == pytest.approx(alpha)
    x_adv = attack(model, x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert AttackConfig(0.0)(model, x, y) is x


def test_training_attack_rejects_bad_input():
    with pytest.raises(ValueError, match="kind"):
        AttackConfig(0.1, kind="cw")
    with pytest.raises(ValueError, match="eps"):
        AttackConfig(-1)
    with pytest.raises(ValueError, match="norm"):
        AttackConfig(0.1, norm="Linf")


def test_mixed_batch_uses_the_ratio():
    model, x, y = _batch(2, n=10)
    calls = []

    def attack(m, xx, yy):
        calls.append(len(xx))
        return (xx + 0.05).clamp(0, 1)

    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    training.train_step(model, opt, x, y, attack, ratio=0.3)
    assert calls == [3]
    mixed = training.mix_batch(x, attack(model, x, y), 0.5)
    assert torch.equal(mixed[5:], x[5:]) and not torch.equal(mixed[:5], x[:5])
    with pytest.raises(ValueError, match="ratio"):
        training.mix_batch(x, x, 1.5)


def test_curriculum_produces_the_stated_epsilons_and_steps():
    s = curriculum(epochs=5, eps=0.3, steps=10, ramp_epochs=3, steps_start=1)
    assert [round(r["eps"], 6) for r in s] == [0.1, 0.2, 0.3, 0.3, 0.3]
    assert [r["steps"] for r in s] == [4, 7, 10, 10, 10]
    assert [r["eps"] for r in curriculum(3, 8 / 255, ramp_epochs=0)] == [8 / 255] * 3
    with pytest.raises(ValueError):
        curriculum(0, 0.3)


def test_onecycle_schedule_peaks_at_lr_and_ends_near_zero():
    model = nn.Linear(2, 2)
    opt, sched = training.make_optimizer(model, lr=0.2, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert max(lrs) == pytest.approx(0.2) and lrs[0] < 0.05 and lrs[-1] < 0.05
    with pytest.raises(ValueError, match="total_steps"):
        training.make_optimizer(model, schedule="onecycle")


def _toy_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = (0.3 + 0.4 * y.view(-1, 1, 1, 1) + 0.1 * torch.randn(n, 1, 2, 2, generator=g)).clamp(0, 1)
    return x, y


def test_adversarial_fit_tracks_restores_best_and_checkpoints(tmp_path):
    torch.manual_seed(0)
    x, y = _toy_data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    cfg = AdversarialTrainingConfig(AttackConfig(0.1, kind="fgsm_rs"), epochs=3, lr=0.1,
                                    val_attack=AttackConfig(0.1, steps=3, alpha=0.025))
    res = adversarial_fit(model, loader, cfg, val=(x[:64], y[:64]), checkpoint=tmp_path / "m.pt", progress=False)
    h = res.history
    assert list(h["epoch"]) == [1, 2, 3] and h["val_robust"].between(0, 1).all()
    assert h["val_robust"].iloc[res.best_epoch - 1] == h["val_robust"].max()
    assert res.robust_overfitting >= 0 and h["val_robust"].max() > 0.8
    again = training.load_checkpoint(nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)),
                                     tmp_path / "m.pt")
    assert torch.equal(again(x[:5]), model(x[:5]))
    side = json.loads((tmp_path / "m.pt.json").read_text())
    assert side["best_epoch"] == res.best_epoch and side["recipe"]["attack"]["kind"] == "fgsm_rs"


def test_early_stopping_on_patience():
    x, y = _toy_data(seed=1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    cfg = AdversarialTrainingConfig(AttackConfig.fgsm(0.1), epochs=6, lr=0.0, lr_schedule="constant",
                                    val_attack=AttackConfig(0.1, steps=2, alpha=0.025), patience=2)
    res = adversarial_fit(model, loader, cfg, val=(x[:32], y[:32]), progress=False)
    assert len(res.history) == 3 and res.best_epoch == 1 and "2 epochs" in res.stopped


def test_checkpoint_round_trip_and_tampering_refused(tmp_path):
    model, x, _ = _batch(3)
    path = tmp_path / "ck.pt"
    training.save_checkpoint(model, path, {"note": "test"})
    fresh = tiny_classifier(torch.Generator().manual_seed(99))
    training.load_checkpoint(fresh, path)
    assert torch.equal(fresh(x.flatten(1).view_as(x)), model(x))
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        training.load_checkpoint(fresh, path)


def test_ladder_on_a_tiny_model():
    torch.manual_seed(0)
    x, y = _toy_data(64, seed=2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    training.fit(model, [(x, y)] * 20, 1, lr=0.5, schedule="constant", progress=False)
    ladder = robustness_ladder(model, (x, y), 0.2, weak=AttackConfig(0.2, steps=2, alpha=0.01),
                               strong=AttackConfig(0.2, steps=10, restarts=2), auto=False, progress=False)
    assert [r.threat for r in ladder] == ["clean", "PGD linf eps=0.2 alpha=0.01 steps=2 restarts=1 (weak)",
                                          "PGD linf eps=0.2 alpha=0.05 steps=10 restarts=2 (strong)"]
    assert ladder[2].accuracy <= ladder[1].accuracy <= ladder[0].accuracy


def test_per_class_accuracy_and_disjoint_split():
    from course_utils.zoo import split_indices

    acc = per_class_accuracy(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), num_classes=4)
    assert acc[:3].tolist() == [1.0, 1.0, 0.5] and torch.isnan(acc[3])
    train_idx, val_idx = split_indices(100, 80, 20, seed=0)
    assert len(set(train_idx.tolist()) | set(val_idx.tolist())) == 100


@pytest.mark.parametrize("schedule,optimizer,expected", [
    ("piecewise", "adam", [0.1] * 8 + [0.01] * 2),  # lr / 10 for the last fifth (Gowal et al. 2018)
    ("multistep", "sgd", [0.1] * 5 + [0.01] * 3 + [0.001] * 2),  # / 10 at half, / 100 at three quarters (Rice et al.)
])
def test_step_schedules_drop_the_lr_where_they_say(schedule, optimizer, expected):
    model = nn.Linear(2, 2)
    opt, sched = training.make_optimizer(model, lr=0.1, total_steps=10, optimizer=optimizer, schedule=schedule)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx(expected)


def test_train_probe_is_measured_like_the_held_out_check():
    torch.manual_seed(0)
    x, y = _toy_data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    check = AttackConfig(0.1, steps=3, alpha=0.025)
    cfg = AdversarialTrainingConfig(AttackConfig(0.1, kind="fgsm_rs"), epochs=2, lr=0.1, val_attack=check)
    probe = (x[:64], y[:64])
    res = adversarial_fit(model, loader, cfg, val=(x[64:128], y[64:128]), train_probe=probe, progress=False)
    h = res.history
    assert {"train_clean", "train_robust"} <= set(h.columns)
    from course_utils.evaluation import evaluate
    model.eval()  # restore_best keeps the best epoch: recompute its row from the returned model
    row = h.iloc[res.best_epoch - 1]
    assert row["train_clean"] == evaluate(model, probe, progress=False).accuracy
    assert row["train_robust"] <= row["train_clean"]


def test_the_loss_hook_replaces_cross_entropy_and_sees_training_progress():
    x, y = _toy_data(64)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    seen = []

    def hook(m, xx, yy, t):
        seen.append(t)
        return (m(xx) ** 2).mean(), None  # no logits: accuracy is not defined

    hist = training.fit(model, [(x, y)] * 4, 2, lr=0.01, schedule="constant", loss_fn=hook, progress=False)
    assert seen == pytest.approx([0, 1 / 8, 2 / 8, 3 / 8, 4 / 8, 5 / 8, 6 / 8, 7 / 8])
    assert hist[1]["loss"] < hist[0]["loss"] and all(h["accuracy"] != h["accuracy"] for h in hist)  # NaN


def test_batches_with_several_inputs_call_the_model_with_all_of_them():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, a, b):
            return self.lin(a * b)

    a, b, y = torch.rand(8, 3), torch.ones(8, 3), torch.randint(0, 2, (8,))
    hist = training.fit(TwoInputs(), [(a, b, y)], 1, lr=0.1, schedule="constant", progress=False)
    assert 0 <= hist[0]["accuracy"] <= 1


def test_adversarial_training_config_ramps_the_attack_and_keeps_alpha_over_eps():
    cfg = AdversarialTrainingConfig(AttackConfig(0.3, steps=3, alpha=0.15), epochs=4, ramp_epochs=2)
    first = cfg.epoch_attack(cfg.schedule()[0])
    assert first.eps == pytest.approx(0.15) and first.alpha == pytest.approx(0.075) and first.steps == 2
    assert cfg.val_attack == AttackConfig(0.3, steps=10) and cfg.val_attack.alpha == pytest.approx(0.075)
    assert json.loads(json.dumps(cfg.to_dict()))["attack"]["alpha"] == 0.15
    with pytest.raises(ValueError, match="ratio"):
        AdversarialTrainingConfig(AttackConfig(0.3), ratio=2)
    assert cfg.replace(attack=AttackConfig(0.1)).val_attack == AttackConfig(0.1, steps=10)  # the check follows
    hand = cfg.replace(val_attack=AttackConfig(0.3, steps=3))
    assert hand.replace(attack=AttackConfig(0.1)).val_attack == AttackConfig(0.3, steps=3)  # a chosen check stays


def _saved_model_file(tmp_path, **meta):
    from course_utils import models

    model = models.mnist_small_cnn(**meta.get("architecture_kwargs", {}))
    path = tmp_path / "m.pt"
    training.save_checkpoint(model, path, {"architecture": "mnist_small_cnn", **meta})
    return model, path


def test_load_model_file_checks_everything_in_order(tmp_path):
    from course_utils import models

    model, path = _saved_model_file(tmp_path, architecture_kwargs={"width": 1})
    loaded, meta = training.load_model_file(path, models.build_model)
    assert not loaded.training and meta["architecture"] == "mnist_small_cnn"
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(loaded(x), model.eval()(x))
    with pytest.raises(training.ModelFileError, match="architecture in"):
        training.load_model_file(path, {"other": models.build_model})
    side = path.with_name("m.pt.json")
    good = json.loads(side.read_text())
    side.write_text(json.dumps({k: v for k, v in good.items() if k != "sha256"}))
    with pytest.raises(training.ModelFileError, match="no SHA-256"):
        training.load_model_file(path, models.build_model)
    side.write_text("[1, 2]")
    with pytest.raises(training.ModelFileError, match="JSON object"):
        training.load_model_file(path, models.build_model)
    side.write_text("{not json")
    with pytest.raises(training.ModelFileError, match="not valid JSON"):
        training.load_model_file(path, models.build_model)
    side.unlink()
    with pytest.raises(training.ModelFileError, match="sidecar"):
        training.load_model_file(path, models.build_model)
    with pytest.raises(training.ModelFileError, match="does not exist"):
        training.load_model_file(tmp_path / "missing.pt", models.build_model)


def test_load_model_file_refuses_tampered_weights_and_bad_kwargs(tmp_path):
    from course_utils import models

    _, path = _saved_model_file(tmp_path, architecture_kwargs={"width": 2})
    side = json.loads(path.with_name("m.pt.json").read_text())
    side["architecture_kwargs"] = {"width": 1}  # the sidecar no longer describes the weights
    path.with_name("m.pt.json").write_text(json.dumps(side))
    with pytest.raises(training.ModelFileError, match="could not be loaded"):
        training.load_model_file(path, models.build_model)
    side["architecture_kwargs"] = {"width": 2}
    path.with_name("m.pt.json").write_text(json.dumps(side))
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(training.ModelFileError, match="SHA-256"):
        training.load_model_file(path, models.build_model)


def test_every_zoo_model_is_built_on_the_course_device():
    from course_utils import zoo
    from course_utils.config import get_device

    device = get_device()
    for table in (zoo.RECIPES, zoo.STANDARD):
        for dataset, profiles in table.items():
            for profile, r in profiles.items():
                model = zoo.build(r).to(device)
                params = list(model.parameters())
                assert params and all(p.device.type == device.type for p in params), (dataset, profile)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_smoke_robust_recipe_trains_on_cuda(tmp_path, monkeypatch):
    from course_utils import zoo

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    model, history, r = zoo.robust_model("mnist", "smoke", device=torch.device("cuda"), progress=False)
    assert next(model.parameters()).is_cuda and len(history) == r["train"].epochs


@pytest.mark.parametrize("which", ["robust_model", "standard_model"])
def test_zoo_models_default_to_the_course_device(monkeypatch, which):
    from course_utils import training as training_pkg
    from course_utils import zoo

    course_device = torch.device("meta")  # stands for "whatever get_device() returns", e.g. cuda
    seen = {}

    def fake_cached_model(name, build, train, meta=None, device=None, shipped=True):
        seen["device"] = device
        return build().to(device)

    monkeypatch.setattr(zoo, "get_device", lambda: course_device)
    monkeypatch.setattr(training_pkg, "cached_model", fake_cached_model)
    model = getattr(zoo, which)("mnist", "smoke", progress=False)[0]
    assert seen["device"] == course_device and next(model.parameters()).device == course_device


def _history(val, train):
    import pandas as pd
    return pd.DataFrame({"epoch": range(1, len(val) + 1), "val_robust": val, "train_robust": train})


def test_robust_overfitting_verdict_needs_a_fall_beyond_noise_and_rising_training_robustness():
    rice = _history([0.20, 0.35, 0.45, 0.38, 0.30], [0.25, 0.45, 0.60, 0.75, 0.85])  # Rice et al.'s shape
    v = training.robust_overfitting_verdict(rice, n_val=500, decay_epoch=3)
    assert v.outcome == "shown" and "ROBUST OVERFITTING" in str(v) and "epoch 3" in str(v)
    noise = _history([0.20, 0.24, 0.22, 0.21], [0.25, 0.30, 0.31, 0.33])  # notebook 05's old quick run
    v = training.robust_overfitting_verdict(noise, n_val=300)
    assert v.outcome == "not resolved" and "within noise" in str(v)  # non-significance is not "no overfitting"
    underfit = _history([0.20, 0.45, 0.30], [0.30, 0.50, 0.40])  # fell, but training robustness fell too
    ok, text = training.robust_overfitting_verdict(underfit, n_val=1000)
    assert not ok and "did not keep rising" in text and "within noise" not in text
    assert not training.robust_overfitting_verdict(rice, n_val=20)  # same curve, too few images to tell
    with pytest.raises(ValueError, match="train_robust"):
        training.robust_overfitting_verdict(rice.drop(columns="train_robust"), n_val=500)


def test_robust_overfitting_verdict_refuses_a_lucky_checkpoint_before_the_decay():
    # issue 29: 05's quick run peaked at epoch 16 of a flat held-out curve, the decay started at 21;
    # the rule without the decay check printed "appeared" for exactly this history.
    flat = [0.10, 0.15, 0.19, 0.20, 0.21, 0.20, 0.26, 0.20, 0.21, 0.20, 0.20, 0.21, 0.20, 0.20]
    lucky = _history(flat, [0.2 + 0.03 * i for i in range(len(flat))])
    best = torch.zeros(1000, dtype=torch.bool)
    best[:260] = True
    last = best.clone()
    last[200:260] = False  # the lucky checkpoint beats the last one beyond noise
    assert training.robust_overfitting_verdict(lucky, n_val=300, final=(best, last))  # today's rule: "shown"
    v = training.robust_overfitting_verdict(lucky, n_val=300, final=(best, last), decay_epoch=10)
    assert v.outcome == "not resolved" and "does not follow the first decay" in str(v) and "lucky checkpoint" in str(v)
    v = training.robust_overfitting_verdict(lucky, n_val=300, final=(best, last), decay_epoch=7)
    assert v.outcome == "shown"  # the same fall, right after the decay: Rice et al.'s phenomenon
    v = training.robust_overfitting_verdict(lucky, n_val=300, final=(last, best), decay_epoch=7)
    assert v.outcome == "contradicted"  # the last checkpoint is the more robust one


def test_robust_overfitting_verdict_pairs_best_and_last_checkpoints_on_the_same_images():
    noisy = _history([0.20, 0.22, 0.15], [0.25, 0.40, 0.60])  # intervals on 300 images overlap
    assert not training.robust_overfitting_verdict(noisy, n_val=300)[0]
    best = torch.zeros(1000, dtype=torch.bool)
    best[:220] = True
    last = best.clone()
    last[150:220] = False  # 70 images only the best gets right, none only the last: a real fall
    ok, text = training.robust_overfitting_verdict(noisy, n_val=300, final=(best, last))
    assert ok and "McNemar" in text and "70 images only the best" in text
    swapped = best.clone()
    swapped[150:220] = False
    swapped[300:370] = True  # the same accuracy change is absent: 70 lost, 70 gained
    ok, text = training.robust_overfitting_verdict(noisy, n_val=300, final=(best, swapped))
    assert not ok and "McNemar p >= 0.05" in text
    with pytest.raises(ValueError, match="same non-zero length"):
        training.robust_overfitting_verdict(noisy, n_val=300, final=(best, last[:10]))


def test_adversarial_fit_returns_the_best_weights():
    torch.manual_seed(0)
    x, y = _toy_data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    cfg = AdversarialTrainingConfig(AttackConfig(0.1, kind="fgsm_rs"), epochs=3, lr=0.1, restore_best=True,
                                    val_attack=AttackConfig(0.1, steps=3, alpha=0.025))
    res = adversarial_fit(model, loader, cfg, val=(x[:64], y[:64]), progress=False)
    assert res.best_state is not None
    assert all(torch.equal(res.best_state[k], v) for k, v in model.state_dict().items())  # restored = best


def _single_step_history(val, train_acc):
    import pandas as pd
    return pd.DataFrame({"epoch": range(1, len(val) + 1), "val_robust": val, "train_acc": train_acc})


@pytest.mark.parametrize("val, train_acc, expected", [
    # issue 29: never robust (PGD <= 0.10 throughout) while beating its own attack: the old rule's "collapsed"
    ([0.10, 0.03, 0.01, 0.00], [0.40, 0.60, 0.75, 0.86], "underfit"),
    ([0.09, 0.05, 0.04, 0.02], [0.50, 0.80, 0.90, 0.95], "underfit"),  # 04's quick "collapsed" runs peaked at 0.09
    ([0.20, 0.45, 0.60, 0.15], [0.40, 0.60, 0.70, 0.80], "collapsed"),  # rose, then fell 0.45 below its best
    ([0.30, 0.70, 0.85, 0.05], [0.60, 0.80, 0.90, 0.99], "collapsed"),  # Wong et al.'s plain-FGSM shape
    ([0.08, 0.17, 0.30, 0.38], [0.13, 0.50, 0.79, 0.84], "robust"),  # 04's alpha = 0.75 eps run
    ([0.13, 0.13, 0.13, 0.13], [0.10, 0.11, 0.11, 0.11], "underfit"),  # a constant predictor: stuck, not collapsed
    ([0.05, 0.02, 0.00, 0.00], [0.10, 0.20, 0.25, 0.30], "underfit"),  # PGD 0 but it does not beat FGSM either
])
def test_catastrophic_overfitting_tells_a_collapse_from_an_underfit_run(val, train_acc, expected):
    outcome, text = training.catastrophic_overfitting(_single_step_history(val, train_acc))
    assert outcome == expected and text.startswith(expected)
    with pytest.raises(ValueError, match="train_acc"):
        training.catastrophic_overfitting(_single_step_history(val, train_acc).drop(columns="train_acc"))


def _ok(n_right, n=1000, start=0):
    v = torch.zeros(n, dtype=torch.bool)
    v[start:start + n_right] = True
    return v


def test_tradeoff_verdict_needs_a_clean_loss_and_a_robust_gain_beyond_noise():
    clean_std, robust_std = _ok(990), _ok(0)
    v = training.tradeoff_verdict(clean_std, robust_std, _ok(940), _ok(900))  # 5 clean points for 90 robust
    assert v.outcome == "shown" and "0.06 clean points per robust point" in str(v)
    v = training.tradeoff_verdict(_ok(970), robust_std, _ok(992), _ok(900))  # 09's TRADES: clean went UP beyond noise
    assert v.outcome == "contradicted" and "ROSE" in str(v)
    v = training.tradeoff_verdict(clean_std, robust_std, _ok(986, start=14), _ok(900))  # 14 lost, 10 gained: noise
    assert v.outcome == "not resolved" and "would be noise" in str(v)  # and not "no cost" either
    v = training.tradeoff_verdict(clean_std, _ok(30), _ok(900), _ok(35))  # clean fell, robustness did not rise
    assert v.outcome == "not resolved" and "robust accuracy did not rise" in str(v).lower()
    big_std, big_adv = _ok(9900, n=20000), _ok(9900, n=20000)
    big_adv[9000:9020], big_adv[15000:15020] = False, True  # 20 lost, 20 gained on 20,000: within a point
    v = training.tradeoff_verdict(big_std, _ok(0, n=20000), big_adv, _ok(9000, n=20000))
    assert v.outcome == "contradicted" and "TOST" in str(v)


def test_paired_comparison_and_table_pair_images_not_totals():
    from course_utils.evaluation import paired_comparison, paired_table
    a, shifted = _ok(500), _ok(500, start=250)  # same accuracy, 250 images each way
    assert paired_comparison(a, a)["p"] == 1.0
    same_total = paired_comparison(a, shifted)
    assert same_total["only_a"] == same_total["only_b"] == 250 and same_total["p"] == 1.0
    fell = paired_comparison(a, _ok(450))
    assert fell["only_a"] == 50 and fell["only_b"] == 0 and fell["p"] < 1e-10
    table = paired_table({"ref": a, "same total": shifted, "lower": _ok(450)}, "ref")
    assert table["beyond noise"].tolist() == [False, False, True]
    assert table.loc["lower", "minus ref (points)"] == -5.0
    with pytest.raises(ValueError, match="same non-zero length"):
        paired_comparison(a, a[:10])
    with pytest.raises(ValueError, match="reference"):
        paired_table({"ref": a}, "missing")


def test_trades_inner_maximization_stays_in_the_ball_and_raises_the_kl():
    model, x, _ = _batch(seed=3, n=32)
    g = torch.Generator().manual_seed(0)
    x_adv = training.trades_perturb(model, x, eps=0.1, alpha=0.025, steps=8, generator=g)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        p = F.softmax(model(x), 1)
        kl = lambda z: F.kl_div(F.log_softmax(model(z), 1), p, reduction="sum").item()  # noqa: E731
        start = (x + 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
        assert kl(x_adv) > 10 * max(kl(start), 1e-6)  # the steps maximized the KL, not just the start's noise
    model.train()
    training.trades_perturb(model, x, 0.1, 0.025, 2)
    assert model.training  # train mode restored after the eval-mode attack


def test_trades_loss_is_cross_entropy_plus_beta_times_the_kl():
    model, x, y = _batch(seed=4, n=32)
    ce = F.cross_entropy(model(x), y).item()
    loss0, logits = training.trades_loss(0.1, 0.025, 5, beta=0.0)(model, x, y)
    assert abs(loss0.item() - ce) < 1e-6 and logits.shape == (32, 3)
    torch.manual_seed(0)
    loss1, _ = training.trades_loss(0.1, 0.025, 5, beta=1.0)(model, x, y)
    torch.manual_seed(0)
    loss6, _ = training.trades_loss(0.1, 0.025, 5, beta=6.0)(model, x, y)
    kl = loss1.item() - ce
    assert kl > 0 and abs(loss6.item() - (ce + 6 * kl)) < 1e-4  # beta scales the KL term, not the clean loss
    loss1.backward()  # the hook's loss is differentiable in the weights (train_step calls backward on it)
    assert all(p.grad is not None for p in model.parameters())


def test_break_even_attack_share_and_error_rate():
    from course_utils.interview import break_even_attack_share, error_rate
    assert error_rate(0.99, 0.0, 0.0) == pytest.approx(0.01)
    assert error_rate(0.99, 0.0, 1.0) == pytest.approx(1.0)
    s = break_even_attack_share(0.99, 0.0, 0.94, 0.90)  # 5 clean points for 90 robust points
    assert s == pytest.approx(0.05 / 0.95)
    assert error_rate(0.99, 0.0, s) == pytest.approx(error_rate(0.94, 0.90, s))  # equal errors at the break-even
    assert error_rate(0.99, 0.0, 2 * s) > error_rate(0.94, 0.90, 2 * s)  # beyond it the robust model wins
    assert break_even_attack_share(0.97, 0.0, 0.99, 0.9) == 0.0  # no clean cost: it wins at any share
    assert break_even_attack_share(0.99, 0.5, 0.98, 0.5) is None  # not more robust: it never wins
    with pytest.raises(ValueError, match="attack_share"):
        error_rate(0.9, 0.5, 1.5)
