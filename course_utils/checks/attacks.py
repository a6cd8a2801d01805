"""Checks for the attack exercises of notebooks 02 and 03 (FGSM, L2 FGM, projection, PGD, targeted pairs)."""
from __future__ import annotations

import torch
from torch import nn

from .. import attacks
from . import compare


def tiny_classifier(generator: torch.Generator, d: int = 12, num_classes: int = 3) -> nn.Module:
    """A seeded 2-layer MLP on flattened (B, C, H, W) images with C * H * W = d, for checks of attack code."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, num_classes))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    return model.eval()


def _attack_inputs(generator, batch=5, d=12, num_classes=3):
    """A seeded model, x: (B, 3, 2, d/6) in [0, 1] (three channels, so a per-channel norm is not a
    per-example one), y: (B,)."""
    model = tiny_classifier(generator, d, num_classes)
    x = torch.rand(batch, 3, 2, d // 6, generator=generator)
    y = torch.randint(0, num_classes, (batch,), generator=generator)
    return model, x, y


def check_fgsm(learner_fgsm, eps: float = 0.1):
    """learner_fgsm(model, x, y, eps) must equal ``attacks.fgsm`` (L-infinity)."""
    compare("fgsm", lambda m, x, y: learner_fgsm(m, x, y, eps),
            lambda m, x, y: attacks.fgsm(m, x, y, eps), _attack_inputs)


def check_fgm_l2(learner_fgm, eps: float = 0.5):
    """learner_fgm(model, x, y, eps) must equal ``attacks.fgsm(..., norm="l2")``."""
    compare("fgm_l2", lambda m, x, y: learner_fgm(m, x, y, eps),
            lambda m, x, y: attacks.fgsm(m, x, y, eps, norm="l2"), _attack_inputs)


def _deltas_of_norm(generator, norm: str, eps: float, factors) -> torch.Tensor:
    """(len(factors), 3, 4, 4) random deltas with ||delta_i||_norm = factors[i] * eps."""
    delta = torch.randn(len(factors), 3, 4, 4, generator=generator)
    lengths = delta.flatten(1).abs().amax(1) if norm == "linf" else delta.flatten(1).norm(p=2, dim=1)
    return delta * (eps * torch.tensor(factors) / lengths).view(-1, 1, 1, 1)


def check_projection(learner_project, norm: str, eps: float = 0.3):
    """learner_project(delta, eps) must equal ``attacks.project(delta, eps, norm)``: deltas inside the
    ball come back unchanged, deltas outside land on its boundary (tried separately, per example)."""
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    cases = [("shorter than eps: must come back unchanged", (0.1, 0.5, 0.9, 0.99)),
             ("longer than eps: must land on ||delta|| = eps, per example", (1.01, 1.5, 3.0, 10.0)),
             ("a batch mixing short and long deltas", (0.2, 4.0, 0.7, 1.3))]
    for what, factors in cases:
        compare(f"project_{norm}, deltas {what}", lambda d: learner_project(d, eps),
                lambda d: attacks.project(d, eps, norm), lambda g: (_deltas_of_norm(g, norm, eps, factors),))


def check_pgd(learner_pgd, eps: float = 0.2, alpha: float = 0.05, steps: int = 7):
    """learner_pgd(model, x, y, eps, alpha, steps) from x (no random start) must equal ``attacks.pgd``."""
    compare("pgd", lambda m, x, y: learner_pgd(m, x, y, eps, alpha, steps),
            lambda m, x, y: attacks.pgd(m, x, y, eps, alpha, steps, random_start=False), _attack_inputs)


def check_targeted_fgsm(learner_targeted, eps: float = 0.1):
    """learner_targeted(model, x, target, eps): one signed step *down* the loss of the target class."""
    compare("targeted_fgsm", lambda m, x, t: learner_targeted(m, x, t, eps),
            lambda m, x, t: attacks.fgsm(m, x, t, eps, targeted=True), _attack_inputs)


def reference_targeted_pairs(y: torch.Tensor, pred_clean: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, num_classes) bool: the (image, target) pairs a targeted attack has to reach. Image i counts when
    the model classifies it correctly clean (a misclassified image is no adversarial example), target t
    when t is not its true class (reaching the true class needs no attack). Notebook 03."""
    targets = torch.arange(num_classes, device=y.device)
    return (pred_clean == y)[:, None] & (targets[None, :] != y[:, None])


def check_targeted_pairs(learner_fn, num_classes: int = 4):
    """learner_fn(y, pred_clean, num_classes) -> (B, num_classes) bool mask of the pairs worth attacking."""
    def inputs(g, batch=30):
        y = torch.randint(0, num_classes, (batch,), generator=g)
        pred_clean = torch.where(torch.rand(batch, generator=g) < 0.7, y, torch.randint(0, num_classes, (batch,), generator=g))
        return y, pred_clean

    def as_float(fn):
        return lambda y, p: torch.as_tensor(fn(y, p, num_classes)).to(torch.float64)

    compare("targeted_pairs", as_float(learner_fn), as_float(reference_targeted_pairs), inputs, tol=0.0)
