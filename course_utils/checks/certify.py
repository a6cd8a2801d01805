"""Checks for the certified-defense exercises: notebooks 07 (randomized smoothing: the radius, CERTIFY on
counts, CERTIFY and PREDICT from model calls), 08 (interval bound propagation: one layer, the verified
test, the elided margin through a conv net), 08b (CROWN) and the project p3 (threat model of the fraud gate)."""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import binomtest
from torch import nn

from .. import certify, fraud, models
from . import call_learner, check_value, compare, rel_error


def check_radius(learner_radius, sigma: float = 0.5):
    """learner_radius(n_a, n, alpha, sigma) = sigma * PhiInverse(Clopper-Pearson lower bound), 0 if <= 1/2."""
    cases = [(990, 1000, 0.001), (100, 100, 0.01), (520, 1000, 0.001), (9000, 10000, 0.05), (0, 50, 0.001)]
    got = [float(call_learner("certified_radius", learner_radius, a, n, al, sigma)) for a, n, al in cases]
    expected = [certify.certified_radius(certify.lower_confidence_bound(a, n, al), sigma) for a, n, al in cases]
    check_value("certified_radius", torch.tensor(got), torch.tensor(expected), tol=1e-6)


def _certify_from_counts(counts0, counts, alpha, sigma):
    """CERTIFY's answer on given counts: c_A = argmax counts0, pA_lower from counts (one-sided
    Clopper-Pearson at level alpha, ``certify.lower_confidence_bound``), abstain below 1/2."""
    c_a = int(np.argmax(counts0))
    pa = certify.lower_confidence_bound(int(counts[c_a]), int(np.sum(counts)), alpha)
    return (certify.ABSTAIN, 0.0) if pa < 0.5 else (c_a, certify.certified_radius(pa, sigma))


def check_certify_counts(learner_certify, sigma: float = 0.25, alpha: float = 0.001):
    """learner_certify(counts0, counts, alpha, sigma) -> (label, radius), CERTIFY on given counts:
    c_A is the top class of the selection counts ``counts0``, pA_lower comes from the estimation
    counts ``counts`` (one-sided Clopper-Pearson); abstain (-1, 0.0) when pA_lower < 1/2. Some cases
    have a different top class in the two samples, so selecting c_A from ``counts`` fails."""
    name = "certify_counts"
    cases = [([5, 90, 5], [10, 980, 10]), ([60, 40, 0], [480, 520, 0]), ([0, 0, 100], [0, 1, 999]),
             ([50, 50, 0], [700, 300, 0]), ([3, 97, 0], [450, 550, 0]), ([30, 70, 0], [900, 100, 0]),
             ([10, 0, 90], [0, 997, 3])]
    for c0, c in cases:
        got = call_learner(name, learner_certify, np.array(c0), np.array(c), alpha, sigma)
        c_a = int(np.argmax(c0))
        expected = _certify_from_counts(c0, c, alpha, sigma)
        if int(got[0]) != expected[0]:
            hint = ""
            if int(got[0]) == int(np.argmax(c)) != c_a:
                hint = (": c_A looks chosen from the estimation counts; choose it from the selection counts counts0 "
                        "(selecting and estimating on the same sample biases pA upward)")
            print(f"[{name}] counts0={c0} counts={c}: label {got[0]}, expected {expected[0]}{hint}: FAILED")
            raise AssertionError(f"{name}: counts0={c0} counts={c}: label {got[0]} != {expected[0]}{hint}")
        check_value(f"{name} radius, counts0={c0} counts={c}", float(got[1]), expected[1], tol=1e-6)


class _NearestCentre(nn.Module):
    """The base classifier of the smoothing checks: class k where the first input value is nearest to
    ``centres[k]`` (logits -(v - c_k)^2), so P(f(x + delta) = k) is set by x, sigma and the centres."""

    def __init__(self, centres=(0.0, 0.5, 1.0)):
        super().__init__()
        self.register_buffer("centres", torch.tensor(centres, dtype=torch.float32))

    def forward(self, x):  # (B, ...) -> (B, K)
        return -(x.flatten(1)[:, :1] - self.centres) ** 2


