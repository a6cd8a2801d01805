"""Plots for the lessons (matplotlib only). Every function returns its Figure or Axes.

- ``show_images(x)``: a grid of images, x: (B, C, H, W) in [0, 1], grey (C=1) or RGB (C=3).
- ``adversarial_grid(model, x, x_adv, classes)``: clean / adversarial / perturbation rows with
  predictions and confidences (notebooks 02 and 03).
- ``prediction_bars(probs, classes)``: softmax probabilities of one input as horizontal bars.
- ``plot_accuracy_vs_eps(results)``: accuracy versus radius with the confidence band, from
  ``course_utils.evaluation.epsilon_sweep`` (one DataFrame, or a dict label -> DataFrame).
- ``plot_lp_balls(eps)``: the L1, L2 and L-infinity balls of radius eps in 2-D (notebook 02).
- ``plot_decision_boundary_2d(predict_fn, xlim, ylim)``: class regions of a 2-D classifier with
  the data points (the toy problem of notebook 02).
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from .validation import check_images, check_nonnegative, check_positive_int, eval_mode

WRONG, RIGHT = "tab:red", "black"
NORM_COLORS = {"l1": "tab:blue", "l2": "tab:orange", "linf": "tab:green"}  # the same colour for a norm in every plot


def as_images(x, name="x") -> np.ndarray:
    """x: (B, C, H, W) tensor in [0, 1], C in {1, 3} -> numpy (B, H, W) or (B, H, W, 3)."""
    check_images(x, name)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have shape (B, C, H, W) with C = 1 (grey) or 3 (RGB), got {tuple(x.shape)}")
    x = x.detach().float().cpu()
    return x[:, 0].numpy() if x.shape[1] == 1 else x.permute(0, 2, 3, 1).numpy()


def _grid(nrows, ncols, scale):
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows * 1.15), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    return fig, axes


def imshow(ax, img):
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")


def show_images(x, titles=None, ncols: int = 8, scale: float = 1.5, title_colors=None):
    """Images in a grid of ``ncols`` columns; ``titles`` (and ``title_colors``): one per image.

    x: (B, C, H, W) tensor in [0, 1], C = 1 or 3. Returns the Figure.
    """
    imgs = as_images(x)
    ncols = check_positive_int(ncols, "ncols")
    if titles is not None and len(titles) != len(imgs):
        raise ValueError(f"titles must have one entry per image ({len(imgs)}), got {len(titles)}")
    n = len(imgs)
    cols = min(ncols, max(n, 1))
    fig, axes = _grid(max(1, math.ceil(n / cols)), cols, scale)
    for i, img in enumerate(imgs):
        ax = axes.flat[i]
        imshow(ax, img)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9, color=title_colors[i] if title_colors else RIGHT)
    fig.tight_layout()
    return fig


def model_device(model):
    """The device of the model's parameters; for a parameter-free callable, torch's default device."""
    try:
        return next(iter(model.parameters())).device
    except (StopIteration, AttributeError):
        return torch.empty(0).device


@torch.no_grad()
def predict_proba(model, x) -> torch.Tensor:
    """softmax(model(x)) on the model's device, in eval mode (restored after). Returns (B, K) on CPU."""
    device = model_device(model)
    if isinstance(model, torch.nn.Module):
        with eval_mode(model):
            return torch.softmax(model(x.to(device)), dim=1).cpu()
    return torch.softmax(model(x.to(device)), dim=1).cpu()


def perturbation_image(delta: torch.Tensor) -> torch.Tensor:
    """delta (B, C, H, W) -> (B, C, H, W) in [0, 1] for display: 0.5 is no change, per-image scaling."""
    scale = delta.detach().flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return (0.5 + 0.5 * delta.detach() / scale).clamp(0, 1)


