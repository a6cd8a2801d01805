"""Interval bound propagation (IBP) and IBP training (Gowal et al. 2018; notebook 08).

For an input box {x' : l <= x' <= u} (the L-infinity ball of radius eps around x, intersected with
[0, 1]), ``interval_bounds`` pushes the box through a ``nn.Sequential`` layer by layer, in centre
/ radius form mu = (u + l) / 2, r = (u - l) / 2:

- Linear / Conv2d (W, b):  mu' = W mu + b,  r' = |W| r
- ReLU (monotone):         l' = max(l, 0),  u' = max(u, 0)
- Normalize ((x - m) / s, s > 0) and Flatten: applied to l and u.

The result contains f(x') for every x' in the box (soundness; tests check it with random points
and PGD). ``margin_lower_bounds`` gives the tighter bounds of z_y - z_j of Gowal et al. (2018),
with the last Linear layer folded into the specification ("elision"). A point is *verified* when
every margin bound is > 0. ``ibp_loss`` is their training loss
kappa * CE(z, y) + (1 - kappa) * CE(z_hat, y), z_hat the worst-case logits, and ``ibp_schedule``
ramps eps from 0 and kappa from 1 down to ``kappa_end`` after a warm-up. ``ibp_fit`` trains.

Supported layers: Linear, Conv2d, ReLU, Flatten, ``models.Normalize``; anything else raises a
ValueError naming the layer. eps: a float or a tensor broadcastable to x (per-feature radii).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import Normalize
from ..training import fit
from ..validation import check_images, check_label_range, check_labels, check_positive_int

SUPPORTED = (nn.Linear, nn.Conv2d, nn.ReLU, nn.Flatten, Normalize)


def supported_layers(model, what: str = "interval bounds") -> list:
    """The layers of ``model`` if it is an ``nn.Sequential`` of ``SUPPORTED`` layers, else a ValueError
    that names the first unsupported layer. ``what`` names the method in the message (IBP, CROWN, ...)."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"{what} need an nn.Sequential of {', '.join(t.__name__ for t in SUPPORTED)}; "
                         f"got {type(model).__name__}")
    layers = list(model)
    for i, layer in enumerate(layers):
        if not isinstance(layer, SUPPORTED):
            raise ValueError(f"{what} do not support layer {i} of type {type(layer).__name__} ({layer}); "
                             f"supported: {', '.join(t.__name__ for t in SUPPORTED)}")
    return layers


def input_box(x: torch.Tensor, eps) -> tuple[torch.Tensor, torch.Tensor]:
    """The box [x - eps, x + eps] intersected with [0, 1]: (lower, upper), each shaped like x."""
    check_images(x)
    eps = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if (eps < 0).any():
        raise ValueError("eps must be >= 0")
    return (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)


def layer_bounds(layer: nn.Module, lower: torch.Tensor, upper: torch.Tensor):
    """Bounds of layer(x') for x' in [lower, upper] (one supported layer)."""
    if isinstance(layer, (nn.Linear, nn.Conv2d)):
        mu, r = (upper + lower) / 2, (upper - lower) / 2
        if isinstance(layer, nn.Linear):
            mu, r = layer(mu), F.linear(r, layer.weight.abs())
        else:
            mu = layer(mu)
            r = F.conv2d(r, layer.weight.abs(), None, layer.stride, layer.padding, layer.dilation, layer.groups)
        return mu - r, mu + r
    if isinstance(layer, (nn.ReLU, nn.Flatten, Normalize)):  # monotone increasing, elementwise or reshape
        return layer(lower), layer(upper)
    supported_layers(nn.Sequential(layer))  # raises the error naming the type
    raise AssertionError