def _smoothing_input(v: float) -> torch.Tensor:
    """A (1, 2, 2) image in [0, 1] whose first pixel, the one the classifier reads, is v."""
    x = torch.full((1, 2, 2), 0.5)
    x[0, 0, 0] = v
    return x


_PROTOCOL = ("draw the noise as certify.Smooth.sample_counts does, so that your samples are the check's: for each "
             "batch of b = min(batch, remaining) samples torch.randn((b, *x.shape), generator=generator), the "
             "model sees x + sigma * noise; CERTIFY draws its n0 selection samples first, then n fresh ones")
# (first pixel, sigma, n0, n, alpha, batch, seed): confident; n0 = 1, where seed 4's one selection sample picks the
# wrong class; a near tie that abstains; pA_lower just above 1/2; a three-way split that abstains
_CERTIFY_CASES = [(0.5, 0.1, 10, 100, 0.001, 32, 0), (0.5, 0.2, 1, 100, 0.001, 64, 1), (0.5, 0.2, 1, 100, 0.001, 64, 4),
                  (0.5, 0.2, 1, 100, 0.001, 64, 5), (0.25, 0.25, 20, 200, 0.01, 50, 6), (0.4, 0.25, 20, 200, 0.01, 50, 9),
                  (0.45, 0.5, 10, 300, 0.05, 128, 8)]
# (first pixel, sigma, n, alpha, batch, seed): clear; top-1 vs top-2 significant but not vs n; two-sided p = 0.097
# > alpha > one-sided p; near ties; an answer only at a loose alpha
_PREDICT_CASES = [(0.5, 0.1, 100, 0.001, 32, 0), (0.5, 0.3, 100, 0.01, 64, 1), (0.47, 0.35, 100, 0.07, 64, 2),
                  (0.27, 0.25, 200, 0.05, 64, 3), (0.25, 0.25, 100, 0.05, 30, 7), (0.28, 0.25, 200, 0.2, 64, 5)]


def _counts(model, x, sigma, sizes, batch, seed):
    """Class counts of successive samples of sizes ``sizes`` from one generator seeded with ``seed``."""
    smooth = certify.Smooth(model, 3, sigma, generator=torch.Generator().manual_seed(seed))
    return [smooth.sample_counts(x, k, batch) for k in sizes]


def _certify_hint(model, x, got, case, c0, c):
    """What a wrong CERTIFY answer on one case looks like it did."""
    v, sigma, n0, n, alpha, batch, seed = case
    expected = _certify_from_counts(c0, c, alpha, sigma)
    if got[0] != expected[0] and got[0] == int(np.argmax(c)) != int(np.argmax(c0)):
        return ("c_A looks chosen from the estimation counts; choose it from the n0 selection samples "
                "(selecting and estimating on the same sample biases pA upward)")
    if expected[0] == certify.ABSTAIN and got[0] != certify.ABSTAIN:
        pa = certify.lower_confidence_bound(int(c[int(np.argmax(c0))]), n, alpha)
        return f"pA_lower = {pa:.3f} < 1/2 for c_A = {int(np.argmax(c0))}: CERTIFY must abstain, (-1, 0.0)"
    if got[0] == expected[0] != certify.ABSTAIN:
        two_sided = _certify_from_counts(c0, c, alpha / 2, sigma)[1]
        if abs(got[1] - two_sided) <= 1e-6 * abs(two_sided):
            return "the radius matches a two-sided interval (alpha / 2): use the one-sided lower bound at level alpha"
    (same,) = _counts(model, x, sigma, [n], batch, seed)
    unscaled = _counts(model, x, 1.0, [n0, n], batch, seed)
    for counts, hint in (((same, same), "selection and estimation used the same samples: draw n0, then n fresh ones"),
                         (unscaled, "the noise is not scaled by sigma: the model must see x + sigma * noise")):
        wrong = _certify_from_counts(*counts, alpha, sigma)
        if wrong[0] == got[0] and abs(wrong[1] - got[1]) <= 1e-6 * max(abs(wrong[1]), 1e-8) and wrong != expected:
            return hint
    return _PROTOCOL


