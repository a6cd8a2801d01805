"""Randomized smoothing (course_utils.certify) and interval bound propagation (course_utils.certify)."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import beta, norm
from statsmodels.stats.proportion import proportion_confint
from torch import nn

from course_utils import certify
from course_utils.attacks import pgd
from course_utils.models import Normalize, mnist_small_cnn


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- randomized smoothing
@pytest.mark.parametrize("n_a,n,alpha", [(990, 1000, 0.001), (100, 100, 0.001), (51, 100, 0.05), (0, 20, 0.01)])
def test_clopper_pearson_matches_scipy_and_statsmodels(n_a, n, alpha):
    got = certify.lower_confidence_bound(n_a, n, alpha)
    scipy_value = beta.ppf(alpha, n_a, n - n_a + 1) if n_a > 0 else 0.0  # one-sided exact lower bound
    assert got == pytest.approx(scipy_value, abs=1e-10)
    assert got == pytest.approx(proportion_confint(n_a, n, alpha=2 * alpha, method="beta")[0], abs=1e-12)


def test_radius_formula_on_known_pa():
    assert certify.certified_radius(norm.cdf(2.0), 0.25) == pytest.approx(0.5)
    assert certify.certified_radius(0.5, 1.0) == 0.0
    assert certify.certified_radius(0.3, 1.0) == 0.0
    assert certify.certified_radius(0.8413447460685429, 0.5) == pytest.approx(0.5, rel=1e-6)  # Phi(1)
    # n caps the radius: all 1000 votes, alpha = 0.001 -> pA_lower = 0.001 ** (1 / 1000)
    assert certify.max_certifiable_radius(1000, 0.001, 0.25) == pytest.approx(0.25 * norm.ppf(0.001 ** 0.001))


class Constant(nn.Module):
    """A base classifier that ignores its input: fixed logits (ties are broken by argmax)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


class HalfPlane(nn.Module):
    """Class 1 iff the first coordinate > 0.5; the smoothed classifier is then exactly known."""

    def forward(self, x):
        z = (x.flatten(1)[:, :1] - 0.5) * 1e4
        return torch.cat([-z, z], 1)


def test_certify_constant_and_abstain_on_ties():
    x = torch.rand(1, 4, 4)
    label, radius = certify.Smooth(Constant([0.0, 3.0, 1.0]), 3, 0.5).certify(x, 10, 200, 0.001, 64)
    assert label == 1 and radius == pytest.approx(certify.max_certifiable_radius(200, 0.001, 0.5))
    # A tie between two classes (p = 1/2 each): PREDICT must abstain, CERTIFY must abstain.
    g = torch.Generator().manual_seed(0)
    smooth = certify.Smooth(HalfPlane(), 2, 0.5, generator=g)
    x_tie = torch.full((1, 2, 2), 0.5)
    assert smooth.predict(x_tie, 2000, 0.001, 500) == certify.ABSTAIN
    assert smooth.certify(x_tie, 100, 2000, 0.001, 500) == (certify.ABSTAIN, 0.0)


def test_certify_halfplane_radius_is_sound_and_close():
    """For a half-plane the true radius is |x1 - 0.5| (distance to the boundary); the certificate
    must not exceed it and should come close with many samples."""
    g = torch.Generator().manual_seed(1)
    smooth = certify.Smooth(HalfPlane(), 2, 0.25, generator=g)
    for x1 in (0.7, 0.9, 0.1):
        x = torch.full((1, 2, 2), 0.3)
        x[0, 0, 0] = x1
        label, radius = smooth.certify(x, 100, 20_000, 0.001, 5000)
        assert label == int(x1 > 0.5)
        assert 0 < radius <= abs(x1 - 0.5) + 1e-9
        assert radius > abs(x1 - 0.5) - 0.05


def test_smooth_rejects_bad_input():
    s = certify.Smooth(Constant([0.0, 1.0]), 2, 0.5)
    with pytest.raises(ValueError, match="ONE"):
        s.certify(torch.rand(2, 1, 4, 4), 10, 10, 0.01, 10)
    with pytest.raises(ValueError, match="alpha"):
        s.predict(torch.rand(1, 4, 4), 10, 1.5, 10)
    with pytest.raises(ValueError, match="sigma"):
        certify.Smooth(Constant([0.0, 1.0]), 2, 0.0)


def test_certified_accuracy_curve():
    import pandas as pd

    res = pd.DataFrame({"correct": [1, 1, 0, 1], "radius": [0.0, 0.6, 0.9, 0.3]})
    assert np.allclose(certify.certified_accuracy(res, [0.0, 0.25, 0.5, 1.0]), [0.75, 0.5, 0.25, 0.0])


