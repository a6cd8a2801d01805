"""Gradient attacks in pixel space, built from small pieces (introduced in notebooks 02 and 03).

The threat model (an Lp ball of radius eps around x, intersected with the image box [0, 1]) is
kept apart from the optimizer:

- ``project(delta, eps, norm)``: Euclidean projection onto the Lp ball.
- ``ascent_step(delta, grad, alpha, norm)``: steepest ascent step of length alpha under the norm
  (``alpha * sign(g)`` for L-infinity, ``alpha * g / ||g||_2`` for L2).
- ``random_init(x, eps, norm)``: a uniform point of the ball.
- ``fgsm``: one step of length eps from x (Goodfellow et al. 2015).
- ``pgd``: projected gradient descent on the loss with random restarts (Madry et al. 2018);
  ``trace=[]`` records the loss of every step of every restart (notebook 03's loss curves).
- ``margin_loss``: the margin (CW) loss ``max_{j != y} z_j - z_y`` (Carlini & Wagner 2017), the
  alternative to cross-entropy for targeted attacks; ``MarginLoss(cfg)`` runs an ``AttackConfig`` on it
  (notebook 03).
- ``AttackConfig``: a threat model as a value (norm, eps) with the attack that probes it (kind,
  alpha, steps, restarts, random start). Calling it runs the attack; ``str()`` is the threat-model
  string printed next to every number (``"PGD linf eps=0.3 alpha=0.01 steps=40 restarts=1"``).
  Training, evaluation, the gradient-masking checklist, the widgets and the notebooks pass it.

The step size is ``alpha`` everywhere (Madry et al.'s symbol; torchattacks' name). Its one
default for PGD is ``default_alpha(eps, steps) = 2.5 * eps / steps``, the rule of MadryLab's
``robustness`` library (its ``attack_lr`` guidance): the steps can travel 2.5 radii, enough to
reach the far side of the ball from a random start and move along its boundary.

All take ``x``: (B, C, H, W) float in [0, 1] (finite) and ``y``: (B,) class indices in
[0, num_classes) (checked against the logits of the first forward pass), and return adversarial
inputs in [0, 1] with ``||x_adv - x|| <= eps``. eps is in pixel units (0.3 on MNIST, 8/255 on
CIFAR-10). Models are run in eval mode and restored afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from .validation import (check_images, check_label_range, check_labels, check_nonnegative, check_norm,
                         check_positive_int, eval_mode)

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


def _loss_grad(model, x, delta, y, targeted, loss_fn, check_y=False):
    delta = delta.detach().requires_grad_(True)
    with torch.enable_grad():  # attacks work inside torch.no_grad() blocks too
        logits = model(x + delta)
        if check_y:  # the first forward pass tells the number of classes
            check_label_range(y, logits.shape[1])
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


def default_alpha(eps: float, steps: int) -> float:
    """The course's one PGD step-size default: ``2.5 * eps / steps`` (MadryLab ``robustness``)."""
    return 2.5 * eps / steps