def check_certify(learner_certify):
    """learner_certify(model, x, sigma, n0, n, alpha, generator, batch) -> (label, radius): Cohen et al.'s
    CERTIFY from model calls (notebook 07), compared with ``certify.Smooth.certify`` with the same seeded
    generator, hence the same noise when the learner draws it as ``Smooth.sample_counts`` does. The cases
    include a selection sample that picks the wrong class, near ties that must abstain, and several sigmas."""
    name, model, worst = "certify_smooth", _NearestCentre(), 0.0
    for case in _CERTIFY_CASES:
        v, sigma, n0, n, alpha, batch, seed = case
        x = _smoothing_input(v)
        got = call_learner(name, learner_certify, model, x, sigma, n0, n, alpha, torch.Generator().manual_seed(seed), batch)
        got = (int(got[0]), float(got[1]))
        c0, c = _counts(model, x, sigma, [n0, n], batch, seed)
        expected = certify.Smooth(model, 3, sigma, generator=torch.Generator().manual_seed(seed)).certify(x, n0, n, alpha, batch)
        err = abs(got[1] - expected[1]) / max(abs(got[1]) + abs(expected[1]), 1e-8)
        if got[0] != expected[0] or err > 1e-6:
            where = (f"x[0,0,0]={v} sigma={sigma} n0={n0} n={n} alpha={alpha} (selection counts {c0.tolist()}, "
                     f"estimation counts {c.tolist()})")
            hint = _certify_hint(model, x, got, case, c0, c)
            print(f"[{name}] {where}: got ({got[0]}, {got[1]:.4f}), expected ({expected[0]}, {expected[1]:.4f}): FAILED")
            raise AssertionError(f"{name}: {where}: got {got}, expected {expected}: {hint}")
        worst = max(worst, err)
    print(f"[{name}] {len(_CERTIFY_CASES)} cases: same labels, radius relative error {worst:.2e} (tolerance 1e-06): PASSED")


def check_predict(learner_predict):
    """learner_predict(model, x, sigma, n, alpha, generator, batch) -> label or -1: Cohen et al.'s PREDICT
    (notebook 07), compared with ``certify.Smooth.predict`` with the same seeded generator. The cases put the
    two-sided binomial test of top-1 against top-2 counts on both sides of alpha."""
    name, model, got, expected, unscaled = "predict_smooth", _NearestCentre(), [], [], []
    for v, sigma, n, alpha, batch, seed in _PREDICT_CASES:
        x = _smoothing_input(v)
        got.append(int(call_learner(name, learner_predict, model, x, sigma, n, alpha, torch.Generator().manual_seed(seed), batch)))
        for out, s in ((expected, sigma), (unscaled, 1.0)):
            out.append(certify.Smooth(model, 3, s, generator=torch.Generator().manual_seed(seed)).predict(x, n, alpha, batch))
    if got == expected:
        print(f"[{name}] {len(_PREDICT_CASES)} cases: same labels as certify.Smooth.predict: PASSED")
        return
    i = next(k for k in range(len(got)) if got[k] != expected[k])
    v, sigma, n, alpha, batch, seed = _PREDICT_CASES[i]
    (c,) = _counts(model, _smoothing_input(v), sigma, [n], batch, seed)
    n1, n2 = (int(k) for k in np.sort(c)[::-1][:2])
    p = binomtest(n1, n1 + n2, 0.5).pvalue
    if got == unscaled:
        hint = "every answer matches unscaled noise: the model must see x + sigma * noise"
    elif expected[i] == certify.ABSTAIN:
        hint = (f"the two-sided binomial test of the top two counts, binomtest({n1}, {n1 + n2}, 0.5), has "
                f"p = {p:.3g} > alpha = {alpha}: PREDICT must abstain (-1)")
    elif got[i] == certify.ABSTAIN:
        hint = (f"binomtest({n1}, {n1 + n2}, 0.5) has p = {p:.3g} <= alpha = {alpha}: PREDICT answers the top "
                "class (test top-1 against top-2, not against n, two-sided)")
    else:
        hint = _PROTOCOL
    where = f"x[0,0,0]={v} sigma={sigma} n={n} alpha={alpha} (counts {c.tolist()})"
    print(f"[{name}] {where}: got {got[i]}, expected {expected[i]}: FAILED")
    raise AssertionError(f"{name}: {where}: got {got[i]}, expected {expected[i]}: {hint}")

