"""Linear relaxations (course_utils.certify.relaxation): CROWN, the triangle LP and the exact MILP."""
import itertools

import pytest
import torch
from torch import nn

from course_utils import certify
from course_utils.attacks import pgd
from course_utils.certify import relaxation
from course_utils.models import Normalize

import crown_reference  # tests/crown_reference.py: CROWN before issue 33

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-5


def fc_net(seed):
    """4-8-8-3 on (1, 2, 2) images, with a Normalize first layer."""
    torch.manual_seed(seed)
    return nn.Sequential(Normalize((0.5,), (0.25,)), nn.Flatten(), nn.Linear(4, 8), nn.ReLU(),
                         nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def conv_net(seed):
    """Conv2d(1, 2, 3) -> ReLU -> Flatten -> Linear(18, 3) on (1, 5, 5) images."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 3)).eval()


NETS = {"fc": (fc_net, (1, 2, 2)), "conv": (conv_net, (1, 5, 5))}


def inputs(name, seed, b=3):
    make, shape = NETS[name]
    net = make(seed)
    gen = torch.Generator().manual_seed(100 + seed)
    x = torch.rand(b, *shape, generator=gen)
    y = torch.randint(0, 3, (b,), generator=gen)
    return net, x, y


def box_points(net, x, eps, gen):
    """Points of the eps-box: 2,000 uniform, corners (all, or 256 random ones), and PGD max / min of each logit."""
    b, d = x.shape[0], x[0].numel()
    pts = [(x[None] + (torch.rand(2000, *x.shape, generator=gen) * 2 - 1) * eps).clamp(0, 1)]
    signs = (torch.tensor(list(itertools.product([-1.0, 1.0], repeat=d))) if d <= 8
             else torch.randint(0, 2, (256, d), generator=gen).float() * 2 - 1)
    pts.append((x[None] + signs.reshape(-1, 1, *x.shape[1:]) * eps).clamp(0, 1))
    dummy = torch.zeros(b, dtype=torch.long)
    for k in range(3):
        for sign in (1.0, -1.0):
            adv = pgd(net, x, dummy, eps, eps / 4, 30, loss_fn=lambda z, _, k=k, s=sign: s * z[:, k], generator=gen)
            pts.append(adv[None])
    return torch.cat(pts)  # (N, B, ...)


def worst_violation(net, x, eps, lower, upper, seed=0):
    """max over box points of how far the logits leave [lower, upper] (<= 0: contained)."""
    pts = box_points(net, x, eps, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        z = net(pts.flatten(0, 1)).reshape(len(pts), *lower.shape)
    return float(torch.maximum(lower - z, z - upper).max().detach())


@pytest.mark.parametrize("name,seed", [("fc", 0), ("fc", 1), ("conv", 0), ("conv", 1)])
def test_crown_bounds_contain_outputs(name, seed):
    net, x, _ = inputs(name, seed)
    eps = 0.1
    lower, upper = certify.crown_bounds(net, x, eps)
    assert lower.shape == upper.shape == (3, 3) and lower.dtype == x.dtype and lower.device == x.device
    assert (lower <= upper).all()
    assert worst_violation(net, x, eps, lower, upper) <= TOL
    if name == "fc":  # two hidden layers: tighter than IBP on average. Not a theorem: on the one-hidden-layer
        il, iu = certify.interval_bounds(net, x, eps)  # conv net IBP's box [0, u] beats the line h >= z here
        assert (upper - lower).mean() < (iu - il).mean()


def _identity_upper_line(lower, upper):
    alpha, s, t = ORIGINAL_RELAXATION(lower, upper)
    unstable = (lower < 0) & (upper > 0)
    return alpha, torch.where(unstable, torch.ones_like(s), s), torch.where(unstable, torch.zeros_like(t), t)


def _shrunk_bounds(lower, upper):
    width = upper - lower
    return ORIGINAL_RELAXATION(lower + 0.3 * width, upper - 0.3 * width)


ORIGINAL_RELAXATION = relaxation.relu_relaxation


@pytest.mark.parametrize("mutant", [_identity_upper_line, _shrunk_bounds])
def test_containment_check_catches_wrong_relaxations(monkeypatch, mutant):
    net, x, _ = inputs("fc", 0)
    eps = 0.1
    monkeypatch.setattr(relaxation, "relu_relaxation", mutant)
    lower, upper = certify.crown_bounds(net, x, eps)
    assert worst_violation(net, x, eps, lower, upper) > 1e-3


@pytest.mark.parametrize("name,seed", [("fc", 0), ("fc", 2), ("conv", 0)])
def test_exact_lp_crown_ibp_ordering(name, seed):
    net, x, y = inputs(name, seed)
    eps = 0.1
    methods = [k for k in certify.METHODS if k != "bab"]  # BaB: test_bab_agrees_with_the_milp_on_tiny_networks
    m = {method: certify.margin_lower_bounds_by(method, net, x, y, eps) for method in methods}
    for v in m.values():
        assert v.shape == (3, 3) and (v.gather(1, y[:, None]) == 0).all()
    assert (m["exact"] >= m["lp"] - TOL).all()
    assert (m["lp"] >= m["crown"] - TOL).all()
    # folding the specification into the backward pass beats differencing CROWN's logit bounds
    lower, upper = certify.crown_bounds(net, x, eps)
    naive = (lower.gather(1, y[:, None]) - upper).scatter(1, y[:, None], 0.0)
    assert (m["crown"] >= naive - TOL).all()
    # CROWN vs IBP: not elementwise in general (with alpha = 1 the line h >= z lets h < 0), so on average
    off = torch.ones_like(m["crown"], dtype=torch.bool).scatter(1, y[:, None], False)
    assert m["crown"][off].mean() > m["ibp"][off].mean()
    # verified_by agrees with the margins, and is monotone along exact >= lp >= crown
    v = {method: certify.verified_by(method, net, x, y, eps) for method in methods}
    for method in methods:
        assert torch.equal(v[method], (m[method][off].reshape(3, 2) > 0).all(1))
    assert (v["exact"] >= v["lp"]).all() and (v["lp"] >= v["crown"]).all()


@pytest.mark.parametrize("name", ["fc", "conv"])
def test_exact_is_attained_and_sound(name):
    net, x, y = inputs(name, 3)
    eps = 0.1
    exact, x_star = certify.exact_margin_lower_bounds(net, x, y, eps, return_inputs=True)
    lo, hi = certify.input_box(x, eps)
    assert ((x_star >= lo[:, None] - 1e-7) & (x_star <= hi[:, None] + 1e-7)).all()
    with torch.no_grad():
        z = net(x_star.flatten(0, 1).clamp(0, 1)).reshape(3, 3, 3)
        attained = z.gather(2, y[:, None, None].expand(3, 3, 1)).squeeze(2) - z.diagonal(dim1=1, dim2=2)
        assert torch.allclose(attained, exact, atol=TOL)  # the minimum is reached at x*
        pts = box_points(net, x, eps, torch.Generator().manual_seed(1))
        zs = net(pts.flatten(0, 1)).reshape(len(pts), 3, 3)
        margins = zs.gather(2, y[None, :, None].expand(len(pts), 3, 1)) - zs
        assert (margins >= exact - TOL).all()  # and nothing in the box goes below it


@pytest.mark.parametrize("name", ["fc", "conv"])
def test_zero_eps_gives_the_model_output(name):
    net, x, y = inputs(name, 4)
    with torch.no_grad():
        z = net(x)
    lower, upper = certify.crown_bounds(net, x, 0.0)
    assert torch.allclose(lower, z, atol=TOL) and torch.allclose(upper, z, atol=TOL)
    margin = z.gather(1, y[:, None]) - z
    for method in ("crown", "lp", "exact"):
        assert torch.allclose(certify.margin_lower_bounds_by(method, net, x, y, 0.0), margin, atol=TOL), method


def test_unsupported_layers_and_methods_are_named():
    x = torch.rand(1, 1, 6, 6)
    y = torch.zeros(1, dtype=torch.long)
    tanh = nn.Sequential(nn.Flatten(), nn.Linear(36, 4), nn.Tanh(), nn.Linear(4, 2))
    pool = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 2))
    for net, layer in [(tanh, "Tanh"), (pool, "MaxPool2d")]:
        with pytest.raises(ValueError, match=layer):
            certify.crown_bounds(net, x, 0.1)
        for method in ("crown", "lp", "exact"):
            with pytest.raises(ValueError, match=layer):
                certify.margin_lower_bounds_by(method, net, x, y, 0.1)
    with pytest.raises(ValueError, match="Sequential"):
        certify.crown_bounds(nn.Identity(), x, 0.1)
    with pytest.raises(ValueError, match="method"):
        certify.verified_by("zonotope", fc_net(0), torch.rand(1, 1, 2, 2), y, 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        certify.crown_bounds(fc_net(0), torch.rand(1, 1, 2, 2) + 1, 0.1)


@pytest.mark.parametrize("name", ["fc", "conv"])
def test_dense_blocks_and_intermediate_bounds(name):
    """affine_blocks reproduce the network; every ReLU's bounds contain its pre-activations and sit inside IBP's."""
    net, x, _ = inputs(name, 5)
    eps = 0.1
    _, _, bounds, _, _ = certify.preactivation_bounds(net, x, eps)
    blocks = certify.affine_blocks(net, x)
    pts = box_points(net, x, eps, torch.Generator().manual_seed(2)).flatten(0, 1)  # (N * B, ...)
    h = pts.flatten(1).double()
    for (w, b), (lower, upper) in zip(blocks[:-1], bounds):
        z = (h @ w.T + b).reshape(-1, len(x), len(b))
        assert (z >= lower - TOL).all() and (z <= upper + TOL).all()
        h = z.flatten(0, 1).relu()
    w, b = blocks[-1]
    with torch.no_grad():
        assert torch.allclose((h @ w.T + b).float(), net(pts), atol=TOL)
    lo, hi = certify.input_box(x, eps)
    ibp_pre = []
    for layer in net:
        if isinstance(layer, nn.ReLU):
            ibp_pre.append((lo.flatten(1), hi.flatten(1)))
        lo, hi = certify.layer_bounds(layer, lo, hi)
    for (lower, upper), (il, iu) in zip(bounds, ibp_pre):
        assert (lower >= il - TOL).all() and (upper <= iu + TOL).all()


def test_segment_adjoints_match_the_dense_matrices():
    """CROWN's backward pass (conv_transpose2d with output padding, Normalize, Flatten, Linear) applies
    exactly W^T of the dense blocks, on a strided, padded conv net with an odd input size."""
    torch.manual_seed(7)
    net = nn.Sequential(Normalize((0.2,), (0.5,)), nn.Conv2d(1, 3, 4, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16, 5)).eval()
    x = torch.rand(2, 1, 7, 7)
    segments, blocks = certify.affine_segments(net, x), certify.affine_blocks(net, x)
    assert len(segments) == len(blocks) == 3
    gen = torch.Generator().manual_seed(0)
    for seg, (w, b) in zip(segments, blocks):
        a = torch.randn(2, 3, len(b), generator=gen)
        a_in, c, _ = relaxation._back_affine(seg, a, torch.zeros(2, 3))
        assert torch.allclose(a_in.flatten(2).double(), a.double() @ w, atol=1e-5)
        assert torch.allclose(c.double(), a.double() @ b, atol=1e-5)
    with torch.no_grad():
        z = net(x)
    lower, upper = certify.crown_bounds(net, x, 0.0)
    assert torch.allclose(lower, z, atol=TOL) and torch.allclose(upper, z, atol=TOL)
    lower, upper = certify.crown_bounds(net, x, 0.05)
    assert worst_violation(net, x, 0.05, lower, upper) <= TOL


def test_first_layer_keeps_ibp_bounds_only_where_they_are_exact():
    """One affine map of a box: IBP is exact per neuron, so CROWN skips it. Two affine maps before the
    first ReLU: IBP is loose (|W2| |W1| r >= |W2 W1| r) and CROWN must still tighten them."""
    torch.manual_seed(0)
    x = torch.rand(3, 6, dtype=torch.float64)
    one = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    _, _, bounds, xl, xu = certify.preactivation_bounds(one, x, 0.1)
    w, b = one[1].weight, one[1].bias
    mu, r = (xu + xl) / 2, (xu - xl) / 2
    exact_l, exact_u = mu @ w.T + b - r @ w.abs().T, mu @ w.T + b + r @ w.abs().T
    assert torch.allclose(bounds[0][0], exact_l, atol=1e-9) and torch.allclose(bounds[0][1], exact_u, atol=1e-9)
    two = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    _, _, bounds, xl, xu = certify.preactivation_bounds(two, x, 0.1)
    ibp_l, ibp_u = certify.interval_bounds(two[:2], x, 0.1)
    w = two[1].weight @ two[0].weight
    mu, r = (xu + xl) / 2, (xu - xl) / 2
    exact_u = mu @ w.T + two[1].weight @ two[0].bias + two[1].bias + r @ w.abs().T
    unstable = (ibp_l < 0) & (ibp_u > 0)  # IBP-stable neurons keep their IBP bounds (see preactivation_bounds)
    assert unstable.any()
    assert torch.allclose(bounds[0][1], torch.where(unstable, torch.minimum(exact_u, ibp_u), ibp_u), atol=1e-9)
    assert (bounds[0][1] < ibp_u - 1e-6).any()


@pytest.mark.parametrize("name", ["fc", "conv"])
def test_chunked_backward_passes_give_the_same_bounds(monkeypatch, name):
    """preactivation_bounds splits the unstable neurons into chunks of ROW_BUDGET elements (bounded memory):
    one row per pass must give the same bounds as all rows at once."""
    net, x, _ = inputs(name, 0)
    whole = certify.crown_bounds(net, x, 0.1)
    monkeypatch.setattr(relaxation, "ROW_BUDGET", 1)
    chunked = certify.crown_bounds(net, x, 0.1)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(whole, chunked))


def _deep_conv_net(seed):
    """Normalize, three convolutions (strided, padded, dilated, grouped, odd sizes), then two linear layers."""
    torch.manual_seed(seed)
    return nn.Sequential(Normalize((0.3,), (0.4,)), nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 6, 3, padding=2, dilation=2), nn.ReLU(),
                         nn.Conv2d(6, 6, 3, stride=2, groups=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(24, 7), nn.ReLU(), nn.Linear(7, 3)).eval()


@pytest.mark.parametrize("case", ["mnist_cnn", "deep_conv", "fc"])
def test_batched_crown_equals_the_previous_implementation(case):
    """Issue 33: the windowed, batched intermediate bounds equal the previous CROWN's to float rounding,
    layer by layer and on the margins, including a layer whose neurons are unstable only in some examples."""
    from course_utils.models import mnist_small_cnn
    gen = torch.Generator().manual_seed(3)
    if case == "mnist_cnn":
        torch.manual_seed(0)
        net, x, eps = mnist_small_cnn().eval(), torch.rand(2, 1, 28, 28, generator=gen), 0.02
    elif case == "deep_conv":
        net, x, eps = _deep_conv_net(0), torch.rand(3, 1, 9, 9, generator=gen), 0.05
    else:
        net, x, eps = fc_net(1), torch.rand(3, 1, 2, 2, generator=gen), 0.1
    with torch.no_grad():
        y = net(x).argmax(1)
        _, _, new, _, _ = certify.preactivation_bounds(net, x, eps)
        old, old_margins = crown_reference.margin_lower_bounds(net, x, y, eps)
        margins = certify.crown_margin_lower_bounds(net, x, y, eps)
    assert any(((lo < 0) & (hi > 0)).any() for lo, hi in new[1:]), "no unstable neuron refined: the test tests nothing"
    for (lo, hi), (rlo, rhi) in zip(new, old):
        scale = 1 + max(float(rlo.abs().max()), float(rhi.abs().max()))
        assert float((lo - rlo).abs().max()) <= 1e-6 * scale and float((hi - rhi).abs().max()) <= 1e-6 * scale
    assert torch.allclose(margins, old_margins, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- alpha-CROWN and branch and bound (issue 33)
def tiny_net(depth, seed, d_in=4, width=8, num_classes=3):
    """Notebook 08b's random float64 network: `depth` hidden layers of `width` ReLUs."""
    g = torch.Generator().manual_seed(seed)
    dims = [d_in] + [width] * depth + [num_classes]
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        lin = nn.Linear(a, b).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g, dtype=torch.float64) / a ** 0.5)
            lin.bias.copy_(0.1 * torch.randn(b, generator=g, dtype=torch.float64))
        layers += [lin, nn.ReLU()] if i < depth else [lin]
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("name,seed", [("fc", 0), ("fc", 1), ("conv", 0), ("conv", 2)])
def test_alpha_crown_is_sound_and_never_looser_than_crown(name, seed):
    net, x, y = inputs(name, seed)
    eps = 0.15
    crown = certify.crown_margin_lower_bounds(net, x, y, eps)
    alpha = certify.alpha_crown_margin_lower_bounds(net, x, y, eps)
    assert alpha.shape == crown.shape and (alpha.gather(1, y[:, None]) == 0).all()
    assert (alpha >= crown - 1e-6).all()
    if name == "fc":  # (on the one-hidden-layer conv net CROWN's adaptive slopes can already be the best ones)
        assert (alpha > crown + 1e-4).any(), "alpha-CROWN tightened nothing: the optimisation does not run"
    pts = box_points(net, x, eps, torch.Generator().manual_seed(seed))  # samples, corners, PGD on each logit
    with torch.no_grad():
        z = net(pts.flatten(0, 1)).reshape(len(pts), *crown.shape)
    margins = z.gather(2, y[None, :, None].expand(len(pts), -1, 1)) - z
    adv = pgd(net, x, y, eps, eps / 4, 40, restarts=3, generator=torch.Generator().manual_seed(seed))  # PGD on the margin
    with torch.no_grad():
        za = net(adv)
    assert (margins >= alpha - TOL).all() and (za.gather(1, y[:, None]) - za >= alpha - TOL).all()
    assert not net[-1].weight.requires_grad or net[-1].weight.grad is None  # the model is left untouched