def test_pgd_on_smoothed_classifier_does_not_break_certificates():
    """Soundness on a known classifier: PGD (L2) on the Monte-Carlo smoothed classifier, within the
    certified radius, never changes PREDICT's answer to another class."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    smooth = certify.Smooth(HalfPlane(), 2, 0.25, generator=g)
    x = torch.rand(6, 1, 2, 2) * 0.6 + 0.2
    soft = certify.NoisySoftmax(HalfPlane(), 0.25, m=64)
    for i in range(len(x)):
        label, radius = smooth.certify(x[i], 100, 5000, 0.001, 5000)
        if label == certify.ABSTAIN:
            continue
        x_adv = pgd(soft, x[i:i + 1], torch.tensor([label]), eps=radius * 0.99, alpha=radius / 4, steps=10, norm="l2")
        assert (x_adv - x[i:i + 1]).norm() <= radius
        assert smooth.predict(x_adv[0], 5000, 0.001, 5000) in (label, certify.ABSTAIN)


# ---------------------------------------------------------------- interval bound propagation
def random_net(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(Normalize((0.4,), (0.3,)), nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 12), nn.ReLU(),
                        nn.Linear(12, 5))
    return net.eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_points_in_box_stay_inside_bounds(seed):
    net = random_net(seed)
    x = torch.rand(4, 1, 8, 8)
    eps = 0.05
    lower, upper = certify.interval_bounds(net, x, eps)
    assert (lower <= upper).all()
    with torch.no_grad():
        for _ in range(50):
            x_in = (x + (torch.rand_like(x) * 2 - 1) * eps).clamp(0, 1)
            z = net(x_in)
            assert (z >= lower - 1e-5).all() and (z <= upper + 1e-5).all()
        # corners (the extreme points of the box) too
        for _ in range(20):
            x_c = (x + torch.sign(torch.randn_like(x)) * eps).clamp(0, 1)
            z = net(x_c)
            assert (z >= lower - 1e-5).all() and (z <= upper + 1e-5).all()


def test_bounds_collapse_at_zero_eps_and_margin_is_tighter():
    net = random_net(3)
    x = torch.rand(5, 1, 8, 8)
    lower, upper = certify.interval_bounds(net, x, 0.0)
    with torch.no_grad():
        assert torch.allclose(lower, net(x), atol=1e-5) and torch.allclose(upper, net(x), atol=1e-5)
    y = torch.randint(0, 5, (5,))
    lower, upper = certify.interval_bounds(net, x, 0.03)
    naive = (lower.gather(1, y[:, None]) - upper).scatter(1, y[:, None], 0.0)
    elided = certify.margin_lower_bounds(net, x, y, 0.03)
    assert (elided >= naive - 1e-5).all()
    with torch.no_grad():  # and still sound: true margins are above the bound
        for _ in range(30):
            z = net((x + (torch.rand_like(x) * 2 - 1) * 0.03).clamp(0, 1))
            true_margin = z.gather(1, y[:, None]) - z
            assert (true_margin >= elided - 1e-5).all()


def test_unsupported_layer_is_named():
    with pytest.raises(ValueError, match="MaxPool2d"):
        certify.interval_bounds(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2)), torch.rand(1, 1, 6, 6), 0.1)
    with pytest.raises(ValueError, match="Sequential"):
        certify.interval_bounds(nn.Identity(), torch.rand(1, 1, 6, 6), 0.1)
    assert certify.interval_bounds is certify.interval_bounds


def test_ibp_training_verifies_and_pgd_never_breaks_a_verified_point():
    """A few IBP steps on separable toy data give verified points; PGD cannot flip any of them."""
    torch.manual_seed(0)
    n = 512
    y = torch.randint(0, 2, (n,))
    x = torch.rand(n, 1, 4, 4) * 0.2 + 0.2 + 0.4 * y.view(-1, 1, 1, 1)  # class 0 in [0.2, 0.4], 1 in [0.6, 0.8]
    net = nn.Sequential(Normalize((0.5,), (0.25,)), nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True)
    hist = certify.ibp_fit(net, loader, epochs=8, eps=0.05, lr=3e-3, progress=False)
    assert hist[-1]["kappa"] == pytest.approx(0.5) and hist[-1]["eps"] == pytest.approx(0.05)
    ok = certify.verified(net, x, y, 0.05)
    assert ok.float().mean() > 0.5
    x_adv = pgd(net, x[ok], y[ok], eps=0.05, alpha=0.01, steps=20, norm="linf", restarts=2)
    with torch.no_grad():
        assert (net(x_adv).argmax(1) == y[ok]).all()
    # the certificate shrinks with the radius: at 0.3 the two classes' boxes overlap
    assert certify.verified(net, x, y, 0.3).float().mean() < ok.float().mean()


def test_ibp_schedule():
    assert certify.ibp_schedule(0, 100, 0.1) == (0.0, 1.0)
    eps, kappa = certify.ibp_schedule(30, 100, 0.1, warmup=0.05, ramp=0.5)
    assert eps == pytest.approx(0.05) and kappa == pytest.approx(0.75)
    assert certify.ibp_schedule(99, 100, 0.1) == (pytest.approx(0.1), pytest.approx(0.5))


def test_mnist_cnn_is_supported():
    with torch.no_grad():
        lower, upper = certify.interval_bounds(mnist_small_cnn().eval(), torch.rand(2, 1, 28, 28), 0.1)
    assert lower.shape == (2, 10) and (upper >= lower).all() and math.isfinite(float(upper.max()))


def test_side_by_side_orders_certificates_below_attacks_and_times_each_row():
    from course_utils.attacks import AttackConfig

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    x, y = torch.rand(12, 1, 3, 4), torch.randint(0, 10, (12,))
    rows = certify.side_by_side(model, x, y, 0.05, AttackConfig(0.05, steps=5))
    by = {r["evaluation"]: r for r in rows}
    assert list(by) == ["clean", "PGD", "AutoAttack", "IBP certificate", "CROWN certificate"]
    assert all(r["images"] == 12 for r in rows)  # every number on the same images
    assert all(r["seconds per image"] > 0 for r in rows)
    acc = {k: r["accuracy"] for k, r in by.items()}
    assert acc["IBP certificate"] <= acc["CROWN certificate"] <= min(acc["AutoAttack"], acc["PGD"])  # proofs below attacks
    assert max(acc["AutoAttack"], acc["PGD"]) <= acc["clean"]
    assert {r["kind"] for r in rows[3:]} == {"certified"}
    with pytest.raises(ValueError, match="one radius"):  # a certificate at another radius than the attack
        certify.side_by_side(model, x, y, 0.1, AttackConfig(0.05, steps=5))