def _box_inputs(generator, batch=4, d_in=7, d_out=5):
    w = torch.randn(d_out, d_in, generator=generator)
    b = torch.randn(d_out, generator=generator)
    centre = torch.randn(batch, d_in, generator=generator)
    r = torch.rand(batch, d_in, generator=generator)
    return w, b, centre - r, centre + r


def _ref_linear(w, b, lower, upper):
    layer = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(b)
        lo, hi = certify.layer_bounds(layer, lower, upper)
    return torch.stack([lo, hi])


def check_interval_linear(learner_linear):
    """learner_linear(W, b, lower, upper) -> (lower', upper') of W x + b over the box."""
    compare("interval_linear", lambda *a: torch.stack(list(learner_linear(*a))), _ref_linear, _box_inputs)


def _logit_bounds(generator, batch=6, k=4):
    centre = torch.randn(batch, k, generator=generator) * 3
    r = torch.rand(batch, k, generator=generator)
    y = torch.randint(0, k, (batch,), generator=generator)
    return centre - r, centre + r, y


def _ref_verified(lower, upper, y):
    m = (lower.gather(1, y[:, None]) - upper).scatter(1, y[:, None], 1.0)
    return (m > 0).all(1).float()


def check_is_verified(learner_verified):
    """learner_verified(lower, upper, y) -> (B,) bool: l_y > u_j for every j != y."""
    compare("is_verified", lambda *a: torch.as_tensor(learner_verified(*a)).float(), _ref_verified,
            _logit_bounds, trials=6, tol=0.0)


def _one_layer_cases(generator, cases=6, d_in=5, width=9, k=3):
    """Random one-hidden-layer networks (float64) with IBP pre-activation bounds on a box wide enough
    for unstable ReLUs of both kinds (u >= -l and u < -l), and margins c = e_y - e_j."""
    out = []
    for _ in range(cases):
        w1, b1 = torch.randn(width, d_in, generator=generator, dtype=torch.float64), torch.randn(width, generator=generator, dtype=torch.float64) * 0.3
        w2, b2 = torch.randn(k, width, generator=generator, dtype=torch.float64), torch.randn(k, generator=generator, dtype=torch.float64)
        x = torch.rand(1, d_in, generator=generator, dtype=torch.float64)
        net = nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, k)).double()
        with torch.no_grad():
            for layer, w, b in ((net[0], w1, b1), (net[2], w2, b2)):
                layer.weight.copy_(w)
                layer.bias.copy_(b)
            xl, xu = certify.input_box(x, 0.25)
            l, u = certify.interval_bounds(net[:1], x, 0.25)
            y = net(x).argmax(1)
            margins = certify.crown_margin_lower_bounds(net, x, y, 0.25)[0]
        eye = torch.eye(k, dtype=torch.float64)
        for j in range(k):
            if j != int(y):
                out.append(((w1, b1, w2, b2, xl[0], xu[0], l[0], u[0], eye[int(y)] - eye[j]), float(margins[j])))
    return out


