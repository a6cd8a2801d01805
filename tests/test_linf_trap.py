"""The L-infinity trap (notebook 04, benchmarks/linf_trap.py): the spatial grid search, the union of
threat models in training (attacks.WorstOf, AdversarialTrainingConfig.union), the L2 training path and
the unconfounded recipes of training.union."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import attacks
from course_utils.attacks import AttackConfig, SpatialGrid, WorstOf
from course_utils.training import AdversarialTrainingConfig, adversarial_fit, train_step, union


def _bar(n=2):
    """n images (n, 1, 28, 28) of a horizontal bar through the centre (rows 13-14, columns 6-21)."""
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 13:15, 6:22] = 1.0
    return x


class Orientation(nn.Module):
    """Class 1 when the image's mass is tilted (|centred second moment xy| large), else class 0:
    a horizontal bar is class 0, the same bar rotated is class 1, shifting it changes nothing."""

    def forward(self, x):
        b, _, h, w = x.shape
        m = x.flatten(1).sum(1).clamp_min(1e-6)
        rows = torch.arange(h, dtype=x.dtype).view(1, h, 1)
        cols = torch.arange(w, dtype=x.dtype).view(1, 1, w)
        img = x[:, 0]
        r0 = (img * rows).flatten(1).sum(1) / m
        c0 = (img * cols).flatten(1).sum(1) / m
        cov = (img * (rows - r0.view(-1, 1, 1)) * (cols - c0.view(-1, 1, 1))).flatten(1).sum(1) / m
        return torch.stack([torch.zeros_like(cov), cov.abs() - 1.0], 1)


class Constant(nn.Module):
    """Ignores its input: every transformation gives the same loss."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([1.0, 0.0]))

    def forward(self, x):
        return self.bias.expand(x.shape[0], 2)


def test_affine_rotates_counter_clockwise_and_shifts_exactly():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 5, 10] = 1.0
    assert attacks.affine(x, 0.0, 2, 1)[0, 0].nonzero().tolist() == [[6, 12]]  # 2 right, 1 down, exact
    rotated = attacks.affine(x, 90.0, 0, 0)[0, 0]
    r, c = divmod(int(rotated.argmax()), 28)
    assert (r, c) == (17, 5)  # above and left of the centre (13.5, 13.5) -> below and left (counter-clockwise)
    from torchvision.transforms.functional import InterpolationMode, rotate

    smooth = F.avg_pool2d(torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)), 5, 1)[..., :28, :28]
    ours, tv = attacks.affine(smooth, 20.0, 0, 0), rotate(smooth, 20.0, interpolation=InterpolationMode.BILINEAR)
    assert (ours - tv)[..., 6:22, 6:22].abs().max() < 0.02  # same convention as torchvision (notebook 01)


def test_spatial_grid_finds_the_rotation_that_fools_an_orientation_model():
    model, x, y = Orientation(), _bar(), torch.zeros(2, dtype=torch.long)
    assert (model(x).argmax(1) == y).all()  # correct on the unrotated bar
    x_adv, params = SpatialGrid(30.0, 3, angles=7, shifts=1).search(model, x, y)
    assert (model(x_adv).argmax(1) != y).all()
    assert (params[:, 0].abs() > 0).all() and (params[:, 1:] == 0).all()
    assert torch.allclose(x_adv, attacks.affine(x, params[:, 0], 0, 0))
    # shifts alone do not fool it: the search must not report a success it did not find
    x_shift, _ = SpatialGrid(0.0, 3, angles=1, shifts=7).search(model, x, y)
    assert (model(x_shift).argmax(1) == y).all()


def test_spatial_grid_returns_the_identity_when_nothing_changes_the_loss():
    model, x, y = Constant(), _bar(), torch.zeros(2, dtype=torch.long)
    grid = SpatialGrid(30.0, 3, angles=5, shifts=3)
    x_adv, params = grid.search(model, x, y)
    assert torch.equal(x_adv, x) and torch.equal(params, torch.zeros(2, 3))
    assert grid.grid()[0] == (0.0, 0.0, 0.0) and len(grid.grid()) == 5 * 3 * 3
    assert "30 deg" in str(grid) and "3 px" in str(grid)


