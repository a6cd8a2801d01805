"""Argument checks shared by attacks, evaluation and defenses.

Bad input raises ``ValueError`` naming the argument and what was expected, instead of a stack
trace from deep inside torch (or, worse, a silent wrong answer: a NaN pixel propagates through
every attack and certificate, and cross-entropy ignores the label -100). ``eval_mode`` evaluates a
model in eval mode and restores it.

Labels are checked in two steps: ``check_labels(y, x)`` (type and shape, before any work) and
``check_label_range(y, num_classes)`` (0 <= y < num_classes), which needs the model's number of
classes; callers that only learn it from the logits call it after their first forward pass.
"""
from __future__ import annotations

import contextlib
import math

import torch

NORMS = ("linf", "l2")


def check_images(x, name: str = "x") -> torch.Tensor:
    """x must be a float tensor (B, C, H, W) (or (B, D) for tabular models) with finite values in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor in [0, 1], got dtype {x.dtype}")
    if x.ndim not in (2, 4):
        raise ValueError(f"{name} must have shape (B, C, H, W) (or (B, D)), got {tuple(x.shape)}")
    if x.numel() and not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} must be finite pixels in [0, 1], got {bad} NaN or infinite value(s)")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"{name} must be pixels in [0, 1] (normalization is the model's first layer), "
            f"got values in [{x.min().item():.3g}, {x.max().item():.3g}]"
        )
    return x


def check_labels(y, x: torch.Tensor, name: str = "y", num_classes: int | None = None) -> torch.Tensor:
    """y must be an integer tensor (B,) matching x's batch size; returns it as int64.

    With ``num_classes`` the values are range-checked too (``check_label_range``); without it, the
    caller checks the range once it knows the number of classes (e.g. from the logits)."""
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{name} must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")
    if num_classes is not None:
        check_label_range(y, num_classes, name)
    return y.long()


def check_label_range(y: torch.Tensor, num_classes: int, name: str = "y") -> torch.Tensor:
    """Every class index in y (any shape, integer) must satisfy 0 <= y < num_classes; returns y.

    num_classes: the model's number of classes (``logits.shape[1]``). Catches y = 10 for a 10-class
    model (else a torch IndexError deep inside) and y = -100 (cross-entropy's ``ignore_index``: an
    attack or loss that silently does nothing)."""
    num_classes = check_positive_int(num_classes, "num_classes")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)]
        raise ValueError(f"{name} must hold class indices in [0, {num_classes - 1}] (num_classes={num_classes}), "
                         f"got {bad.numel()} out of range, e.g. {int(bad[0])}")
    return y


def check_nonnegative(value, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_positive(value, name: str) -> float:
    """A finite number > 0 (sigma, a radius, a scale): rejects 0, negatives, NaN and infinity."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_positive_int(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def check_probability(value, name: str) -> float:
    """A number strictly between 0 and 1 (a significance level alpha, a false-positive rate)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def check_fraction(value, name: str) -> float:
    """A number in [0, 1], ends included (an accuracy, a share of traffic)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_norm(norm) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


@contextlib.contextmanager
def eval_mode(model):
    """Run the body with ``model.eval()``; restore training mode afterwards if it was on.

    The course's one eval-mode helper. A model that is a plain callable (not an ``nn.Module``) is
    left alone."""
    if not isinstance(model, torch.nn.Module):
        yield model
        return
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
