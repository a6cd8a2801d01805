"""Today's CROWN (before the windowed intermediate bounds of issue 33), kept verbatim as the reference that
``certify.preactivation_bounds`` must equal to float rounding (tests/test_relaxation.py). Not part of the package."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.certify.ibp import input_box, layer_bounds, supported_layers
from course_utils.certify.relaxation import affine_segments, relu_relaxation
from course_utils.models import Normalize
from course_utils.validation import check_images

ROW_BUDGET = 1 << 24


def _check_model(model):
    return supported_layers(model, "linear relaxations")


def _back_affine(segment, a: torch.Tensor, c: torch.Tensor):
    """Push the linear function a . z + c of a segment's output back to its input: (a W, c + a b).

    a: (B, m, *output shape), c: (B, m). Returns (a', c') with a' (B, m, *input shape)."""
    bsz, m = a.shape[:2]
    for layer, in_shape, out_shape in reversed(segment):
        a = a.reshape(bsz, m, *out_shape)
        if isinstance(layer, nn.Linear):
            if layer.bias is not None:
                c = c + a @ layer.bias.to(a)
            a = a @ layer.weight.to(a)
        elif isinstance(layer, nn.Conv2d):
            if layer.bias is not None:
                c = c + a.sum((-2, -1)) @ layer.bias.to(a)
            pad = [in_shape[i + 1] - ((out_shape[i + 1] - 1) * layer.stride[i] - 2 * layer.padding[i]
                                      + layer.dilation[i] * (layer.kernel_size[i] - 1) + 1) for i in range(2)]
            a = F.conv_transpose2d(a.reshape(bsz * m, *out_shape), layer.weight.to(a), None, layer.stride,
                                   layer.padding, pad, layer.groups, layer.dilation)  # the adjoint of the conv
        elif isinstance(layer, Normalize):  # (h - mean) / std
            view = (-1,) + (1,) * (len(in_shape) - 1)
            mean, std = layer.mean.to(a).reshape(view), layer.std.to(a).reshape(view)
            c = c - (a * (mean / std)).flatten(2).sum(-1)
            a = a / std
        a = a.reshape(bsz, m, *in_shape)  # Flatten: a reshape
    return a, c


def _backward_lower(segments, relax, a, c, x_lower, x_upper):
    """CROWN's lower bound of a . z_k + c over the box, z_k the output of the last of ``segments``.

    a: (B, m, *shape of z_k), c: (B, m); segments: the k + 1 segments up to z_k; relax: the k ReLU
    relaxations between them. The linear bound is pushed back segment by segment (positive
    coefficients take a ReLU's lower line, negative ones its upper line) down to x, where
    A x + c is minimised in closed form: A^+ x_l + A^- x_u + c. x_lower, x_upper: (B, n_0). Returns (B, m).
    """
    bsz, m = a.shape[:2]
    for i in reversed(range(len(segments))):
        a, c = _back_affine(segments[i], a, c)
        if i > 0:
            alpha, s, t = relax[i - 1]
            a = a.reshape(bsz, m, -1)
            a_pos, a_neg = a.clamp(min=0), a.clamp(max=0)  # A^+ takes the lower line, A^- the upper one
            c = c + (a_neg * t[:, None, :]).sum(-1)
            a = a_pos * alpha[:, None, :] + a_neg * s[:, None, :]
    a = a.reshape(bsz, m, -1)
    return (a.clamp(min=0) @ x_lower[..., None] + a.clamp(max=0) @ x_upper[..., None]).squeeze(-1) + c