def interval_bounds(model: nn.Sequential, x: torch.Tensor, eps) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds (B, K) on the logits of ``model`` over the box of radius eps around x.

    model: nn.Sequential of Linear, Conv2d, ReLU, Flatten, Normalize. x: (B, C, H, W) or (B, D)
    in [0, 1]. eps: L-infinity radius in input units (float, or tensor broadcastable to x).
    """
    layers = supported_layers(model)
    lower, upper = input_box(x, eps)
    for layer in layers:
        lower, upper = layer_bounds(layer, lower, upper)
    return lower, upper


def margin_lower_bounds(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps) -> torch.Tensor:
    """Lower bounds (B, K) of z_y - z_j over the box, with the last Linear layer elided (Gowal et al.).

    Column y is 0. The point is verified when every other column is > 0. For the last layer
    z = W h + b and c = e_y - e_j: c^T z >= c^T (W mu + b) - |c^T W| r, tighter than l_y - u_j.
    y: (B,) class indices in [0, K).
    """
    layers = supported_layers(model)
    y = check_labels(y, x)
    if not isinstance(layers[-1], nn.Linear):
        lower, upper = interval_bounds(model, x, eps)
        check_label_range(y, upper.shape[1])
        margin = lower.gather(1, y[:, None]) - upper
        return margin.scatter(1, y[:, None], 0.0)
    lower, upper = input_box(x, eps)
    for layer in layers[:-1]:
        lower, upper = layer_bounds(layer, lower, upper)
    last = layers[-1]
    check_label_range(y, last.out_features)
    mu, r = (upper + lower) / 2, (upper - lower) / 2  # (B, H)
    w_diff = last.weight[y].unsqueeze(1) - last.weight.unsqueeze(0)  # (B, K, H): rows w_y - w_j
    b_diff = (last.bias[y].unsqueeze(1) - last.bias.unsqueeze(0)) if last.bias is not None else 0.0
    margin = torch.einsum("bkh,bh->bk", w_diff, mu) + b_diff - torch.einsum("bkh,bh->bk", w_diff.abs(), r)
    return margin.scatter(1, y[:, None], 0.0)


@torch.no_grad()
def verified(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps, elide: bool = True) -> torch.Tensor:
    """(B,) bool: the label y is provably the prediction everywhere in the eps-box (IBP)."""
    y = check_labels(y, x)
    if elide:
        m = margin_lower_bounds(model, x, y, eps)
    else:
        lower, upper = interval_bounds(model, x, eps)
        check_label_range(y, lower.shape[1])
        m = (lower.gather(1, y[:, None]) - upper).scatter(1, y[:, None], 1.0)
    return (m.scatter(1, y[:, None], 1.0) > 0).all(1)


def verified_accuracy(model, x, y, eps, batch_size: int = 500, elide: bool = True, verify=None) -> tuple[int, int]:
    """(number verified, number of examples) over x (N, ...) in batches of batch_size >= 1.

    verify(model, x, y, eps) -> (B,) bool is the check (default: ``verified`` with ``elide``);
    ``relaxation.verified_accuracy_by`` passes CROWN's, the LP's or the MILP's."""
    batch_size = check_positive_int(batch_size, "batch_size")
    verify = verify or (lambda m, xb, yb, e: verified(m, xb, yb, e, elide))
    dev = next(model.parameters()).device
    count = 0
    for i in range(0, len(x), batch_size):
        count += int(verify(model, x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev), eps).sum())
    return count, len(x)


def ibp_loss(model, x, y, eps, kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gowal et al. (2018): kappa * CE(z, y) + (1 - kappa) * CE(z_hat, y); returns (loss, clean logits).

    z_hat = -margin_lower_bounds (worst-case logits relative to z_y). kappa = 1: natural training.
    """
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    if kappa < 1 and float(torch.as_tensor(eps).max()) > 0:
        worst = -margin_lower_bounds(model, x, y, eps)
        loss = kappa * loss + (1 - kappa) * F.cross_entropy(worst, y)
    return loss, logits


def ibp_schedule(step: int, total_steps: int, eps: float, warmup: float = 0.05, ramp: float = 0.5,
                 kappa_end: float = 0.5) -> tuple[float, float]:
    """(eps_t, kappa_t) at a training step: natural training for the first ``warmup`` fraction,
    then eps rises linearly 0 -> eps and kappa 1 -> kappa_end over the next ``ramp`` fraction."""
    w, r = warmup * total_steps, max(ramp * total_steps, 1)
    t = min(max((step - w) / r, 0.0), 1.0)
    return eps * t, 1.0 - t * (1.0 - kappa_end)


def ibp_fit(model, loader, epochs: int, eps: float, lr: float = 1e-3, warmup: float = 0.05, ramp: float = 0.5,
            kappa_end: float = 0.5, progress: bool = True):
    """Train ``model`` with ``ibp_loss`` and ``ibp_schedule`` (Adam, LR x0.1 for the last 20% of steps).

    The course's training loop (``training.fit``) with ``ibp_loss`` as its loss hook. eps: float or
    per-feature tensor (its largest entry is reported). Returns a list of per-epoch dicts: loss,
    clean accuracy, final eps_t and kappa_t.
    """
    total = epochs * len(loader)

    def loss_fn(m, x, y, t):
        return ibp_loss(m, x, y, *ibp_schedule(round(t * total), total, eps, warmup, ramp, kappa_end))

    history = fit(model, loader, epochs, lr=lr, optimizer="adam", weight_decay=0.0, schedule="piecewise",
                  loss_fn=loss_fn, progress=progress, desc="IBP epoch")
    for e, h in enumerate(history):
        eps_t, kappa_t = ibp_schedule((e + 1) * len(loader) - 1, total, eps, warmup, ramp, kappa_end)
        h.update(eps=float(torch.as_tensor(eps_t).max()), kappa=kappa_t)
    return history
