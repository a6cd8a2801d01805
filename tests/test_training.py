"""Unit tests of course_utils.training and course_utils.adversarial_training (notebooks 04, 05, p1)."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import attacks, training
from course_utils.adversarial_training import TrainingAttack, adversarial_fit, curriculum, robustness_ladder
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
    attack = TrainingAttack("pgd", eps=0.1, alpha=0.025, steps=10)
    fixed = lambda m, xx, yy: attacks.pgd(m, xx, yy, 0.1, 0.025, 10, random_start=False)  # noqa: E731
    before = _adv_loss(model, x, y, fixed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss, _ = training.train_step(model, opt, x, y, fixed)
    after = _adv_loss(model, x, y, fixed)
    assert abs(loss.item() - before) < 1e-5  # trained on exactly the adversarial batch
    assert after < before
    assert str(attack).startswith("PGD linf eps=0.1")


@pytest.mark.parametrize("kind,alpha", [("fgsm", 0.1), ("fgsm_rs", 0.125), ("pgd", 0.025)])
def test_training_attacks_stay_in_the_ball(kind, alpha):
    model, x, y = _batch(1)
    attack = TrainingAttack(kind, eps=0.1, steps=10, generator=torch.Generator().manual_seed(0))
    assert attack.alpha == pytest.approx(alpha)
    x_adv = attack(model, x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert TrainingAttack("pgd", eps=0.0)(model, x, y) is x


def test_training_attack_rejects_bad_input():
    with pytest.raises(ValueError, match="kind"):
        TrainingAttack("cw", eps=0.1)
    with pytest.raises(ValueError, match="eps"):
        TrainingAttack("pgd", eps=-1)


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
    res = adversarial_fit(model, loader, 3, eps=0.1, kind="fgsm_rs", lr=0.1, val=(x[:64], y[:64]), val_steps=3,
                          checkpoint=tmp_path / "m.pt", progress=False)
    h = res.history
    assert list(h["epoch"]) == [1, 2, 3] and h["val_robust"].between(0, 1).all()
    assert h["val_robust"].iloc[res.best_epoch - 1] == h["val_robust"].max()
    assert res.robust_overfitting >= 0 and h["val_robust"].max() > 0.8
    again = training.load_checkpoint(nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)),
                                     tmp_path / "m.pt")
    assert torch.equal(again(x[:5]), model(x[:5]))
    assert json.loads((tmp_path / "m.pt.json").read_text())["best_epoch"] == res.best_epoch


def test_early_stopping_on_patience():
    x, y = _toy_data(seed=1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    res = adversarial_fit(model, loader, 6, eps=0.1, kind="fgsm", lr=0.0, lr_schedule="constant",
                          val=(x[:32], y[:32]), val_steps=2, patience=2, progress=False)
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
    ladder = robustness_ladder(model, (x, y), 0.2, weak=(2, 0.01, 1), strong=(10, None, 2), auto=False, progress=False)
    assert [r.threat.split(" (")[0] for r in ladder] == ["clean", "PGD", "PGD"]
    assert ladder[2].accuracy <= ladder[1].accuracy <= ladder[0].accuracy


def test_per_class_accuracy_and_disjoint_split():
    from course_utils.adversarial_training import per_class_accuracy
    from course_utils.zoo import split_indices

    acc = per_class_accuracy(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), classes=4)
    assert acc[:3].tolist() == [1.0, 1.0, 0.5] and torch.isnan(acc[3])
    train_idx, val_idx = split_indices(100, 80, 20, seed=0)
    assert len(set(train_idx.tolist()) | set(val_idx.tolist())) == 100