def adversarial_grid(model, x, x_adv, classes, n: int = 8, y=None, scale: float = 1.5):
    """Three rows for the first ``n`` images: clean, adversarial, perturbation ``x_adv - x``.

    Titles give the predicted class and its softmax confidence; a title is red when the prediction
    is wrong: against ``y`` if given (clean and adversarial rows), else an adversarial prediction
    that differs from the clean one. The
    perturbation is rescaled to [0, 1] for display (grey = 0) and titled with its L-inf and L2
    norms. x, x_adv: (B, C, H, W) in [0, 1]. Returns the Figure.
    """
    as_images(x, "x")
    as_images(x_adv, "x_adv")
    if x.shape != x_adv.shape:
        raise ValueError(f"x_adv must have the shape of x {tuple(x.shape)}, got {tuple(x_adv.shape)}")
    n = min(check_positive_int(n, "n"), len(x))
    x, x_adv = x[:n].detach().cpu(), x_adv[:n].detach().cpu()
    p_clean, p_adv = predict_proba(model, x), predict_proba(model, x_adv)
    if p_clean.shape[1] != len(classes):
        raise ValueError(f"classes must have one name per model output ({p_clean.shape[1]}), got {len(classes)}")
    reference = p_clean.argmax(1) if y is None else torch.as_tensor(y)[:n].cpu()
    delta = x_adv - x
    fig, axes = _grid(3, n, scale)
    clean_imgs, adv_imgs, delta_imgs = as_images(x), as_images(x_adv), as_images(perturbation_image(delta))
    for i in range(n):
        for row, (imgs, probs) in enumerate(((clean_imgs, p_clean), (adv_imgs, p_adv))):
            conf, pred = probs[i].max(0)
            imshow(axes[row, i], imgs[i])
            wrong = (row == 1 or y is not None) and int(pred) != int(reference[i])
            axes[row, i].set_title(f"{classes[int(pred)]} ({100 * conf:.0f}%)", fontsize=9, color=WRONG if wrong else RIGHT)
        imshow(axes[2, i], delta_imgs[i])
        d = delta[i].flatten()
        axes[2, i].set_title(f"Linf {d.abs().max():.3f}\nL2 {d.norm():.2f}", fontsize=8)
    for row, label in enumerate(("clean", "adversarial", "perturbation")):
        axes[row, 0].text(-0.1, 0.5, label, transform=axes[row, 0].transAxes, rotation=90, ha="right", va="center")
    fig.tight_layout()
    return fig