def _one_layer_lp(cases_seed: int, cases: int = 6):
    """``_one_layer_cases`` with each margin's triangle-LP value: (args, CROWN's bound, the LP's). With the
    same pre-activation bounds no valid slopes alpha give a bound above the LP's."""
    out, gen = [], torch.Generator().manual_seed(cases_seed)
    for args, crown in _one_layer_cases(gen, cases):
        w1, b1, w2, b2, xl, xu, l, u, c = args
        net = nn.Sequential(nn.Linear(len(xl), len(b1)), nn.ReLU(), nn.Linear(len(b1), len(b2))).double()
        with torch.no_grad():
            for layer, w, b in ((net[0], w1, b1), (net[2], w2, b2)):
                layer.weight.copy_(w)
                layer.bias.copy_(b)
        x = ((xl + xu) / 2)[None]  # the box's centre: input_box(x, 0.25) of the case, where the box is not clipped
        y, j = int(c.argmax()), int(c.argmin())
        lp = float(certify.lp_margin_lower_bounds(net, x, torch.tensor([y]), (xu - xl) / 2)[0, j])
        out.append((args, crown, lp))
    return out


def check_alpha_crown_margin(learner_alpha_crown, steps: int = 100, lr: float = 0.1):
    """learner_alpha_crown(W1, b1, W2, b2, xl, xu, l, u, c, steps, lr) -> alpha-CROWN's lower bound of
    c . z_2 over the box for z_2 = W2 relu(W1 x + b1) + b2 (notebook 08b): CROWN's bound with the lower
    slopes alpha of the unstable ReLUs raised by projected gradient ascent (alpha in [0, 1], warm start
    at CROWN's alpha, the best bound kept), the upper lines fixed. Any such bound lies between CROWN's
    and the triangle LP's (no valid slopes go above the LP): above the LP is unsound; the check also
    asks for half of the CROWN-to-LP gap closed wherever it exceeds 1e-3."""
    name = "alpha_crown_margin"
    closed = []
    for i, (args, crown, lp) in enumerate(_one_layer_lp(2)):
        got = float(call_learner(name, learner_alpha_crown, *args, steps, lr))
        if got > lp + 1e-7:
            print(f"[{name}] case {i}: bound {got:.6f} above the triangle LP's {lp:.6f}: FAILED")
            raise AssertionError(f"{name}: case {i}: {got:.6f} is above the LP's {lp:.6f}, which no valid slopes "
                                 "exceed, so the bound is unsound: keep alpha in [0, 1] (project after each step) and "
                                 "leave the upper line h <= s z + t as it is")
        if got < crown - 1e-9:
            print(f"[{name}] case {i}: bound {got:.6f} below CROWN's {crown:.6f}: FAILED")
            raise AssertionError(f"{name}: case {i}: {got:.6f} is below CROWN's {crown:.6f}: start from CROWN's "
                                 "slopes and keep the best bound seen")
        if lp - crown > 1e-3:
            closed.append((got - crown) / (lp - crown))
            if closed[-1] < 0.5:
                print(f"[{name}] case {i}: closed {100 * closed[-1]:.0f}% of the gap from CROWN ({crown:.4f}) to the "
                      f"LP ({lp:.4f}): FAILED")
                raise AssertionError(f"{name}: case {i}: {got:.6f} closes {100 * closed[-1]:.0f}% of the gap from CROWN "
                                     f"({crown:.6f}) to the LP ({lp:.6f}), 50% needed: the ascent must raise the bound "
                                     "(step along +gradient of the bound with respect to alpha)")
    print(f"[{name}] every bound between CROWN's and the LP's; the gap closed by {100 * min(closed):.0f}%-"
          f"{100 * max(closed):.0f}% on {len(closed)} margins (50% needed): PASSED")