def _cross_entropy(logits, y):
    return F.cross_entropy(logits, y, reduction="none")


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The margin (CW) loss per example (B,): ``max_{j != y} z_j - z_y`` on the logits z (B, num_classes).

    Positive exactly when the model does not predict y. Untargeted attacks ascend it; targeted ones
    descend it with y = the target, which pushes z_t above every other logit (Carlini & Wagner 2017,
    their f_6 with kappa = infinity, on logits rather than probabilities). Notebook 03.
    """
    z_y = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], -float("inf"))
    return others.amax(1) - z_y


def _score(logits, y, targeted=False, loss_fn=_cross_entropy) -> torch.Tensor:
    """How good an adversarial input is, per example (B,): success dominates; among equals the higher
    (untargeted) / lower (targeted) loss. ``pgd`` (restarts), ``WorstOf`` and ``SpatialGrid`` keep the best."""
    loss = loss_fn(logits, y)
    success = (logits.argmax(1) == y) if targeted else (logits.argmax(1) != y)
    return success.float() * 1e6 + (-loss if targeted else loss)


def fgsm(model, x, y, eps: float, norm: str = "linf", targeted: bool = False, loss_fn=_cross_entropy) -> torch.Tensor:
    """Fast gradient (sign) method: one step of length eps along the steepest-ascent direction.

    Under L-infinity this is FGSM, ``x + eps * sign(grad_x L)`` (Goodfellow et al. 2015); under L2
    it is the fast gradient method ``x + eps * g / ||g||_2``. Targeted: descend towards label y.
    """
    y = _check(model, x, y, eps, norm)
    with eval_mode(model):
        zero = torch.zeros_like(x)
        grad, _, _ = _loss_grad(model, x, zero, y, targeted, loss_fn, check_y=True)
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
    trace: list | None = None,
) -> torch.Tensor:
    """Projected gradient descent (Madry et al. 2018) in the ``norm`` ball of radius eps.

    Each of ``restarts`` runs starts at a uniform point of the ball (or at x when
    ``random_start=False``) and takes ``steps`` steps of length ``alpha``, each followed by
    projection onto the ball and clipping to [0, 1]. Per example, the result is the restart that
    fooled the model (untargeted: prediction != y; targeted: prediction == y), else the one with
    the highest loss (lowest for targeted). Returns x_adv: same shape as x, in [0, 1].
    trace: a list to which each restart appends its per-example losses, a (steps + 1, B) tensor (the
    loss at the start and after every step; notebook 03 plots it against the iterations).
    """
    y = _check(model, x, y, eps, norm)
    check_nonnegative(alpha, "alpha")
    steps = check_positive_int(steps, "steps")
    restarts = check_positive_int(restarts, "restarts")
    with eval_mode(model):
        best = x.detach().clone()
        best_score = torch.full((x.shape[0],), -float("inf"), device=x.device)
        for r in range(restarts):
            delta = random_init(x, eps, norm, generator) if random_start else torch.zeros_like(x)
            losses = []
            for i in range(steps):
                grad, loss, _ = _loss_grad(model, x, delta, y, targeted, loss_fn, check_y=r == i == 0)
                losses.append(loss)
                delta = project(ascent_step(delta, grad, alpha, norm), eps, norm)
                delta = (x + delta).clamp(0, 1) - x
            with torch.no_grad():
                logits = model(x + delta)
                score = _score(logits, y, targeted, loss_fn)
                if trace is not None:
                    trace.append(torch.stack(losses + [loss_fn(logits, y)]).cpu())
                better = score > best_score
                best[better] = (x + delta)[better]
                best_score = torch.where(better, score, best_score)
        return best.detach()


KINDS = ("fgsm", "fgsm_rs", "pgd")
_LABELS = {"fgsm": "FGSM", "fgsm_rs": "FGSM-RS", "pgd": "PGD"}


def format_number(v) -> str:
    """0.0313725 -> '8/255' (CIFAR-style radii), 0.3 -> '0.3', 40 -> '40'."""
    if isinstance(v, float) and 0 < v < 1 and abs(v * 255 - round(v * 255)) < 1e-6 and v * 255 >= 1:
        return f"{round(v * 255)}/255" if round(v * 255) % 51 else f"{v:g}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class AttackConfig:
    """A threat model and the attack that probes it: ``cfg(model, x, y) -> x_adv``; ``str(cfg)`` is the threat model.

    kind: ``"pgd"`` (``steps`` steps of ``alpha`` from a random start, Madry et al. 2018),
    ``"fgsm"`` (one step of eps from x, Goodfellow et al. 2015) or ``"fgsm_rs"`` (a random start,
    then one step of alpha: "fast" adversarial training, Wong, Rice & Kolter 2020). alpha defaults:
    ``default_alpha(eps, steps)`` for pgd, eps for fgsm, 1.25 eps for fgsm_rs (Wong et al. 2020).
    eps and alpha are in pixel units; eps = 0 returns x unchanged. ``generator`` seeds the random
    starts (it is not part of the threat model: not compared, not printed).
    """

    eps: float
    steps: int = 10
    alpha: float | None = None
    norm: str = "linf"
    restarts: int = 1
    random_start: bool = True
    kind: str = "pgd"
    targeted: bool = False
    generator: torch.Generator | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        check_nonnegative(self.eps, "eps")
        check_norm(self.norm)
        check_positive_int(self.restarts, "restarts")
        if self.kind != "pgd":
            object.__setattr__(self, "steps", 1)
            object.__setattr__(self, "random_start", self.kind == "fgsm_rs")
        check_positive_int(self.steps, "steps")
        if self.alpha is None:
            alpha = (self.eps if self.kind == "fgsm" else 1.25 * self.eps if self.kind == "fgsm_rs"
                     else default_alpha(self.eps, self.steps))
            object.__setattr__(self, "alpha", alpha)
        check_nonnegative(self.alpha, "alpha")

    @classmethod
    def fgsm(cls, eps: float, norm: str = "linf") -> "AttackConfig":
        """FGSM (Goodfellow et al. 2015): one step of length eps from x."""
        return cls(eps, kind="fgsm", norm=norm)

    def replace(self, **changes) -> "AttackConfig":
        """A copy with some fields changed; alpha is recomputed from its default unless given."""
        if "alpha" not in changes and ("eps" in changes or "steps" in changes):
            changes["alpha"] = None
        return replace(self, **changes)

    def __call__(self, model, x, y):
        if self.eps == 0:  # no attack; the arguments are still checked (the label range needs the logits)
            y = _check(model, x, y, self.eps, self.norm)
            with torch.no_grad(), eval_mode(model):
                check_label_range(y, model(x).shape[1])
            return x
        return self.run(model, x, y)

    def run(self, model, x, y, loss_fn=_cross_entropy, trace: list | None = None):
        """The attack on ``loss_fn`` (cross-entropy by default; ``margin_loss``); ``trace`` as in ``pgd``."""
        if self.kind == "fgsm" and self.alpha == self.eps and trace is None:
            return fgsm(model, x, y, self.eps, self.norm, targeted=self.targeted, loss_fn=loss_fn)
        return pgd(model, x, y, self.eps, self.alpha, self.steps, self.norm, random_start=self.random_start,
                   restarts=self.restarts, targeted=self.targeted, loss_fn=loss_fn, generator=self.generator,
                   trace=trace)

    @property
    def label(self) -> str:
        """The attack's name as printed: ``"PGD"``, ``"FGSM"`` or ``"FGSM-RS"``."""
        return _LABELS[self.kind]

    def __str__(self):
        parts = [self.label + (" targeted" if self.targeted else ""), self.norm, f"eps={format_number(self.eps)}"]
        if self.kind != "fgsm" or self.alpha != self.eps:
            parts.append(f"alpha={format_number(self.alpha)}")
        if self.kind == "pgd":
            parts += [f"steps={self.steps}", f"restarts={self.restarts}"] + ([] if self.random_start else ["start=x"])
        return " ".join(parts)


