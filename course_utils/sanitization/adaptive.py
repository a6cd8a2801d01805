"""Adaptive attacks on input sanitization, built on ``attacks.pgd`` (notebook 06).

A defense that transforms or screens inputs is evaluated against an attacker who knows it
(Carlini & Wagner 2017; Athalye, Carlini & Wagner 2018; Tramer et al. 2020):

- ``bpda(x, transform)``: Backward Pass Differentiable Approximation (Athalye et al. 2018,
  Sec. 4.1) with the identity: forward g(x), backward d g / d x := I (straight-through). Lets a
  gradient attack go through bit-depth reduction, median filters or non-local means.
- ``BPDAModel(model, transform)``: the defended classifier f(g(x)) with BPDA gradients, so
  ``attacks.pgd(BPDAModel(...), ...)`` attacks squeezing used as a purifier.
- ``DetectorAwareModel(model, detector)``: Carlini & Wagner's (2017, Sec. 3.2) combined model
  G(x) with K + 1 classes, G_K+1(x) = max_j Z_j(x) + kappa (D(x) - tau) / tau, so that
  "argmax G = K + 1" is exactly "the detector flags x". A targeted ``attacks.pgd`` on G towards
  t < K finds inputs classified as t and not flagged (``adaptive_pgd``).
- Carlini & Wagner's optimisation attack runs through ART: ``course_utils.interop.carlini_wagner``.

All take x: (B, C, H, W) in [0, 1] and return adversarial inputs in [0, 1].
"""
from __future__ import annotations

import torch
from torch import nn

from .. import attacks
from ..validation import check_images, check_labels, check_positive_int, eval_mode


class _StraightThrough(torch.autograd.Function):
    """forward: transform(x) (computed without grad); backward: the incoming gradient unchanged."""

    @staticmethod
    def forward(ctx, x, transform):
        with torch.no_grad():
            return transform(x.detach()).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None


def bpda(x: torch.Tensor, transform) -> torch.Tensor:
    """g(x) in the forward pass, identity Jacobian in the backward pass (BPDA, Athalye et al. 2018).

    x: (B, C, H, W); transform: x -> same shape (a squeezer). Equivalent to
    ``x + (transform(x) - x).detach()`` without its floating-point round-off.
    """
    return _StraightThrough.apply(x, transform)


class BPDAModel(nn.Module):
    """f(g(x)): the classifier behind an input transformation g, with BPDA gradients through g."""

    def __init__(self, model: nn.Module, transform):
        super().__init__()
        self.model, self.transform = model, transform

    def forward(self, x):
        return self.model(bpda(x, self.transform))


class DetectorAwareModel(nn.Module):
    """Carlini & Wagner's (2017) combined classifier: K classes of ``model`` plus "detected".

    Logits G(x): (B, K + 1); G_j = Z_j(x) for j < K and G_K = max_j Z_j(x) + kappa (D(x) - tau) / tau,
    where D is ``detector.differentiable_score`` (through ``bpda`` for squeezers) and tau its
    calibrated threshold. G predicts K exactly when D(x) > tau, i.e. when the detector flags x.
    With ``views`` (default: the detector's squeezers, if any), Z is the mean log-probability of
    the model over x and each BPDA-squeezed view, so a targeted attack makes all views agree on the
    target (He et al. 2017): the confident, consistent example the squeezing detector cannot see.
    """

    def __init__(self, model: nn.Module, detector, kappa: float = 1.0, views=None):
        super().__init__()
        if getattr(detector, "threshold", None) is None:
            raise ValueError("the detector needs a threshold: call detector.fit_threshold(x_clean, fpr) first")
        self.model, self.detector, self.kappa = model, detector, kappa
        squeezers = getattr(detector, "squeezers", {})
        self.views = list(squeezers.values()) if views is None else list(views)

    def forward(self, x):
        z = self.model(x)  # (B, K)
        if self.views:  # mean log-probabilities over x and its squeezed views (all must agree on t)
            logp = [z.log_softmax(1)] + [self.model(bpda(x, v)).log_softmax(1) for v in self.views]
            z = torch.stack(logp).mean(0)
        tau = max(abs(self.detector.threshold), 1e-12)
        d = self.detector.differentiable_score(x, through=bpda)  # (B,)
        flagged = z.amax(1) + self.kappa * (d - self.detector.threshold) / tau
        return torch.cat([z, flagged[:, None]], dim=1)