def test_alpha_crown_ordering_on_the_same_intermediate_bounds():
    """exact >= LP >= alpha-CROWN >= CROWN, margin by margin, on random networks of depth 1-3."""
    for seed in range(6):
        net = tiny_net(1 + seed % 3, seed)
        x = torch.rand(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            y = net(x).argmax(1)
        m = {k: certify.margin_lower_bounds_by(k, net, x, y, 0.15) for k in ("exact", "lp", "alpha-crown", "crown")}
        assert (m["exact"] >= m["lp"] - 1e-6).all() and (m["lp"] >= m["alpha-crown"] - 1e-6).all()
        assert (m["alpha-crown"] >= m["crown"] - 1e-9).all()


def test_bab_agrees_with_the_milp_on_tiny_networks():
    """20 seeded networks (depth 1-2), one image each: BaB says verified exactly where the MILP's minimum
    margin is > 0, and falsified otherwise, with a counterexample in the box that a forward pass confirms."""
    eps, statuses = 0.15, []
    for seed in range(20):
        net = tiny_net(1 + seed % 2, seed)
        x = torch.rand(1, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            y = net(x).argmax(1)
        exact = certify.exact_margin_lower_bounds(net, x, y, eps)[0]
        r = certify.bab_verify(net, x, y, eps, time_limit=30)[0]
        off = torch.arange(3) != y[0]
        statuses.append(r.status)
        assert r.status == ("verified" if (exact[off] > 0).all() else "falsified"), (seed, r, exact)
        assert (r.margins <= exact + 1e-6).all()  # BaB's margins are lower bounds
        if r.status == "falsified":
            lo, hi = certify.input_box(x, eps)
            assert ((r.counterexample >= lo - 1e-9) & (r.counterexample <= hi + 1e-9)).all()
            with torch.no_grad():
                z = net(r.counterexample)[0]
            assert (z[y[0]] - z[off] <= 0).any()
    assert {"verified", "falsified"} <= set(statuses)  # both outcomes occur: the test could fail either way


def test_bab_stops_at_its_time_limit_and_plugs_into_verified_by():
    net = tiny_net(3, 14)  # its closest margin (0.019) takes BaB a few seconds
    x = torch.rand(1, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(14))
    with torch.no_grad():
        y = net(x).argmax(1)
    r = certify.bab_verify(net, x, y, 0.15, time_limit=0.0)[0]
    assert r.status == "unknown" and r.counterexample is None and r.branches >= 1
    assert (r.margins <= certify.exact_margin_lower_bounds(net, x, y, 0.15)[0] + 1e-6).all()
    assert not certify.verified_by("bab", net, x, y, 0.15, time_limit=0.0).any()
    with pytest.raises(ValueError, match="time_limit"):
        certify.margin_lower_bounds_by("crown", net, x, y, 0.15, time_limit=1.0)