def check_crown_margin(learner_crown):
    """learner_crown(W1, b1, W2, b2, xl, xu, l, u, c) -> CROWN's lower bound of c . z_2 over the box
    [xl, xu] for z_2 = W2 relu(W1 x + b1) + b2, with the ReLU lines of ``certify.relu_relaxation`` on
    the pre-activation bounds [l, u] (notebook 08b). Compared with ``certify.crown_margin_lower_bounds``
    on random networks whose unstable ReLUs take both lower lines and whose margins need both the
    lower and the upper lines."""
    cases = _one_layer_cases(torch.Generator().manual_seed(0))
    got = torch.tensor([float(call_learner("crown_margin", learner_crown, *args)) for args, _ in cases], dtype=torch.float64)
    expected = torch.tensor([e for _, e in cases], dtype=torch.float64)
    if (got > expected + 1e-9).any():
        i = int((got - expected).argmax())
        print(f"[crown_margin] case {i}: bound {got[i]:.6f} above CROWN's {expected[i]:.6f}: FAILED")
        raise AssertionError(f"crown_margin: case {i}: {got[i]:.6f} is above CROWN's bound {expected[i]:.6f}, so it is "
                             "not CROWN (and may be unsound): positive coefficients of a = W2^T c take the lower line, "
                             "negative ones the upper line (with its intercept t), and the box minimum takes xl where "
                             "A > 0, xu where A < 0")
    check_value("crown_margin", got, expected, tol=1e-7)