def _toy(seed=0, n=32):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.rand(n, 1, 4, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return model, x, y


LINF = AttackConfig(0.3, steps=5, random_start=False)
L2 = AttackConfig(1.0, steps=5, norm="l2", random_start=False)


def test_union_training_step_trains_each_example_on_the_worse_attack():
    model, x, y = _toy()
    xa, xb = LINF(model, x, y), L2(model, x, y)
    with torch.no_grad():
        sa, sb = attacks._score(model(xa), y), attacks._score(model(xb), y)
    pick_b = sb > sa
    assert 0 < int(pick_b.sum()) < len(y)  # the case that tells per-example from per-batch selection
    expected = torch.where(pick_b.view(-1, 1, 1, 1), xb, xa)
    assert torch.equal(WorstOf((LINF, L2))(model, x, y), expected)

    def step(m, attack):
        m = copy.deepcopy(m)
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        train_step(m, opt, x, y, attack)
        return torch.cat([p.detach().flatten() for p in m.parameters()])

    def fixed(x_in):
        return lambda m, x_, y_: x_in

    union_weights = step(model, WorstOf((LINF, L2)))
    assert torch.allclose(union_weights, step(model, fixed(expected)))
    for other in (xa, xb, (xa + xb) / 2):  # one attack only, or the average: different updates
        assert not torch.allclose(union_weights, step(model, fixed(other)))


def test_union_config_ramps_every_member_and_keeps_old_cache_keys():
    cfg = AdversarialTrainingConfig(AttackConfig(0.3, steps=3, alpha=0.15), epochs=4, ramp_epochs=2,
                                    union=(AttackConfig(2.0, steps=3, alpha=1.0, norm="l2"),))
    half, full = cfg.epoch_attack(cfg.schedule()[0]), cfg.epoch_attack(cfg.schedule()[3])
    assert isinstance(half, WorstOf) and [a.norm for a in half.attacks] == ["linf", "l2"]
    assert [a.eps for a in half.attacks] == pytest.approx([0.15, 1.0])
    assert [a.alpha for a in half.attacks] == pytest.approx([0.075, 0.5]) and [a.steps for a in half.attacks] == [2, 2]
    assert [a.eps for a in full.attacks] == pytest.approx([0.3, 2.0]) and [a.steps for a in full.attacks] == [3, 3]
    assert cfg.val_attack == WorstOf((AttackConfig(0.3, steps=10), AttackConfig(2.0, steps=10, norm="l2")))
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["union"][0]["norm"] == "l2" and len(d["val_attack"]["worst_of"]) == 2
    plain = cfg.replace(union=())
    assert plain.val_attack == AttackConfig(0.3, steps=10) and "union" not in plain.to_dict()
    with pytest.raises(ValueError, match="union"):
        AdversarialTrainingConfig(AttackConfig(0.3), union=("l2",))


def test_l2_training_path_trains_on_l2_perturbations():
    model, x, y = _toy(1, n=16)
    cfg = AdversarialTrainingConfig(AttackConfig(1.0, steps=3, norm="l2"), epochs=2, ramp_epochs=2, lr=0.05,
                                    optimizer="sgd", lr_schedule="constant")
    seen = []
    attack = cfg.epoch_attack(cfg.schedule()[1])
    real = attack.__class__.__call__

    class Spy(AttackConfig):  # records each training batch's perturbation
        def __call__(self, m, xx, yy):
            out = real(self, m, xx, yy)
            seen.append(out - xx)
            return out

    cfg_spy = cfg.replace(attack=Spy(**{f: getattr(cfg.attack, f) for f in ("eps", "steps", "alpha", "norm")}))
    res = adversarial_fit(model, [(x, y)], cfg_spy, val=(x, y), progress=False)
    assert res.history["eps"].tolist() == pytest.approx([0.5, 1.0])  # the L2 radius, ramped
    assert cfg.val_attack.norm == "l2" and cfg.val_attack.eps == 1.0
    assert len(seen) == 2
    l2 = [d.flatten(1).norm(dim=1) for d in seen]
    linf = [d.flatten(1).abs().amax(dim=1) for d in seen]
    assert all((n <= e + 1e-5).all() for n, e in zip(l2, (0.5, 1.0)))
    assert l2[1].max() > 0.9  # the attack used the L2 budget ...
    assert linf[1].max() > 0.3  # ... with pixel changes no L-inf eps = 0.3 ball allows


def test_trap_recipes_differ_from_the_linf_recipe_only_in_the_training_attack():
    base = union.recipe("linf", "smoke")
    allowed = {"attack", "val_attack", "union", "ratio"}
    for kind in ("standard", "l2", "union"):
        r = union.recipe(kind, "smoke")
        assert {k: v for k, v in r.items() if k != "train"} == {k: v for k, v in base.items() if k != "train"}
        a, b = r["train"].to_dict(), base["train"].to_dict()
        changed = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
        assert changed and changed <= allowed, (kind, changed)
    l2 = union.recipe("l2", "quick")["train"].attack
    linf = union.recipe("linf", "quick")["train"].attack
    assert (l2.norm, l2.eps, l2.steps, l2.kind) == ("l2", union.L2_EPS, linf.steps, linf.kind)
    assert l2.alpha / l2.eps == pytest.approx(linf.alpha / linf.eps)
    assert union.recipe("standard", "quick")["train"].ratio == 0.0
    assert union.cache_name("linf", "quick").startswith("mnist_robust_quick_")
    assert len({union.cache_name(k, "quick") for k in union.KINDS}) == 4


def test_jsma_is_sparse_and_leaves_already_wrong_images_alone(tiny_model):
    from course_utils import interop

    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.5
    with torch.no_grad():
        pred = tiny_model(x).argmax(1)
    y = pred.clone()
    y[:3] = (pred[:3] + 1) % 10  # the model is wrong on the first three
    x_adv = interop.jsma(theta=1.0, gamma=0.05)(tiny_model, x, y)
    changed = (x_adv != x).flatten(1).sum(1)
    assert (changed[:3] == 0).all()  # already wrong: returned unchanged
    assert (changed[3:] > 0).all() and (changed <= 0.05 * 784 + 2).all()  # sparse: at most gamma of the pixels
    assert ((x_adv - x)[x_adv != x] > 0).all()  # theta = +1 only brightens pixels
    again = interop.jsma(theta=1.0, gamma=0.05)(tiny_model, x, y)
    assert torch.equal(again, x_adv)  # seeded targets: the same images get the same attack


def _table(square_linf: int, n: int = 500):
    """A trap table with accuracies as counts of n; only the L-inf model's L2 Square count varies."""
    from course_utils.evaluation import EvalResult

    counts = {"clean": (496, 496, 496, 497), "L-inf PGD": (0, 478, 0, 474), "L2 PGD": (27, 478, 378, 465),
              "L2 Square": (20, square_linf, 370, 460), "rotation+translation": (0, 0, 0, 1)}
    return {(m, t): EvalResult(c[i], n, threat=t) for t, c in counts.items()
            for i, m in enumerate(("standard", "linf", "l2", "union"))}


def test_findings_flag_l2_gradient_masking_only_when_square_beats_pgd():
    masked = union.findings(_table(square_linf=360))  # 72% under Square vs 95.6% under PGD: masked
    lines = [line for line in masked if "gradient masking" in line]
    assert len(lines) == 1 and lines[0].startswith("linf model, L2") and "72.0%" in lines[0]
    honest = union.findings(_table(square_linf=476))  # within noise of PGD: nothing to flag
    assert not any("gradient masking" in line for line in honest)
    assert any(line.startswith("union vs L-inf model, L2 Square") for line in honest)


def test_threat_models_include_a_gradient_free_l2_column():
    threats = union.threat_models("smoke")
    assert list(threats) == ["clean", "L-inf PGD", "L2 PGD", "L2 Square", "rotation+translation", "sparse (JSMA)"]
    attack, threat = threats["L2 Square"]
    assert "Square" in threat and "l2" in threat and "eps=2" in threat
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    x, y = torch.rand(4, 1, 28, 28), torch.arange(4)
    x_adv = attack(model, x, y)
    assert ((x_adv - x).flatten(1).norm(dim=1) <= union.L2_EPS + 1e-4).all() and x_adv.min() >= 0 and x_adv.max() <= 1


def test_below_pairs_the_images_when_both_results_carry_them():
    from course_utils.evaluation import EvalResult

    a_ok, b_ok = torch.zeros(500, dtype=torch.bool), torch.zeros(500, dtype=torch.bool)
    a_ok[:450], b_ok[:470] = True, True  # 20 images only b gets right, none only a: 90.0% vs 94.0%
    a = EvalResult(450, 500, "a", details={"per_image": a_ok})
    b = EvalResult(470, 500, "b", details={"per_image": b_ok})
    assert a.ci[1] > b.ci[0]  # the intervals overlap: the unpaired rule would call it noise
    assert union.below(a, b) and not union.below(b, a)  # McNemar on the same images: 20 vs 0 discordant
    a2, b2 = torch.zeros(500, dtype=torch.bool), torch.zeros(500, dtype=torch.bool)
    a2[:460], b2[30:] = True, True  # 92.0% vs 94.0%, but 30 vs 40 discordant images: noise (p = 0.28)
    assert not union.below(EvalResult(460, 500, "a", details={"per_image": a2}),
                           EvalResult(470, 500, "b", details={"per_image": b2}))
    assert "per_image" not in a.row()  # the vector stays out of tables
