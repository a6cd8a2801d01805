"""Checks for the input-sanitization exercises of notebook 06 (bit depth, FPR threshold, BPDA, detector-aware logits)."""
from __future__ import annotations

import functools

import torch

from .. import sanitization
from . import call_learner, compare, rel_error


def _fail(name: str, message: str):
    print(f"[{name}] FAILED: {message}")
    raise AssertionError(f"{name}: {message}")


def _images(generator, batch=4, shape=(1, 6, 6)):
    x = torch.rand(batch, *shape, generator=generator)
    x[0, 0, 0, :3] = torch.tensor([0.0, 0.5, 1.0])  # the edges of the range and a tie
    return x


def check_bit_depth(learner_bit_depth, bits_list=(1, 3, 5)):
    """learner_bit_depth(x, bits) must equal ``sanitization.bit_depth`` for each ``bits``."""
    for bits in bits_list:
        compare(f"bit_depth bits={bits}", lambda x: learner_bit_depth(x, bits),
                lambda x: sanitization.bit_depth(x, bits), lambda g: (_images(g),), tol=1e-6)


def check_threshold(learner_threshold, fprs=(0.05, 0.2)):
    """learner_threshold(scores, fpr) -> tau must equal ``sanitization.threshold_for_fpr`` (at most fpr
    of scores > tau), for each false-positive rate in ``fprs`` (so a rule that ignores fpr fails)."""
    def inputs(g):
        n = int(torch.randint(40, 200, (1,), generator=g))
        return (torch.rand(n, generator=g) ** 2,)

    for fpr in fprs:
        compare(f"threshold fpr={fpr}", lambda s: torch.as_tensor(float(learner_threshold(s, fpr))),
                lambda s: torch.as_tensor(sanitization.threshold_for_fpr(s, fpr)), inputs, tol=1e-6)


def check_bpda(learner_bpda):
    """learner_bpda(x, transform): forward value transform(x), gradient of the identity (checked together)."""
    squeeze = functools.partial(sanitization.bit_depth, bits=2)

    def value_and_grad(fn, x, w):
        x = x.clone().requires_grad_(True)
        out = fn(x, squeeze)
        grad = torch.zeros_like(x)
        if isinstance(out, torch.Tensor) and out.requires_grad:
            (grad,) = torch.autograd.grad((out * w).sum(), x, allow_unused=True)
            grad = torch.zeros_like(x) if grad is None else grad
        return torch.cat([torch.as_tensor(out).detach().flatten(), grad.flatten()])

    def inputs(g):
        return _images(g), torch.randn(4, 1, 6, 6, generator=g)

    compare("bpda", lambda x, w: value_and_grad(learner_bpda, x, w),
            lambda x, w: value_and_grad(sanitization.bpda, x, w), inputs, tol=1e-6)


class _Logits(torch.nn.Module):
    """A fake classifier: the input's first K columns are its logits Z (B, K)."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return x[:, :self.k]


class _Score:
    """A fake detector: the input's last column is its score D (B,), with a fitted threshold."""

    def __init__(self, threshold):
        self.threshold = threshold

    def differentiable_score(self, x, through=None):
        return x[:, -1]


def check_detector_logits(learner_fn, kappas=(1.0, 2.5)):
    """learner_fn(z, d, threshold, kappa) -> (B, K + 1) logits G must equal ``sanitization.DetectorAwareModel``'s
    (Carlini & Wagner 2017): G_j = Z_j, G_K = max_j Z_j + kappa (D - tau) / tau; values and gradients.

    Scores on both sides of the threshold: below it the extra logit is below max_j Z_j (no clamp), above it wins."""
    name = "detector_logits"

    def inputs(g, k=4, batch=8):
        tau = 0.05 + float(torch.rand(1, generator=g))
        d = tau * (1 + 0.6 * torch.randn(batch, generator=g))
        d[0], d[1], d[2] = 0.5 * tau, 1.5 * tau, tau  # clearly below, clearly above, at the threshold
        return torch.cat([3 * torch.randn(batch, k, generator=g), d[:, None]], 1), tau

    def value_and_grad(fn, zd, w):
        zd = zd.clone().requires_grad_(True)
        out = call_learner(name, fn, zd)
        out = torch.as_tensor(out)
        if tuple(out.shape) != (zd.shape[0], zd.shape[1]):
            _fail(name, f"got shape {tuple(out.shape)}, expected (B, K + 1) = {tuple(zd.shape)}: "
                  "the K logits, then the detected one")
        grad = torch.zeros_like(zd)
        if out.requires_grad:
            (grad,) = torch.autograd.grad((out * w).sum(), zd, allow_unused=True)
            grad = torch.zeros_like(zd) if grad is None else grad
        return out.detach(), grad

    for kappa in kappas:
        for seed in range(3):
            g = torch.Generator().manual_seed(seed)
            zd, tau = inputs(g)
            k = zd.shape[1] - 1
            w = torch.randn(zd.shape, generator=g)
            ref = sanitization.DetectorAwareModel(_Logits(k), _Score(tau), kappa=kappa, views=[])
            learner = lambda x: learner_fn(x[:, :k], x[:, k], tau, kappa)  # noqa: E731
            got, got_grad = value_and_grad(learner, zd, w)
            exp, exp_grad = value_and_grad(ref, zd, w)
            case = f"kappa={kappa:g}, tau={tau:.3f}"
            zmax, d = zd[:, :k].amax(1), zd[:, k]
            if rel_error(got[:, :k], exp[:, :k]) > 1e-6:
                _fail(name, f"{case}: the first K columns must be the logits Z unchanged")
            if rel_error(got[2, k], zmax[2]) > 1e-6:
                _fail(name, f"{case}: at D = tau the detected logit must equal max_j Z_j (got {float(got[2, k]):.4f}, "
                      f"max Z = {float(zmax[2]):.4f}): max Z plus kappa times the normalised excess (D - tau) / tau")
            if not torch.equal(got.argmax(1)[3:] == k, d[3:] > tau):
                _fail(name, f"{case}: the detected logit must win exactly where D > tau (D = "
                      f"{[round(v, 3) for v in d[3:].tolist()]}): sign of D - tau?")
            below = d < tau
            if rel_error(got[below, k], zmax[below]) <= 1e-6:
                _fail(name, f"{case}: below the threshold the detected logit is max Z + kappa (D - tau) / tau < max Z, "
                      "not max Z (no clamp, no hinge: lowering D further still helps the attacker)")
            slope = ((got[1, k] - zmax[1]) - (got[0, k] - zmax[0])) / (d[1] - d[0])
            if rel_error(slope, kappa / tau) > 1e-4:
                _fail(name, f"{case}: the detected logit must grow by kappa / tau = {kappa / tau:.4f} per unit of D "
                      f"(got {float(slope):.4f}): kappa (D - tau) / tau, divided by tau")
            if rel_error(got[:, k], exp[:, k]) > 1e-5:
                _fail(name, f"{case}: detected logit off by relative {rel_error(got[:, k], exp[:, k]):.2e}: "
                      "max Z + kappa (D - tau) / tau")
            if rel_error(got_grad, exp_grad) > 1e-5:
                _fail(name, f"{case}: gradient off by relative {rel_error(got_grad, exp_grad):.2e}: "
                      "keep max Z and D in the graph (no detach, no .item())")
    print(f"[{name}] logits and gradients match DetectorAwareModel for kappa in {list(kappas)}, "
          "scores on both sides of tau: PASSED")
