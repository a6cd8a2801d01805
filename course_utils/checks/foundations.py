"""Checks for the exercises of notebooks 00 (perturbation norms) and 02 (linearity argument, attack success).

The attack exercises of notebook 02 (projection, FGSM, L2 fast gradient method) use
``checks.attacks``; this module adds the two checks that have no reference in ``course_utils``.
"""
from __future__ import annotations

import torch

from . import compare


def _pair(generator, batch=4, shape=(3, 4, 4)):  # 3 channels: a per-channel norm is not a per-example one
    x = torch.rand(batch, *shape, generator=generator)
    delta = (torch.rand(batch, *shape, generator=generator) * 2 - 1) * torch.rand(batch, 1, 1, 1, generator=generator)
    return x, (x + delta).clamp(0, 1)


def reference_perturbation_norms(x: torch.Tensor, x_adv: torch.Tensor):
    """Per-example ||x_adv - x||_inf and ||x_adv - x||_2: two tensors of shape (B,)."""
    delta = (x_adv - x).flatten(1)
    return delta.abs().amax(dim=1), delta.norm(p=2, dim=1)


def check_perturbation_norms(learner_fn):
    """learner_fn(x, x_adv) -> (linf, l2), each (B,), must match the per-example norms of x_adv - x."""
    def stacked(fn):
        def run(x, x_adv):
            out = fn(x, x_adv)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise AssertionError("return a pair (linf, l2) of tensors of shape (B,)")
            return torch.stack([torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in out])
        return run

    compare("perturbation_norms", stacked(learner_fn), stacked(reference_perturbation_norms), _pair)


def reference_worst_case_linear(w: torch.Tensor, eps: float) -> torch.Tensor:
    """argmax of w^T eta over ||eta||_inf <= eps: eta = eps * sign(w) (Goodfellow et al. 2015, sec. 3)."""
    return eps * torch.sign(w)


def check_worst_case_linear(learner_fn, eps: float = 0.1):
    """learner_fn(w, eps) -> eta (d,) maximising w^T eta under ||eta||_inf <= eps."""
    def inputs(g):
        return (torch.randn(50, generator=g),)

    compare("worst_case_linear", lambda w: learner_fn(w, eps), lambda w: reference_worst_case_linear(w, eps), inputs)


def reference_attack_success(y: torch.Tensor, pred_clean: torch.Tensor, pred_adv: torch.Tensor) -> torch.Tensor:
    """(k, n) as a tensor of two counts: n images the model classifies correctly when clean, k of them
    misclassified after the attack. Only these k are adversarial examples: an image the model already
    gets wrong is a clean mistake, not an attack's success (notebook 02)."""
    right = pred_clean == y
    return torch.stack([(right & (pred_adv != y)).sum(), right.sum()])


def _predictions(generator, batch=40, num_classes=3):
    """Labels and clean / adversarial predictions over 3 classes: every combination of clean right or
    wrong and adversarial right, wrong or unchanged occurs."""
    y = torch.randint(0, num_classes, (batch,), generator=generator)
    pred_clean = torch.where(torch.rand(batch, generator=generator) < 0.7, y,
                             torch.randint(0, num_classes, (batch,), generator=generator))
    pred_adv = torch.where(torch.rand(batch, generator=generator) < 0.5, pred_clean,
                           torch.randint(0, num_classes, (batch,), generator=generator))
    return y, pred_clean, pred_adv


def check_attack_success(learner_fn):
    """learner_fn(y, pred_clean, pred_adv) -> (k, n): the adversarial examples k among the n images
    classified correctly when clean (all (B,) integer tensors)."""
    def counts(fn):
        def run(y, pred_clean, pred_adv):
            out = fn(y, pred_clean, pred_adv)
            if not isinstance(out, (tuple, list, torch.Tensor)) or len(out) != 2:
                raise AssertionError("attack_success: return a pair (k, n) of counts")
            return torch.stack([torch.as_tensor(v, dtype=torch.float64).reshape(()) for v in out])
        return run

    compare("attack_success", counts(learner_fn), counts(reference_attack_success), _predictions, tol=0.0)