def prediction_bars(probs, classes, true=None, ax=None, title=None):
    """Horizontal bars of class probabilities (K,); the top class is coloured, the true one labelled.

    probs: (K,) numbers in [0, 1] (softmax output); true: index of the true class or None.
    Returns the Axes.
    """
    p = torch.as_tensor(probs, dtype=torch.float64).detach().cpu().flatten().numpy()
    if len(p) != len(classes):
        raise ValueError(f"probs must have one entry per class ({len(classes)}), got {len(p)}")
    if len(p) == 0 or p.min() < -1e-6 or p.max() > 1 + 1e-6:
        raise ValueError("probs must be probabilities in [0, 1] (apply softmax to logits first)")
    if true is not None and not 0 <= int(true) < len(classes):
        raise ValueError(f"true must be a class index in [0, {len(classes)}), got {true!r}")
    ax = ax or plt.subplots(figsize=(3, 0.25 * len(p) + 0.8))[1]
    top = int(p.argmax())
    colors = ["tab:gray"] * len(p)
    colors[top] = "tab:green" if true is None or top == int(true) else WRONG
    ax.barh(np.arange(len(p)), p, color=colors)
    names = [f"{c} (true)" if true is not None and i == int(true) else str(c) for i, c in enumerate(classes)]
    ax.set_yticks(np.arange(len(p)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


_SWEEP_COLUMNS = ("eps", "accuracy", "ci_low", "ci_high")


def plot_accuracy_vs_eps(results, ax=None, title=None, xlabel: str = "eps"):
    """Accuracy versus eps, one line per result with its confidence interval shaded.

    results: a DataFrame with columns eps, accuracy, ci_low, ci_high (``epsilon_sweep``'s output)
    or a dict label -> such DataFrame. Returns the Axes.
    """
    import pandas as pd

    curves = {None: results} if isinstance(results, pd.DataFrame) else results
    if not isinstance(curves, dict) or not curves:
        raise ValueError("results must be a DataFrame from epsilon_sweep or a non-empty dict label -> DataFrame")
    for label, df in curves.items():
        missing = [c for c in _SWEEP_COLUMNS if not isinstance(df, pd.DataFrame) or c not in df.columns]
        if missing:
            raise ValueError(f"results[{label!r}] must be a DataFrame with columns {_SWEEP_COLUMNS}; missing {missing}")
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    for label, df in curves.items():
        df = df.sort_values("eps")
        (line,) = ax.plot(df["eps"], df["accuracy"], marker="o", ms=3, label=label)
        ax.fill_between(df["eps"], df["ci_low"], df["ci_high"], color=line.get_color(), alpha=0.2, lw=0)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (95% CI shaded)")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    if any(label is not None for label in curves):
        ax.legend()
    return ax


def _p_of(norm) -> float:
    if norm in ("linf", "inf", math.inf):
        return math.inf
    if isinstance(norm, str) and norm.startswith("l") and norm[1:].replace(".", "", 1).isdigit():
        norm = float(norm[1:])
    if isinstance(norm, (int, float)) and not isinstance(norm, bool) and norm >= 1:
        return float(norm)
    raise ValueError(f"norms must be 'l1', 'l2', 'linf' (or 'lp' with p >= 1), got {norm!r}")


def plot_lp_balls(eps: float = 1.0, norms=("l1", "l2", "linf"), ax=None):
    """The balls {d in R^2 : ||d||_p <= eps} for each norm, drawn as their boundaries. Returns the Axes."""
    eps = check_nonnegative(eps, "eps")
    ps = [(n, _p_of(n)) for n in norms]
    ax = ax or plt.subplots(figsize=(4, 4))[1]
    t = np.linspace(0, 2 * np.pi, 721)
    u = np.stack([np.cos(t), np.sin(t)])  # directions on the unit circle
    for name, p in ps:
        r = np.abs(u).max(0) if math.isinf(p) else (np.abs(u) ** p).sum(0) ** (1 / p)
        pts = eps * u / r  # scale each direction onto the sphere of radius eps
        ax.plot(pts[0], pts[1], label=f"{name} ball, eps={eps:g}", color=NORM_COLORS.get(name))
    ax.axhline(0, color="gray", lw=0.5)
    ax.axvline(0, color="gray", lw=0.5)
    ax.set_aspect("equal")
    lim = 1.25 * max(eps, 1e-12)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xlabel(r"$\delta_1$")
    ax.set_ylabel(r"$\delta_2$")
    ax.legend(fontsize=8, loc="upper right")
    return ax


def _check_lim(lim, name):
    if len(lim) != 2 or not float(lim[0]) < float(lim[1]):
        raise ValueError(f"{name} must be a pair (low, high) with low < high, got {lim!r}")
    return float(lim[0]), float(lim[1])


@torch.no_grad()
def plot_decision_boundary_2d(predict_fn, xlim, ylim, points=None, labels=None, ax=None, resolution: int = 200):
    """Class regions of a 2-D classifier over ``xlim`` x ``ylim``, with optional data points.

    predict_fn: maps a float tensor (N, 2) to scores (N, K) or class indices (N,) (a model works).
    points: (M, 2), labels: (M,) class indices to colour them. Returns the Axes.
    """
    (x0, x1), (y0, y1) = _check_lim(xlim, "xlim"), _check_lim(ylim, "ylim")
    resolution = check_positive_int(resolution, "resolution")
    gx, gy = torch.meshgrid(torch.linspace(x0, x1, resolution), torch.linspace(y0, y1, resolution), indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    if isinstance(predict_fn, torch.nn.Module):
        with eval_mode(predict_fn):
            out = predict_fn(grid.to(model_device(predict_fn))).cpu()
    else:
        out = torch.as_tensor(predict_fn(grid)).cpu()
    classes = out.argmax(1) if out.ndim == 2 else out.long()
    if classes.shape != (len(grid),):
        raise ValueError(f"predict_fn must return (N, K) scores or (N,) classes for N = {len(grid)} points, got {tuple(out.shape)}")
    k = max(int(classes.max()) + 1, 2 if labels is None else int(torch.as_tensor(labels).max()) + 1)
    cmap = plt.get_cmap("coolwarm" if k == 2 else "tab10")
    z = classes.view(resolution, resolution).numpy()
    levels = np.arange(k + 1) - 0.5
    ax = ax or plt.subplots(figsize=(4.5, 4))[1]
    ax.contourf(gx.numpy(), gy.numpy(), z, levels=levels, cmap=cmap, alpha=0.3)
    ax.contour(gx.numpy(), gy.numpy(), z, levels=levels[1:-1], colors="k", linewidths=1)
    if points is not None:
        pts = torch.as_tensor(points).detach().cpu().float()
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"points must have shape (M, 2), got {tuple(pts.shape)}")
        c = "k" if labels is None else torch.as_tensor(labels).cpu().numpy()
        if labels is not None and len(c) != len(pts):
            raise ValueError(f"labels must have one entry per point ({len(pts)}), got {len(c)}")
        ax.scatter(pts[:, 0], pts[:, 1], c=c, cmap=cmap, vmin=-0.5, vmax=k - 0.5, s=12, edgecolors="k", linewidths=0.4)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    return ax