def adaptive_pgd(model: nn.Module, detector, x, y, eps: float, alpha: float, steps: int, n_targets: int = 2,
                 kappa: float = 1.0, norm: str = "linf", restarts: int = 1, generator=None, views=None) -> torch.Tensor:
    """Detector-aware PGD: fool ``model`` and keep ``detector`` under its threshold (Carlini & Wagner 2017).

    First plain ``attacks.pgd`` on the model (it may already pass the detector); then, for each of
    the ``n_targets`` most likely wrong classes t of the model on x (in order),
    ``attacks.pgd(DetectorAwareModel(model, detector), x, t, targeted=True)`` on the examples not
    yet successful (classified != y and not flagged). Per example the first success is kept.
    x: (B, C, H, W) in [0, 1]; returns x_adv with ||x_adv - x||_norm <= eps, in [0, 1].
    """
    check_images(x)
    y = check_labels(y, x)
    n_targets = check_positive_int(n_targets, "n_targets")
    joint = DetectorAwareModel(model, detector, kappa, views)
    with eval_mode(model), torch.no_grad():
        logits = model(x)
    ranked = logits.scatter(1, y[:, None], -float("inf")).argsort(1, descending=True)  # wrong classes first
    x_adv = x.clone()
    todo = torch.ones(len(x), dtype=torch.bool, device=x.device)
    for k in range(-1, min(n_targets, logits.shape[1] - 1)):
        idx = todo.nonzero().flatten()
        if len(idx) == 0:
            break
        if k < 0:  # the non-adaptive attack first: an adaptive attacker never does worse than it
            cand = attacks.pgd(model, x[idx], y[idx], eps, alpha, steps, norm=norm, restarts=restarts, generator=generator)
        else:
            cand = attacks.pgd(joint, x[idx], ranked[idx, k], eps, alpha, steps, norm=norm, restarts=restarts,
                               targeted=True, generator=generator)
        with eval_mode(model), torch.no_grad():
            fooled = model(cand).argmax(1) != y[idx]
            ok = fooled & ~detector.detect(cand)
            was_fooled = model(x_adv[idx]).argmax(1) != y[idx]
        keep = ok | (fooled & ~was_fooled) | (k < 0)  # success first; else at least a fooling (flagged) example
        x_adv[idx[keep]] = cand[keep]
        todo[idx[ok]] = False
    return x_adv.detach()


def bypass_verdict(report: dict, max_detected: float = 0.2, min_fooled: float = 0.9):
    """Did an attack bypass classifier + detector? Read from a ``detection_report`` row.

    The bypass appeared when at least ``min_fooled`` of the examples fool the model and at most
    ``max_detected`` of those are flagged (issue 12's target for CIFAR-10 at 8/255, at the
    detector's 5% false-positive threshold). Returns an ``evaluation.Verdict``: shown, or not
    resolved with what a learner should do (a failed attack never shows that a detector holds: only a
    stronger attack can settle it, Tramer et al. 2020).
    """
    from ..evaluation import phenomenon

    fooled, detected = report["fooled"], report["detected (of fooled)"]
    if not fooled > 0 or detected != detected:  # nothing fooled (detected is nan)
        return phenomenon("BYPASS", False, f"{report['attack']}: fooled none of {report['n']} correctly classified "
                          "images", "The attack fooled nothing: check it on the bare model first.")
    numbers = (f"{report['attack']}: fooled {fooled:.1%} of {report['n']} correctly classified images, "
               f"detected {detected:.1%} of those (95% CI {report.get('detected 95% CI', '-')}), "
               f"evaded {report['evaded']:.1%} (95% CI {report['evaded 95% CI']})")
    missed = ([f"fooled {fooled:.1%} < {min_fooled:.0%}"] if fooled < min_fooled else []) + \
             ([f"detected {detected:.1%} > {max_detected:.0%}"] if detected > max_detected else [])
    why = "; ".join(missed) or f"targets: fooled >= {min_fooled:.0%}, detected <= {max_detected:.0%}"
    return phenomenon("BYPASS", not missed, f"{numbers} ({why})",
                      "Before calling the detector robust, strengthen the attack until it stops improving: more "
                      "steps, more target classes, restarts, a larger kappa (Tramer et al. 2020); a detector is only "
                      "as strong as the best attack tried on it.",
                      if_so="The detector's number without the adaptive attack was not a security claim.")