def _ibp_net(generator):
    """A small conv net of every layer IBP supports: Normalize, Conv2d, ReLU, Flatten, Linear; 4 classes."""
    net = nn.Sequential(models.Normalize((0.3,), (0.4,)), nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    return net.eval()


def _ibp_hint(learner_margin, net, x, y, eps, got, expected):
    """What a wrong elided margin bound looks like it did (each candidate computed with the package)."""
    with torch.no_grad():
        lower, upper = certify.interval_bounds(net, x, eps)
        plain = (lower.gather(1, y[:, None]) - upper).scatter(1, y[:, None], 0.0)
        no_normalize = certify.margin_lower_bounds(net[1:], x, y, eps)
    if rel_error(got, plain) <= 1e-5:
        return ("these are l_y - u_j, the bounds without elision: fold the last Linear layer into the margin, "
                "(w_y - w_j)^T mu + b_y - b_j - |w_y - w_j|^T r over the box of the hidden layer")
    if rel_error(got, no_normalize) <= 1e-5:
        return "the Normalize layer was skipped: (x - mean) / std is monotone, apply it to lower and upper"
    inner = x.clamp(0.25, 0.75)  # eps <= 0.2 keeps the box inside [0, 1]
    try:
        inner_ok = rel_error(torch.as_tensor(learner_margin(net, inner, y, min(eps, 0.2))).detach(),
                             certify.margin_lower_bounds(net, inner, y, min(eps, 0.2))) <= 1e-5
    except Exception:  # noqa: BLE001 (a hint only; the failure is reported anyway)
        inner_ok = False
    if inner_ok:
        return "right inside [0, 1], wrong near its edges: the input box is [x - eps, x + eps] clipped to [0, 1]"
    if (got > expected + 1e-5 * (1 + expected.abs())).any():
        return ("some bound is above the package's, so it may be unsound: the radius goes through |W| "
                "(F.conv2d with weight.abs() for a convolution), the centre through W and b")
    return "compare layer by layer with certify.layer_bounds"


def check_ibp_margin(learner_margin):
    """learner_margin(model, x, y, eps) -> (B, K) lower bounds of z_y - z_j over the box [x - eps, x + eps]
    clipped to [0, 1], with the last Linear layer elided (Gowal et al. 2018; notebook 08); column y is 0.
    Compared with ``certify.margin_lower_bounds`` on random conv nets (Normalize, Conv2d, ReLU, Flatten,
    Linear), images with pixels at 0 and 1, and several eps."""
    name, worst, g = "ibp_margin", 0.0, torch.Generator().manual_seed(0)
    for trial in range(3):
        net = _ibp_net(g)
        x = torch.rand(5, 1, 8, 8, generator=g)
        x = torch.where(x < 0.3, torch.zeros_like(x), torch.where(x > 0.8, torch.ones_like(x), x))  # MNIST-like
        y = torch.randint(0, 4, (5,), generator=g)
        for eps in (0.0, 0.05, 0.15):
            with torch.no_grad():
                got = call_learner(name, learner_margin, net, x, y, eps)
                expected = certify.margin_lower_bounds(net, x, y, eps)
            got = torch.as_tensor(got).detach()
            err = rel_error(got, expected)
            if err > 1e-5:
                with torch.no_grad():
                    hint = _ibp_hint(learner_margin, net, x, y, eps, got, expected)
                print(f"[{name}] net {trial}, eps={eps}: relative error {err:.2e} (tolerance 1e-05): FAILED")
                raise AssertionError(f"{name}: net {trial}, eps={eps}: relative error {err:.2e} > 1e-05: {hint}")
            worst = max(worst, err)
    print(f"[{name}] relative error {worst:.2e} (tolerance 1e-05): PASSED")


def check_threat_radii(learner_radii):
    """learner_radii(scales, tolerance) -> per-feature eps in model units (fraud.FEATURES order)."""
    df = fraud.make_transactions(2000, seed=1)
    scaler = fraud.FeatureScaler().fit(df)
    scales = {f: scaler.scale(f) for f in fraud.FEATURES}
    tol = {"amount": 5.0, "hour": 0.25, "distance_km": 2.0}
    got = np.asarray(call_learner("threat_radii", learner_radii, scales, tol), dtype=np.float64)
    expected = fraud.threat_radii(scaler, tol)[0].astype(np.float64)
    check_value("threat_radii", torch.as_tensor(got), torch.as_tensor(expected), tol=1e-5)



GATE_METRICS = ("certified accuracy", "certified recall", "clean accuracy", "clean recall")  # what reasons name


def gate_decision_reference(pred, certified, own_pred, y, min_accuracy: float, min_recall: float):
    """The promotion gate's rule (``fraud.gate.run_gate`` with ``certify_candidate``'s metrics) ->
    (passed, the metrics below their threshold, in ``GATE_METRICS`` order).

    A transaction counts when it is certified *and* correct (``pred == y``); recall is over fraud
    (y == 1) only; the model's own argmax must reach the same thresholds on clean data; a metric
    passes at exactly its threshold (``>=``). With no fraud case, recall is undefined and fails (so does
    the gate, which also says why)."""
    fraud_ = y == 1
    ok = certified & (pred == y)

    def rate(hits, over):
        return float(hits[over].double().mean()) if over.any() else float("nan")

    values = dict(zip(GATE_METRICS, (rate(ok, torch.ones_like(fraud_)), rate(ok, fraud_),
                                     rate(own_pred == y, torch.ones_like(fraud_)), rate(own_pred == 1, fraud_))))
    short = [m for m, v in values.items() if not v >= (min_accuracy if "accuracy" in m else min_recall)]
    return not short, short


def _gate_case(n_fraud, cert_fraud, cert_legit, own_fraud, own_legit, wrong_certified=0, n=64, flags_fraud=True):
    """(pred, certified, own_pred, y) on n transactions, the first n_fraud fraud: the certified classifier
    is right and certified on cert_fraud fraud / cert_legit legitimate cases, and certified but wrong on
    ``wrong_certified`` more; the model's own argmax is right on own_fraud / own_legit of them."""
    y = torch.zeros(n, dtype=torch.long)
    y[:n_fraud] = 1
    pred, certified, own = 1 - y, torch.zeros(n, dtype=torch.bool), 1 - y
    legit = torch.arange(n_fraud, n)
    right = torch.cat([torch.arange(cert_fraud), legit[:cert_legit]])
    pred[right], certified[right] = y[right], True
    certified[legit[-wrong_certified:] if wrong_certified else legit[:0]] = True  # certified, but pred is wrong
    own_right = torch.cat([torch.arange(own_fraud), legit[:own_legit]])
    own[own_right] = y[own_right]
    if not flags_fraud:  # the accuracy trap: a model that never says "fraud"
        pred, own, certified = torch.zeros_like(y), torch.zeros_like(y), torch.ones(n, dtype=torch.bool)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(n_fraud + cert_legit))
    return pred[perm], certified[perm], own[perm], y[perm]


