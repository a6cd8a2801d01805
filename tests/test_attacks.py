"""Unit tests of course_utils.attacks: threat-model constraints, strength, agreement with libraries."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils import attacks
from course_utils.evaluation import evaluate


@pytest.fixture
def batch(tiny_model):
    g = torch.Generator().manual_seed(1)
    return torch.rand(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.5)])
@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_stays_in_ball_and_box(tiny_model, batch, norm, eps, random_start):
    x, y = batch
    x_adv = attacks.pgd(tiny_model, x, y, eps=eps, alpha=eps / 4, steps=10, norm=norm,
                        random_start=random_start, restarts=2)
    assert x_adv.shape == x.shape
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (attacks.lp_norm(x_adv - x, norm) <= eps + 1e-5).all()


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.5)])
def test_fgsm_stays_in_ball_and_box(tiny_model, batch, norm, eps):
    x, y = batch
    x_adv = attacks.fgsm(tiny_model, x, y, eps, norm=norm)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (attacks.lp_norm(x_adv - x, norm) <= eps + 1e-5).all()


def test_projection_is_idempotent_and_exact():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(8, 3, 4, 4, generator=g)
    for norm, eps in [("linf", 0.2), ("l2", 1.0)]:
        p = attacks.project(d, eps, norm)
        assert torch.allclose(attacks.project(p, eps, norm), p)
        assert torch.allclose(attacks.lp_norm(p, norm), torch.full((8,), eps), atol=1e-6)  # all were outside
    small = d * 1e-3
    assert torch.equal(attacks.project(small, 1.0, "l2"), small)  # inside: unchanged


def test_l2_step_has_length_alpha():
    g = torch.Generator().manual_seed(0)
    grad = torch.randn(5, 1, 6, 6, generator=g)
    step = attacks.ascent_step(torch.zeros_like(grad), grad, 0.7, "l2")
    assert torch.allclose(attacks.lp_norm(step, "l2"), torch.full((5,), 0.7), atol=1e-6)


def test_random_init_is_in_ball_and_seeded():
    x = torch.full((4, 1, 8, 8), 0.5)
    for norm, eps in [("linf", 0.3), ("l2", 2.0)]:
        a = attacks.random_init(x, eps, norm, torch.Generator().manual_seed(3))
        b = attacks.random_init(x, eps, norm, torch.Generator().manual_seed(3))
        assert torch.equal(a, b)
        assert (attacks.lp_norm(a, norm) <= eps + 1e-6).all()


def _loss(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


def test_pgd_reaches_at_least_fgsm_loss(mnist_model, mnist_test):
    x, y = mnist_test
    eps = 0.3
    fgsm_loss = _loss(mnist_model, attacks.fgsm(mnist_model, x, y, eps), y).mean()
    pgd_loss = _loss(mnist_model, attacks.pgd(mnist_model, x, y, eps, 0.01, 40, random_start=False), y).mean()
    assert pgd_loss >= fgsm_loss


def test_standard_cnn_breaks_under_pgd(mnist_model, mnist_test):
    x, y = mnist_test
    clean = evaluate(mnist_model, (x, y), progress=False)
    assert clean.accuracy > 0.9, "the fixture model should be accurate before the attack"
    robust = evaluate(mnist_model, (x, y), attack=lambda m, a, b: attacks.pgd(m, a, b, 0.3, 0.01, 40), progress=False)
    assert robust.accuracy < 0.05


def test_restarts_keep_the_fooling_restart(mnist_model, mnist_test):
    x, y = mnist_test
    gen = torch.Generator().manual_seed(0)
    one = attacks.pgd(mnist_model, x, y, 0.1, 0.01, 5, restarts=1, generator=gen)
    five = attacks.pgd(mnist_model, x, y, 0.1, 0.01, 5, restarts=5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fooled_one = (mnist_model(one).argmax(1) != y).sum()
        fooled_five = (mnist_model(five).argmax(1) != y).sum()
    assert fooled_five >= fooled_one


def test_targeted_pgd_reaches_target(mnist_model, mnist_test):
    x, y = mnist_test
    target = (y + 1) % 10
    x_adv = attacks.pgd(mnist_model, x, target, 0.3, 0.01, 40, targeted=True)
    with torch.no_grad():
        hit = (mnist_model(x_adv).argmax(1) == target).float().mean()
    assert hit > 0.9


def test_model_mode_is_restored(tiny_model, batch):
    x, y = batch
    tiny_model.train()
    attacks.pgd(tiny_model, x, y, 0.1, 0.05, 2)
    assert tiny_model.training
    tiny_model.eval()


def test_matches_torchattacks_and_art(mnist_model, mnist_test):
    """Robust accuracy under our PGD is within 2 points of torchattacks' and ART's, same settings."""
    torchattacks = pytest.importorskip("torchattacks")
    art_pgd = pytest.importorskip("art.attacks.evasion")
    from art.estimators.classification import PyTorchClassifier

    x, y = mnist_test
    eps, alpha, steps = 0.15, 0.01, 20  # mid-strength, so the three differ if anything is off

    def acc(x_adv):
        with torch.no_grad():
            return (mnist_model(torch.as_tensor(x_adv)).argmax(1) == y).float().mean().item()

    ours = acc(attacks.pgd(mnist_model, x, y, eps, alpha, steps))
    ta = acc(torchattacks.PGD(mnist_model.eval(), eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y))
    clf = PyTorchClassifier(mnist_model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 1.0))
    art = acc(art_pgd.ProjectedGradientDescent(clf, norm=np.inf, eps=eps, eps_step=alpha, max_iter=steps, num_random_init=1,
                                               batch_size=256, verbose=False).generate(x.numpy(), y=y.numpy()))
    assert 0.0 < ours < 1.0
    assert abs(ours - ta) <= 0.02 and abs(ours - art) <= 0.02, (ours, ta, art)


@pytest.mark.parametrize("kwargs,match", [
    (dict(eps=-0.1), "eps"),
    (dict(alpha=-1.0), "alpha"),
    (dict(steps=0), "steps"),
    (dict(restarts=0), "restarts"),
    (dict(norm="l1"), "norm"),
])
def test_bad_arguments_raise(tiny_model, batch, kwargs, match):
    x, y = batch
    args = dict(eps=0.1, alpha=0.01, steps=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        attacks.pgd(tiny_model, x, y, **args)


def test_bad_inputs_raise(tiny_model, batch):
    x, y = batch
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attacks.fgsm(tiny_model, x * 255, y, 0.1)
    with pytest.raises(ValueError, match="shape"):
        attacks.fgsm(tiny_model, x[0, 0], y, 0.1)
    with pytest.raises(ValueError, match="y must have shape"):
        attacks.fgsm(tiny_model, x, y[:3], 0.1)
    with pytest.raises(ValueError, match="integer"):
        attacks.fgsm(tiny_model, x, y.float(), 0.1)


# ---------------------------------------------------------------- the threat model as a value
def test_attack_config_runs_exactly_pgd_and_prints_its_threat_model(tiny_model, batch):
    x, y = batch
    cfg = attacks.AttackConfig(0.1, steps=5, restarts=2, generator=torch.Generator().manual_seed(0))
    expected = attacks.pgd(tiny_model, x, y, 0.1, 0.05, 5, restarts=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cfg(tiny_model, x, y), expected)  # default alpha: 2.5 * eps / steps
    assert str(cfg) == "PGD linf eps=0.1 alpha=0.05 steps=5 restarts=2"
    assert str(attacks.AttackConfig(8 / 255, steps=20, alpha=2 / 255)) == "PGD linf eps=8/255 alpha=2/255 steps=20 restarts=1"
    assert str(attacks.AttackConfig.fgsm(0.3)) == "FGSM linf eps=0.3"
    assert str(attacks.AttackConfig(0.3, kind="fgsm_rs")) == "FGSM-RS linf eps=0.3 alpha=0.375"
    assert evaluate(tiny_model, (x, y), cfg, progress=False).threat == str(cfg)


def test_attack_config_fgsm_is_fgsm_and_the_config_is_frozen(tiny_model, batch):
    x, y = batch
    fgsm = attacks.AttackConfig.fgsm(0.1)
    assert torch.equal(fgsm(tiny_model, x, y), attacks.fgsm(tiny_model, x, y, 0.1))
    assert fgsm.steps == 1 and not fgsm.random_start
    with pytest.raises(Exception):
        fgsm.eps = 0.2  # a threat model is a value: change it with replace()
    wider = attacks.AttackConfig(0.1, steps=4).replace(eps=0.2)
    assert wider.alpha == pytest.approx(attacks.default_alpha(0.2, 4)) and wider == attacks.AttackConfig(0.2, steps=4)
    assert attacks.AttackConfig(0.1, alpha=0.01).replace(steps=20).alpha == pytest.approx(attacks.default_alpha(0.1, 20))
    assert attacks.AttackConfig(0.1, alpha=0.01).replace(restarts=3).alpha == 0.01


def test_margin_loss_is_the_runner_up_minus_the_true_logit():
    logits = torch.tensor([[1.0, 3.0, 2.0], [5.0, -1.0, 0.5], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 0, 2])
    assert torch.allclose(attacks.margin_loss(logits, y), torch.tensor([2.0, -4.5, 0.0]))
    assert ((attacks.margin_loss(logits[:2], y[:2]) > 0) == (logits[:2].argmax(1) != y[:2])).all()


def test_margin_loss_attack_changes_only_the_loss(tiny_model, batch):
    """MarginLoss(cfg) is cfg's optimizer on the CW loss: equal to attacks.pgd with loss_fn=margin_loss,
    different from cfg on cross-entropy, printed with loss=cw, and it reaches targets."""
    x, y = batch
    cfg = attacks.AttackConfig(0.1, steps=5, alpha=0.03, random_start=False, targeted=True)
    cw = attacks.MarginLoss(cfg)
    expected = attacks.pgd(tiny_model, x, y, 0.1, 0.03, 5, random_start=False, targeted=True, loss_fn=attacks.margin_loss)
    assert torch.equal(cw(tiny_model, x, y), expected)
    assert not torch.equal(cw(tiny_model, x, y), cfg(tiny_model, x, y))
    assert str(cw) == str(cfg) + " loss=cw"
    assert torch.equal(attacks.MarginLoss(cfg.replace(eps=0.0))(tiny_model, x, y), x)


def test_pgd_trace_records_every_step_without_changing_the_attack(tiny_model, batch):
    x, y = batch
    trace = []
    out = attacks.pgd(tiny_model, x, y, 0.1, 0.02, 6, restarts=3, generator=torch.Generator().manual_seed(0), trace=trace)
    again = attacks.pgd(tiny_model, x, y, 0.1, 0.02, 6, restarts=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert len(trace) == 3 and all(t.shape == (7, len(x)) for t in trace)
    start = F.cross_entropy(tiny_model(x), y, reduction="none").detach()
    no_start = []
    attacks.pgd(tiny_model, x, y, 0.1, 0.02, 6, random_start=False, trace=no_start)
    assert torch.allclose(no_start[0][0], start, atol=1e-6)  # row 0 is the loss at the start point
    best = torch.stack([t[-1] for t in trace]).amax(0)  # the kept restart has the largest final loss unless one fooled
    final = F.cross_entropy(tiny_model(out), y, reduction="none").detach()
    fooled = tiny_model(out).argmax(1) != y
    assert torch.allclose(final[~fooled], best[~fooled], atol=1e-5)
