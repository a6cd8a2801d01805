"""Argument checks shared by attacks, evaluation and defenses.

Bad input raises ``ValueError`` naming the argument and what was expected, instead of a stack
trace from deep inside torch. ``eval_mode`` evaluates a model in eval mode and restores it.
"""
from __future__ import annotations

import contextlib
import math

import torch

NORMS = ("linf", "l2")


def check_images(x, name: str = "x") -> torch.Tensor:
    """x must be a float tensor (B, C, H, W) (or (B, D) for tabular models) with values in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor in [0, 1], got dtype {x.dtype}")
    if x.ndim not in (2, 4):
        raise ValueError(f"{name} must have shape (B, C, H, W) (or (B, D)), got {tuple(x.shape)}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"{name} must be pixels in [0, 1] (normalization is the model's first layer), "
            f"got values in [{x.min().item():.3g}, {x.max().item():.3g}]"
        )
    return x


def check_labels(y, x: torch.Tensor, name: str = "y") -> torch.Tensor:
    """y must be an integer tensor (B,) matching x's batch size."""
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{name} must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")
    return y.long()


def check_nonnegative(value, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_positive_int(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


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