# (what the case is about, case, min_accuracy, min_recall); 64 transactions, dyadic rates (exact in float32)
_GATE_CASES = [
    ("passes comfortably", dict(n_fraud=8, cert_fraud=8, cert_legit=54, own_fraud=8, own_legit=56), 0.75, 0.5),
    ("exactly at both thresholds (>= passes)", dict(n_fraud=8, cert_fraud=4, cert_legit=44, own_fraud=4,
                                                    own_legit=44), 0.75, 0.5),
    ("one certified transaction short of each", dict(n_fraud=8, cert_fraud=3, cert_legit=44, own_fraud=8,
                                                     own_legit=56), 0.75, 0.5),
    ("the accuracy trap: never flags fraud", dict(n_fraud=8, cert_fraud=0, cert_legit=0, own_fraud=0, own_legit=0,
                                                  flags_fraud=False), 0.75, 0.5),
    ("certified but wrong does not count", dict(n_fraud=8, cert_fraud=6, cert_legit=30, own_fraud=8, own_legit=56,
                                                wrong_certified=20), 0.75, 0.5),
    ("certificates good, the model's own argmax bad", dict(n_fraud=8, cert_fraud=8, cert_legit=56, own_fraud=2,
                                                           own_legit=40), 0.75, 0.5),
    ("no fraud case: recall undefined", dict(n_fraud=0, cert_fraud=0, cert_legit=64, own_fraud=0, own_legit=64),
     0.75, 0.5),
    ("recall required 0, accuracy 1", dict(n_fraud=8, cert_fraud=0, cert_legit=56, own_fraud=0, own_legit=56),
     1.0, 0.0),
]


def check_gate_decision(learner_gate):
    """learner_gate(pred, certified, own_pred, y, min_accuracy, min_recall) -> (passed, reasons): pred and
    certified from the certifier (a transaction counts when certified and pred == y), own_pred the model's
    own argmax, y 1 for fraud. Passed when certified accuracy, certified recall (fraud only), clean
    accuracy and clean recall of own_pred all reach their threshold (accuracies min_accuracy, recalls
    min_recall; at the threshold passes; no fraud case fails recall); reasons: one string per metric
    short, naming it as in ``GATE_METRICS``. Compared with ``gate_decision_reference`` (run_gate's rule)."""
    name = "gate_decision"
    for about, kw, acc, rec in _GATE_CASES:
        pred, certified, own, y = _gate_case(**kw)
        passed, short = gate_decision_reference(pred, certified, own, y, acc, rec)
        got = call_learner(name, learner_gate, pred.clone(), certified.clone(), own.clone(), y.clone(), acc, rec)
        if not isinstance(got, tuple) or len(got) != 2:
            _fail(name, f"{about}: return (passed, reasons), got {got!r}")
        got_short = [m for m in GATE_METRICS if any(m in str(r).lower() for r in got[1])]
        if bool(got[0]) != passed or got_short != short:
            _fail(name, f"{about} (min_accuracy={acc}, min_recall={rec}): got passed={bool(got[0])}, reasons "
                             f"naming {got_short}; expected passed={passed}, short on {short}")
    print(f"[{name}] {len(_GATE_CASES)} cases (thresholds met exactly, the accuracy trap, certified but wrong, "
          "the clean rule, no fraud): PASSED")


def _fail(name, message):
    print(f"[{name}] FAILED: {message}")
    raise AssertionError(f"{name}: {message}")
