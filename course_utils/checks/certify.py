"""Checks for the certified-defense exercises: notebooks 07 (randomized smoothing), 08 (interval
bound propagation), 08b (CROWN) and the project p3 (threat model of the fraud gate)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import certify, fraud
from . import call_learner, check_value, compare


def check_radius(learner_radius, sigma: float = 0.5):
    """learner_radius(n_a, n, alpha, sigma) = sigma * PhiInverse(Clopper-Pearson lower bound), 0 if <= 1/2."""
    cases = [(990, 1000, 0.001), (100, 100, 0.01), (520, 1000, 0.001), (9000, 10000, 0.05), (0, 50, 0.001)]
    got = [float(call_learner("certified_radius", learner_radius, a, n, al, sigma)) for a, n, al in cases]
    expected = [certify.certified_radius(certify.lower_confidence_bound(a, n, al), sigma) for a, n, al in cases]
    check_value("certified_radius", torch.tensor(got), torch.tensor(expected), tol=1e-6)


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
        pa = certify.lower_confidence_bound(int(c[c_a]), int(sum(c)), alpha)
        expected = (certify.ABSTAIN, 0.0) if pa < 0.5 else (c_a, certify.certified_radius(pa, sigma))
        if int(got[0]) != expected[0]:
            hint = ""
            if int(got[0]) == int(np.argmax(c)) != c_a:
                hint = (": c_A looks chosen from the estimation counts; choose it from the selection counts counts0 "
                        "(selecting and estimating on the same sample biases pA upward)")
            print(f"[{name}] counts0={c0} counts={c}: label {got[0]}, expected {expected[0]}{hint}: FAILED")
            raise AssertionError(f"{name}: counts0={c0} counts={c}: label {got[0]} != {expected[0]}{hint}")
        check_value(f"{name} radius, counts0={c0} counts={c}", float(got[1]), expected[1], tol=1e-6)


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


def check_threat_radii(learner_radii):
    """learner_radii(scales, tolerance) -> per-feature eps in model units (fraud.FEATURES order)."""
    df = fraud.make_transactions(2000, seed=1)
    scaler = fraud.FeatureScaler().fit(df)
    scales = {f: scaler.scale(f) for f in fraud.FEATURES}
    tol = {"amount": 5.0, "hour": 0.25, "distance_km": 2.0}
    got = np.asarray(call_learner("threat_radii", learner_radii, scales, tol), dtype=np.float64)
    expected = fraud.threat_radii(scaler, tol)[0].astype(np.float64)
    check_value("threat_radii", torch.as_tensor(got), torch.as_tensor(expected), tol=1e-5)
