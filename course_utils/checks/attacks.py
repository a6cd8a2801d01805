"""Checks for the attack exercises of notebooks 02 and 03 (FGSM, L2 FGM, projection, PGD)."""
from __future__ import annotations

import torch
from torch import nn

from .. import attacks
from . import compare


def tiny_classifier(generator: torch.Generator, d: int = 12, num_classes: int = 3) -> nn.Module:
    """A seeded 2-layer MLP on flattened (B, 1, 2, d/2) images, for checks of attack code."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, num_classes))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    return model.eval()


def _attack_inputs(generator, batch=5, d=12, num_classes=3):
    model = tiny_classifier(generator, d, num_classes)
    x = torch.rand(batch, 1, 2, d // 2, generator=generator)
    y = torch.randint(0, num_classes, (batch,), generator=generator)
    return model, x, y


def check_fgsm(learner_fgsm, eps: float = 0.1):
    """learner_fgsm(model, x, y, eps) must equal ``attacks.fgsm`` (L-infinity)."""
    return compare("fgsm", lambda m, x, y: learner_fgsm(m, x, y, eps),
                   lambda m, x, y: attacks.fgsm(m, x, y, eps), _attack_inputs)


def check_fgm_l2(learner_fgm, eps: float = 0.5):
    """learner_fgm(model, x, y, eps) must equal ``attacks.fgsm(..., norm="l2")``."""
    return compare("fgm_l2", lambda m, x, y: learner_fgm(m, x, y, eps),
                   lambda m, x, y: attacks.fgsm(m, x, y, eps, norm="l2"), _attack_inputs)


def check_projection(learner_project, norm: str, eps: float = 0.3):
    """learner_project(delta, eps) must equal ``attacks.project(delta, eps, norm)``."""
    def inputs(g):
        return (torch.randn(6, 1, 4, 4, generator=g) * 0.5,)

    return compare(f"project_{norm}", lambda d: learner_project(d, eps),
                   lambda d: attacks.project(d, eps, norm), inputs)


def check_pgd(learner_pgd, eps: float = 0.2, alpha: float = 0.05, steps: int = 7):
    """learner_pgd(model, x, y, eps, alpha, steps) from x (no random start) must equal ``attacks.pgd``."""
    return compare("pgd", lambda m, x, y: learner_pgd(m, x, y, eps, alpha, steps),
                   lambda m, x, y: attacks.pgd(m, x, y, eps, alpha, steps, random_start=False), _attack_inputs)


def check_targeted_fgsm(learner_targeted, eps: float = 0.1):
    """learner_targeted(model, x, target, eps): one signed step *down* the loss of the target class."""
    return compare("targeted_fgsm", lambda m, x, t: learner_targeted(m, x, t, eps),
                   lambda m, x, t: attacks.fgsm(m, x, t, eps, targeted=True), _attack_inputs)