@dataclass(frozen=True)
class MarginLoss:
    """An ``AttackConfig`` run on the margin (CW) loss instead of cross-entropy (Carlini & Wagner 2017):
    ``MarginLoss(cfg)(model, x, y) -> x_adv``; ``str()`` is ``str(cfg)`` with ``loss=cw``. The threat model
    (norm, eps) and the optimizer (alpha, steps, restarts, start) are ``cfg``'s; only the loss differs,
    so CE and CW compare on equal budgets (notebook 03, targeted attacks)."""

    attack: AttackConfig

    def __call__(self, model, x, y):
        if self.attack.eps == 0:
            return self.attack(model, x, y)
        return self.attack.run(model, x, y, loss_fn=margin_loss)

    def __str__(self):
        return f"{self.attack} loss=cw"


@dataclass(frozen=True)
class WorstOf:
    """A union of threat models: ``WorstOf((linf_cfg, l2_cfg))(model, x, y)`` runs every attack and keeps,
    per example, the output that fools the model, else the one with the highest loss (as ``pgd`` picks
    among its restarts). Training on it is the "max" strategy of Tramer & Boneh (2019) and Maini,
    Wong & Kolter (2020, MAX): the inner maximization over the union of the balls. Notebook 04.

    attacks: untargeted ``AttackConfig`` values (any norms and radii). x: (B, C, H, W) in [0, 1].
    """

    attacks: tuple

    def __post_init__(self):
        attacks = tuple(self.attacks)
        if not attacks or not all(isinstance(a, AttackConfig) and not a.targeted for a in attacks):
            raise ValueError(f"WorstOf needs one or more untargeted AttackConfig values, got {self.attacks!r}")
        object.__setattr__(self, "attacks", attacks)

    def __call__(self, model, x, y):
        with eval_mode(model):
            best = x.detach().clone()
            best_score = torch.full((x.shape[0],), -float("inf"), device=x.device)
            for attack in self.attacks:
                x_adv = attack(model, x, y)
                with torch.no_grad():
                    score = _score(model(x_adv), y)
                better = score > best_score
                best[better] = x_adv[better]
                best_score = torch.where(better, score, best_score)
        return best.detach()

    def __str__(self):
        return "worst of (" + "; ".join(str(a) for a in self.attacks) + ")"


