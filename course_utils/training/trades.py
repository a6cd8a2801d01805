"""TRADES (Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and Accuracy") as a
loss hook of the course's training loop (notebook 09; ``fit(..., loss_fn=trades_loss(...))``).

The loss is ``CE(f(x), y) + beta * KL(f(x) || f(x'))``: the clean loss keeps clean accuracy, the KL
term pulls the prediction on the worst nearby input towards the clean one, and ``beta`` sets the
trade-off (the authors' 1 / lambda; their MNIST setting is beta = 1, CIFAR-10 beta = 6). ``x'``
maximizes the KL term by sign-gradient steps inside the L-infinity ball, started from
``x + 0.001 * N(0, 1)``, as in ``trades.py`` of yaodongyu/TRADES (MNIST: eps 0.3, 40 steps of 0.01).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..validation import check_nonnegative, check_positive_int, eval_mode


def trades_perturb(model, x: torch.Tensor, eps: float, alpha: float, steps: int, generator=None) -> torch.Tensor:
    """TRADES' inner maximization: ``x'`` in the L-inf ball of ``eps`` around x (and in [0, 1]) that
    raises ``KL(f(x) || f(x'))``, by ``steps`` sign-gradient steps of ``alpha`` (model in eval mode)."""
    steps = check_positive_int(steps, "steps")
    with eval_mode(model):
        with torch.no_grad():
            p_clean = F.softmax(model(x), dim=1)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device) if generator is not None \
            else torch.randn_like(x)
        x_adv = (x + 0.001 * noise).clamp(0, 1).detach()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def trades_loss(eps: float, alpha: float, steps: int, beta: float = 1.0, generator=None):
    """A loss hook ``(model, x, y, t) -> (loss, clean logits)`` for ``train_step`` / ``fit``: TRADES with
    ``beta`` (0 is standard training) and the inner maximization ``trades_perturb(eps, alpha, steps)``."""
    check_nonnegative(eps, "eps")
    check_nonnegative(beta, "beta")

    def loss_fn(model, x, y, t: float = 0.0):
        x_adv = trades_perturb(model, x, eps, alpha, steps, generator) if beta > 0 else x
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if beta > 0:
            loss = loss + beta * F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1),
                                          reduction="batchmean")
        return loss, logits

    return loss_fn
