"""Gradient attacks in pixel space, built from small pieces (introduced in notebooks 02 and 03).

The threat model (an Lp ball of radius eps around x, intersected with the image box [0, 1]) is
kept apart from the optimizer:

- ``project(delta, eps, norm)``: Euclidean projection onto the Lp ball.
- ``ascent_step(delta, grad, alpha, norm)``: steepest ascent step of length alpha under the norm
  (``alpha * sign(g)`` for L-infinity, ``alpha * g / ||g||_2`` for L2).
- ``random_init(x, eps, norm)``: a uniform point of the ball.
- ``fgsm``: one step of length eps from x (Goodfellow et al. 2015).
- ``pgd``: projected gradient descent on the loss with random restarts (Madry et al. 2018).

All take ``x``: (B, C, H, W) float in [0, 1] and ``y``: (B,) class indices, and return adversarial
inputs in [0, 1] with ``||x_adv - x|| <= eps``. eps is in pixel units (0.3 on MNIST, 8/255 on
CIFAR-10). Models are run in eval mode and restored afterwards.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .validation import check_images, check_labels, check_nonnegative, check_norm, check_positive_int, eval_mode

_TINY = 1e-12


def lp_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example norm of delta: (B, ...) -> (B,)."""
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(p=2, dim=1)


def _per_example(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def project(delta: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """Project delta onto {d : ||d||_norm <= eps}, per example. delta: (B, ...)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    scale = (eps / lp_norm(delta, "l2").clamp_min(_TINY)).clamp(max=1.0)
    return delta * _per_example(scale, delta)


def ascent_step(delta: torch.Tensor, grad: torch.Tensor, alpha: float, norm: str = "linf") -> torch.Tensor:
    """delta + the steepest-ascent step of length alpha under ``norm`` (argmax of <g, s>, ||s|| <= alpha)."""
    if norm == "linf":
        return delta + alpha * grad.sign()
    g_norm = _per_example(lp_norm(grad, "l2").clamp_min(_TINY), grad)
    return delta + alpha * grad / g_norm


def random_init(x: torch.Tensor, eps: float, norm: str = "linf", generator: torch.Generator | None = None) -> torch.Tensor:
    """A delta drawn uniformly from the eps-ball (then clipped so x + delta stays in [0, 1])."""
    gen_device = generator.device if generator is not None else x.device
    if norm == "linf":
        delta = (torch.rand(x.shape, generator=generator, device=gen_device) * 2 - 1) * eps
    else:
        direction = torch.randn(x.shape, generator=generator, device=gen_device)
        direction = direction / _per_example(lp_norm(direction, "l2").clamp_min(_TINY), direction)
        d = x[0].numel()
        radius = eps * torch.rand(x.shape[0], generator=generator, device=gen_device) ** (1.0 / d)
        delta = direction * _per_example(radius, direction)
    delta = delta.to(device=x.device, dtype=x.dtype)
    return (x + delta).clamp(0, 1) - x


def _loss_grad(model, x, delta, y, targeted, loss_fn):
    delta = delta.detach().requires_grad_(True)
    with torch.enable_grad():  # attacks work inside torch.no_grad() blocks too
        logits = model(x + delta)
        losses = loss_fn(logits, y)
        (grad,) = torch.autograd.grad(losses.sum(), delta)
    return (-grad if targeted else grad), losses.detach(), logits.detach()


def _check(model, x, y, eps, norm):
    if not isinstance(model, torch.nn.Module) and not callable(model):
        raise ValueError(f"model must be a torch.nn.Module (or callable), got {type(model).__name__}")
    check_images(x)
    y = check_labels(y, x)
    check_nonnegative(eps, "eps")
    check_norm(norm)
    return y


def _eval(model):
    return eval_mode(model) if isinstance(model, torch.nn.Module) else contextlib.nullcontext()


def _cross_entropy(logits, y):
    return F.cross_entropy(logits, y, reduction="none")


def fgsm(model, x, y, eps: float, norm: str = "linf", targeted: bool = False, loss_fn=_cross_entropy) -> torch.Tensor:
    """Fast gradient (sign) method: one step of length eps along the steepest-ascent direction.

    Under L-infinity this is FGSM, ``x + eps * sign(grad_x L)`` (Goodfellow et al. 2015); under L2
    it is the fast gradient method ``x + eps * g / ||g||_2``. Targeted: descend towards label y.
    """
    y = _check(model, x, y, eps, norm)
    with _eval(model):
        zero = torch.zeros_like(x)
        grad, _, _ = _loss_grad(model, x, zero, y, targeted, loss_fn)
        delta = project(ascent_step(zero, grad, eps, norm), eps, norm)
        return (x + delta).clamp(0, 1).detach()


def pgd(
    model,
    x,
    y,
    eps: float,
    alpha: float,
    steps: int,
    norm: str = "linf",
    random_start: bool = True,
    restarts: int = 1,
    targeted: bool = False,
    loss_fn=_cross_entropy,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent (Madry et al. 2018) in the ``norm`` ball of radius eps.

    Each of ``restarts`` runs starts at a uniform point of the ball (or at x when
    ``random_start=False``) and takes ``steps`` steps of length ``alpha``, each followed by
    projection onto the ball and clipping to [0, 1]. Per example, the result is the restart that
    fooled the model (untargeted: prediction != y; targeted: prediction == y), else the one with
    the highest loss (lowest for targeted). Returns x_adv: same shape as x, in [0, 1].
    """
    y = _check(model, x, y, eps, norm)
    check_nonnegative(alpha, "alpha")
    steps = check_positive_int(steps, "steps")
    restarts = check_positive_int(restarts, "restarts")
    with _eval(model):
        best = x.detach().clone()
        best_score = torch.full((x.shape[0],), -float("inf"), device=x.device)
        for _ in range(restarts):
            delta = random_init(x, eps, norm, generator) if random_start else torch.zeros_like(x)
            for _ in range(steps):
                grad, _, _ = _loss_grad(model, x, delta, y, targeted, loss_fn)
                delta = project(ascent_step(delta, grad, alpha, norm), eps, norm)
                delta = (x + delta).clamp(0, 1) - x
            with torch.no_grad():
                logits = model(x + delta)
                loss = loss_fn(logits, y)
                success = (logits.argmax(1) == y) if targeted else (logits.argmax(1) != y)
                # success dominates; among equals the higher (untargeted) / lower (targeted) loss
                score = success.float() * 1e6 + (-loss if targeted else loss)
                better = score > best_score
                best[better] = (x + delta)[better]
                best_score = torch.where(better, score, best_score)
        return best.detach()