def preactivation_bounds(model: nn.Sequential, x: torch.Tensor, eps):
    """(segments, relax, bounds, x_lower, x_upper): everything CROWN, the LP and the MILP share.

    segments: ``affine_segments``; bounds[i] = (l_i, u_i), each (B, n_i), bounds on z_i for every
    ReLU (i = 1 .. L-1), intersected with IBP; relax[i] = ``relu_relaxation(l_i, u_i)``; x_lower,
    x_upper: the box (B, n_0). A neuron that IBP already proves stable (l >= 0 or u <= 0) keeps its
    IBP bounds: it stays stable under CROWN n IBP and its relaxation is exact either way. Only the
    unstable ones get a CROWN backward pass (per example, padded to the batch's largest count). The
    first layer keeps its IBP bounds when it holds a single Linear or Conv2d (after Normalize /
    Flatten): interval arithmetic of one affine map over a box is exact per neuron, so CROWN could
    not tighten them.
    """
    layers = _check_model(model)
    check_images(x)
    xl, xu = input_box(x, eps)
    ibp_pre, lo, hi = [], xl, xu  # IBP pre-activation bounds at each ReLU, via ibp.layer_bounds
    for layer in layers:
        if isinstance(layer, nn.ReLU):
            ibp_pre.append((lo.flatten(1), hi.flatten(1)))
        lo, hi = layer_bounds(layer, lo, hi)
    segments = affine_segments(model, x)
    dtype = x.dtype  # CROWN runs in the model's precision (float32, as auto_LiRPA does); LP / MILP in float64
    xl, xu = xl.flatten(1).to(dtype), xu.flatten(1).to(dtype)
    relax, bounds = [], []
    first_exact = sum(isinstance(layer, (nn.Linear, nn.Conv2d)) for layer, _, _ in segments[0]) <= 1
    for k in range(len(segments) - 1):
        lower, upper = ibp_pre[k][0].to(dtype), ibp_pre[k][1].to(dtype)
        unstable = (lower < 0) & (upper > 0)
        if k == 0 and first_exact:  # one affine map of the box: IBP's bounds are already exact per neuron
            unstable = torch.zeros_like(unstable)
        m = int(unstable.sum(1).max()) if unstable.numel() else 0
        if m:
            order = unstable.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :m]  # (B, m) unstable first
            valid = torch.arange(m, device=x.device) < unstable.sum(1, keepdim=True)
            widest = max([xl.shape[1]] + [math.prod(shape) for seg in segments[:k + 1] for _, _, shape in seg])
            chunk = max(1, ROW_BUDGET // (2 * len(x) * widest))  # rows per backward pass: bounded memory
            new_l, new_u = [], []
            for start in range(0, m, chunk):
                idx, ok = order[:, start:start + chunk], valid[:, start:start + chunk]
                rows = torch.zeros(len(x), idx.shape[1], lower.shape[1], dtype=dtype, device=x.device)
                rows.scatter_(2, idx[..., None], ok[..., None].to(dtype))  # one-hot rows e_j, j unstable
                spec = torch.cat([rows, -rows], 1)  # +z_j and -z_j
                both = _backward_lower(segments[:k + 1], relax, spec, torch.zeros(spec.shape[:2], dtype=dtype, device=x.device), xl, xu)
                new_l.append(both[:, :idx.shape[1]])
                new_u.append(-both[:, idx.shape[1]:])
            old_l, old_u = lower.gather(1, order), upper.gather(1, order)
            lower = lower.scatter(1, order, torch.where(valid, torch.maximum(torch.cat(new_l, 1), old_l), old_l))
            upper = upper.scatter(1, order, torch.where(valid, torch.minimum(torch.cat(new_u, 1), old_u), old_u))
        bounds.append((lower, upper))
        relax.append(relu_relaxation(lower, upper))
    return segments, relax, bounds, xl, xu


def margin_lower_bounds(net, x, y, eps):
    """(intermediate bounds, (B, K) margin lower bounds z_y - z_j) by the previous CROWN; column y is 0."""
    segments, relax, bounds, xl, xu = preactivation_bounds(net, x, eps)
    with torch.no_grad():
        k = net(x[:1]).shape[1]
    eye = torch.eye(k, dtype=x.dtype, device=x.device)
    spec = eye[y][:, None, :] - eye[None, :, :]
    m = _backward_lower(segments, relax, spec, torch.zeros(spec.shape[:2], dtype=x.dtype, device=x.device), xl, xu)
    return bounds, m.scatter(1, y[:, None], 0.0)
