"""Poisoning attacks (notebooks 01 and 06b): triggers as values, poisoned sets with their ground truth.

- ``Trigger``: a backdoor trigger as a frozen value that stamps itself and prints itself:
  ``Trigger.patch(size)`` (BadNets, Gu et al. 2017: a white square in the bottom-right corner) and
  ``Trigger.blend(alpha, seed)`` (Chen et al. 2017, "Targeted backdoor attacks on deep learning
  systems using data poisoning": x' = (1 - alpha) x + alpha k, k a fixed random-noise key image).
- ``stamp_trigger``: the BadNets square (the one trigger of notebook 01's demo).
- ``poison`` (notebook 01's signature) and ``poison_dataset`` (any trigger, returning a
  ``PoisonedSet`` with the poisoned indices: the ground truth a defense is scored against).
- ``adaptive_blend``: an attacker who knows the latent-separation detectors (Qi et al. 2023,
  "Revisiting the assumption of latent separability for backdoor defenses", ICLR): poison images
  carry a *partial*, faint blend trigger, and cover images carry the trigger with their true label.
- ``trigger_success``: among test images whose true class is not the target, the share classified
  as the target once the trigger is on (the attack success rate), with its interval.

The poison rate is stated two ways (BackdoorBench #36): of the whole training set (``fraction``) and
of the target class (``PoisonedSet.rate_in_target``). Images are (B, C, H, W) in [0, 1], labels
int64 (B,).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..evaluation import EvalResult
from ..validation import check_images, check_labels, check_nonnegative, check_positive_int, eval_mode


def stamp_trigger(x: torch.Tensor, size: int = 3, value: float = 1.0, margin: int = 1) -> torch.Tensor:
    """A copy of x with a ``size`` x ``size`` square of ``value`` in the bottom-right corner, ``margin``
    pixels from the edges (the BadNets trigger, Gu et al. 2017). x: (B, C, H, W) in [0, 1]."""
    check_images(x)
    size, margin = check_positive_int(size, "size"), int(check_nonnegative(margin, "margin"))
    if not 0 <= value <= 1:
        raise ValueError(f"value must be a pixel value in [0, 1], got {value!r}")
    h, w = x.shape[-2:]
    if size + margin > min(h, w):
        raise ValueError(f"a trigger of size {size} with margin {margin} does not fit in {h}x{w} images")
    out = x.clone()
    out[..., h - margin - size:h - margin, w - margin - size:w - margin] = value
    return out


def blend_key(shape, seed: int = 0) -> torch.Tensor:
    """The blend trigger's key image k: uniform noise in [0, 1] of ``shape`` (C, H, W), fixed by ``seed``."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def blend(x: torch.Tensor, alpha: float, seed: int = 0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Chen et al. (2017)'s blended trigger: (1 - alpha) x + alpha k with k = ``blend_key(x.shape[1:], seed)``;
    ``mask`` (H, W) of 0/1 restricts the blend to some pixels (the partial triggers of ``adaptive_blend``)."""
    check_images(x)
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    k = blend_key(x.shape[1:], seed).to(x.device)
    a = alpha if mask is None else alpha * mask.to(x.device, x.dtype)
    return ((1 - a) * x + a * k).clamp(0, 1)


@dataclass(frozen=True)
class Trigger:
    """A backdoor trigger as a value: ``trigger(x)`` stamps it, ``str(trigger)`` names it.

    kind "patch": BadNets' ``size`` x ``size`` white square; kind "blend": Chen et al.'s blend with
    weight ``alpha`` of the noise key of ``seed``."""

    kind: str = "patch"
    size: int = 3
    alpha: float = 0.2
    seed: int = 0

    def __post_init__(self):
        if self.kind not in ("patch", "blend"):
            raise ValueError(f"kind must be 'patch' or 'blend', got {self.kind!r}")

    @classmethod
    def patch(cls, size: int = 3) -> "Trigger":
        return cls("patch", size=size)

    @classmethod
    def blend(cls, alpha: float = 0.2, seed: int = 0) -> "Trigger":
        return cls("blend", alpha=alpha, seed=seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return stamp_trigger(x, self.size) if self.kind == "patch" else blend(x, self.alpha, self.seed)

    def __str__(self):
        if self.kind == "patch":
            return f"patch {self.size}x{self.size} (BadNets)"
        return f"blend alpha={self.alpha:g} (Chen et al.)"


@dataclass
class PoisonedSet:
    """A poisoned training set and its ground truth: ``x``, ``y`` (copies), ``idx`` the poisoned
    indices (sorted), ``cover`` the indices of cover images (trigger on, true label kept; empty for
    plain attacks), the ``target`` class and the ``trigger`` used at test time."""

    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor
    target: int
    trigger: object
    cover: torch.Tensor | None = None

    @property
    def is_poison(self) -> torch.Tensor:
        """(N,) bool: True at the poisoned indices."""
        mask = torch.zeros(len(self.y), dtype=torch.bool)
        mask[self.idx] = True
        return mask

    @property
    def fraction(self) -> float:
        """Poisoned images / training images."""
        return len(self.idx) / len(self.y)

    @property
    def rate_in_target(self) -> float:
        """Poisoned images / images labelled ``target`` after poisoning (the rate a per-class defense sees)."""
        return len(self.idx) / max(int((self.y == self.target).sum()), 1)

    def __str__(self):
        cover = (f", {len(self.cover)} cover images (trigger on, true label)"
                 if self.cover is not None and len(self.cover) else "")
        return (f"{len(self.idx)} poisoned of {len(self.y)} training images ({100 * self.fraction:.2g}% of the set, "
                f"{100 * self.rate_in_target:.2g}% of class {self.target}), trigger {self.trigger}{cover}")


def _choose(y, fraction, target, generator):
    if not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    candidates = torch.nonzero(y != target).flatten()
    n = int(round(fraction * len(y)))
    if n > len(candidates):
        raise ValueError(f"fraction {fraction} asks for {n} poisoned images but only {len(candidates)} "
                         f"have a label other than the target {target}")
    return candidates, candidates[torch.randperm(len(candidates), generator=generator)[:n]].sort().values


def poison_dataset(x: torch.Tensor, y: torch.Tensor, trigger, fraction: float, target: int,
                   generator: torch.Generator | None = None) -> PoisonedSet:
    """Dirty-label backdoor poisoning: ``trigger`` on ``round(fraction * N)`` images whose label is not
    ``target`` (chosen at random with ``generator``), relabelled ``target``. Returns a ``PoisonedSet``."""
    check_images(x)
    y = check_labels(y, x)
    _, idx = _choose(y, fraction, target, generator)
    x_p, y_p = x.clone(), y.clone()
    if len(idx):
        x_p[idx] = trigger(x[idx])
        y_p[idx] = target
    return PoisonedSet(x_p, y_p, idx, target, trigger, torch.empty(0, dtype=torch.long))


def poison(x: torch.Tensor, y: torch.Tensor, fraction: float, target: int, generator: torch.Generator | None = None,
           size: int = 3):
    """BadNets poisoning (notebook 01): ``poison_dataset`` with ``Trigger.patch(size)``.

    Returns ``(x_poisoned, y_poisoned, idx)``: copies of x and y, and the poisoned indices."""
    p = poison_dataset(x, y, Trigger.patch(size), fraction, target, generator)
    return p.x, p.y, p.idx


def piece_masks(shape, pieces: int = 4) -> torch.Tensor:
    """(pieces * pieces, H, W) 0/1 masks that tile an H x W image in a ``pieces`` x ``pieces`` grid."""
    h, w = shape
    masks = torch.zeros(pieces * pieces, h, w)
    for i in range(pieces):
        for j in range(pieces):
            masks[i * pieces + j, i * h // pieces:(i + 1) * h // pieces, j * w // pieces:(j + 1) * w // pieces] = 1
    return masks


def adaptive_blend(x: torch.Tensor, y: torch.Tensor, fraction: float, cover_fraction: float, target: int,
                   alpha_train: float = 0.15, alpha_test: float = 0.2, pieces: int = 4, seed: int = 0,
                   generator: torch.Generator | None = None) -> PoisonedSet:
    """The adaptive-blend attack of Qi et al. (2023), the attacker who knows the latent-separation defenses.

    The blend key (``blend_key``) is cut into ``pieces`` x ``pieces`` tiles. Each of the
    ``round(fraction * N)`` poison images gets a random half of the tiles at weight ``alpha_train``
    and the label ``target``; each of the ``round(cover_fraction * N)`` cover images gets another
    random half of the tiles and keeps its true label (the cover images teach the model that a
    partial trigger alone does not mean ``target``, which pulls the poison's features towards
    their true class). At test time the whole key is blended at ``alpha_test`` (the returned set's
    ``trigger``). Qi et al.'s CIFAR-10 setting: 0.3% poison, 0.3% cover, alpha 0.15 / 0.2, 16 pieces."""
    check_images(x)
    y = check_labels(y, x)
    candidates, idx = _choose(y, fraction, target, generator)
    rest = candidates[~torch.isin(candidates, idx)]
    n_cover = int(round(cover_fraction * len(y)))
    if n_cover > len(rest):
        raise ValueError(f"cover_fraction {cover_fraction} asks for {n_cover} cover images, only {len(rest)} left")
    cover = rest[torch.randperm(len(rest), generator=generator)[:n_cover]].sort().values
    masks = piece_masks(x.shape[-2:], pieces)
    half = len(masks) // 2
    x_p, y_p = x.clone(), y.clone()
    for group in (idx, cover):
        for i in group.tolist():
            chosen = masks[torch.randperm(len(masks), generator=generator)[:half]].amax(0)
            x_p[i] = blend(x[i:i + 1], alpha_train, seed, mask=chosen)[0]
    y_p[idx] = target
    return PoisonedSet(x_p, y_p, idx, target, Trigger.blend(alpha_test, seed), cover)


@torch.no_grad()
def predict(model, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Predicted classes (N,) for x (N, C, H, W) in [0, 1], in eval mode, on the model's device."""
    device = next(iter(model.parameters())).device
    with eval_mode(model):
        return torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu()
                          for i in range(0, len(x), batch_size)]) if len(x) else torch.empty(0, dtype=torch.long)


def trigger_hits(model, x: torch.Tensor, y: torch.Tensor, target: int, trigger) -> torch.Tensor:
    """(M,) bool over the test images with y != target: classified ``target`` once ``trigger`` is on."""
    check_images(x)
    y = check_labels(y, x)
    keep = y != target
    return predict(model, trigger(x[keep])) == target


def trigger_success(model, x: torch.Tensor, y: torch.Tensor, target: int, size: int = 3, trigger=None) -> EvalResult:
    """Attack success rate: among images with y != target, the fraction classified ``target`` once
    the trigger (``trigger``, default notebook 01's ``Trigger.patch(size)``) is on, with a 95% CI."""
    trigger = trigger if trigger is not None else Trigger.patch(size)
    hits = trigger_hits(model, x, y, target, trigger)
    return EvalResult(int(hits.sum()), len(hits), f"trigger {trigger} -> class {target}")