def affine(x: torch.Tensor, angle, dx, dy) -> torch.Tensor:
    """Rotate each image about its centre by ``angle`` degrees (counter-clockwise as displayed), then
    shift it ``dx`` pixels right and ``dy`` pixels down; bilinear, zeros (black) outside.

    x: (B, C, H, W) in [0, 1]; angle, dx, dy: numbers or (B,) tensors. Integer shifts of an unrotated
    image are exact. Engstrom et al. (2019) attack with these transformations (notebooks 01, 04).
    """
    b, _, h, w = x.shape
    def per_example(v):
        return torch.as_tensor(v, dtype=x.dtype, device=x.device).expand(b)
    a = torch.deg2rad(per_example(angle))
    cos, sin = torch.cos(a), torch.sin(a)
    # affine_grid maps output coordinates (x right, y down, in [-1, 1]) to input ones
    theta = torch.stack([torch.stack([cos, -sin, -2 * per_example(dx) / w], 1),
                         torch.stack([sin, cos, -2 * per_example(dy) / h], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


@dataclass(frozen=True)
class SpatialGrid:
    """The rotation + translation threat model of Engstrom, Tran, Tsipras, Schmidt & Madry (2019), attacked
    by exhaustive grid search: ``SpatialGrid()(model, x, y) -> x_adv``; ``str()`` is the threat model.

    Rotations within +-``max_angle`` degrees (``angles`` evenly spaced values), shifts within
    +-``max_shift`` pixels per axis (``shifts`` values per axis). Per example the attack keeps the
    grid point that fools the model, else the one with the highest loss; the identity (0, 0, 0) is
    tried first and replaced only by a strictly better point, so a model indifferent to the
    transformations gets its input back. ``last_params`` is not kept (frozen value): use ``search``.
    MNIST defaults: +-30 degrees and +-3 pixels (Engstrom et al.'s MNIST ranges). x in [0, 1].
    """

    max_angle: float = 30.0
    max_shift: int = 3
    angles: int = 31
    shifts: int = 7

    def __post_init__(self):
        check_nonnegative(self.max_angle, "max_angle")
        check_nonnegative(self.max_shift, "max_shift")
        check_positive_int(self.angles, "angles")
        check_positive_int(self.shifts, "shifts")

    def grid(self) -> list[tuple[float, float, float]]:
        """The (angle, dx, dy) points, identity first."""
        angles = torch.linspace(-self.max_angle, self.max_angle, self.angles).tolist() if self.angles > 1 else [0.0]
        shifts = torch.linspace(-self.max_shift, self.max_shift, self.shifts).tolist() if self.shifts > 1 else [0.0]
        points = [(a, dx, dy) for a in angles for dx in shifts for dy in shifts]
        return [(0.0, 0.0, 0.0)] + [p for p in points if p != (0.0, 0.0, 0.0)]

    def search(self, model, x, y):
        """``(x_adv, params)``: the worst grid point per example; params (B, 3) = (angle, dx, dy)."""
        check_images(x)
        y = check_labels(y, x)
        points = self.grid()
        with eval_mode(model), torch.no_grad():
            best, params = x.detach().clone(), torch.zeros(x.shape[0], 3, device=x.device)
            best_score = torch.full((x.shape[0],), -float("inf"), device=x.device)
            for i, (a, dx, dy) in enumerate(points):
                x_t = x if i == 0 else affine(x, a, dx, dy)
                logits = model(x_t)
                if i == 0:
                    check_label_range(y, logits.shape[1])
                score = _score(logits, y)
                better = score > best_score
                best[better] = x_t[better]
                params[better] = torch.tensor([a, dx, dy], device=x.device, dtype=params.dtype)
                best_score = torch.where(better, score, best_score)
        return best, params

    def __call__(self, model, x, y):
        return self.search(model, x, y)[0]

    def __str__(self):
        n = len(self.grid())
        return (f"rotation+translation grid |angle|<={format_number(float(self.max_angle))} deg ({self.angles} values) "
                f"|shift|<={self.max_shift} px ({self.shifts} per axis), worst of {n}")
