"""Checks for the input-sanitization exercises of notebook 06 (bit depth, FPR threshold, BPDA)."""
from __future__ import annotations

import functools

import torch

from .. import sanitization
from . import compare


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
