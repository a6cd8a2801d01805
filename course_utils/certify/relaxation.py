"""Linear relaxations of ReLU networks: CROWN, the triangle LP and the exact MILP (convex relaxation lesson).

The network ``nn.Sequential`` of Linear / Conv2d / ReLU / Flatten / ``models.Normalize`` is read
as L affine maps with a ReLU between consecutive ones:

    h_0 = x (flattened, n_0),   z_i = W_i h_{i-1} + b_i,   h_i = relu(z_i)  (i < L),   logits = z_L.

CROWN keeps each map as its layers (``affine_segments``) and applies W^T with the layers'
adjoints (a convolution's as a product with its kernel and ``F.fold``), never forming a dense
matrix. The intermediate bounds of a layer are computed for all its unstable neurons at once, and
for a convolutional layer reached through convolutions only, on each neuron's receptive field (the
window of ``_back_affine``: auto_LiRPA's "patches" idea), so a pass costs (kernel size)^depth
rather than the whole map. The LP and the MILP need the dense
matrices (``affine_blocks``: consecutive affine layers composed exactly, Conv2d applied to the
identity basis, memory (neurons)^2): they are for the tiny networks of the course only.

- ``crown_bounds`` (Zhang et al. 2018, "Efficient Neural Network Robustness Certification with
  General Activation Functions"; DeepPoly, Singh et al. 2019, is the same bound for ReLU): each
  unstable ReLU (l < 0 < u) is bounded by two lines, the upper line h <= u / (u - l) (z - l) and the
  adaptive lower line h >= alpha z with alpha = 1 if u >= -l else 0 (the lower line of the two that
  leaves the smaller area between it and the upper line). A linear bound C z_k >= A h_{k-1} + c is
  pushed backwards through every layer (positive entries of A take the lower line, negative ones
  the upper line) down to the input, where A x + c is minimised in closed form over the box
  [x_l, x_u]: A^+ x_l + A^- x_u + c. The pre-activation bounds (l_k, u_k) of every ReLU are computed
  the same way, layer by layer, and intersected with the IBP bounds of ``ibp.layer_bounds`` (so
  they are never looser than IBP). ``crown_margin_lower_bounds`` starts the backward pass from the
  specification C = e_y - e_j, which is tighter than l_y - u_j.
- ``lp_margin_lower_bounds``: the triangle relaxation (Ehlers 2017; Wong & Kolter 2018),
  h >= 0, h >= z, h <= u / (u - l) (z - l), for every unstable ReLU, with the CROWN pre-activation
  bounds, minimised by one linear program per (example, j != y) (scipy's HiGHS).
- ``exact_margin_lower_bounds``: the exact minimum of z_y - z_j over the box by a mixed-integer
  program (Tjeng et al. 2019): a binary d per unstable ReLU, h >= 0, h >= z, h <= z - l (1 - d),
  h <= u d (big-M with the pre-activation bounds); scipy's ``milp`` (HiGHS). Tiny networks only.

Ordering (same inputs, same intermediate bounds): exact >= LP >= CROWN, because the triangle is the
LP relaxation of the MILP and contains the graph of relu, and CROWN's two lines contain the
triangle. CROWN is *not* always >= IBP elementwise (with alpha = 1 the lower line h >= z lets h go
below 0, where the IBP box does not); it is usually tighter on average.

Inputs x: (B, C, H, W) or (B, D) in [0, 1]; eps in pixel units (float or tensor broadcastable to
x); the box is the L-infinity ball of radius eps around x intersected with [0, 1]
(``ibp.input_box``). Results are float tensors (B, K) on x.device. CROWN is computed in x's dtype
(float32, as auto_LiRPA does: its rounding, about 1e-6 relative, could only matter for a margin
bound that close to 0; pass a float64 model and x for a rigorous check) and stays differentiable; the dense blocks of the LP and MILP are built in float64
(float32 on MPS) and solved on the CPU.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from torch import nn

from ..models import Normalize
from ..validation import check_images, check_label_range, check_labels
from .ibp import input_box, layer_bounds, supported_layers
from .ibp import margin_lower_bounds as ibp_margin_lower_bounds
from .ibp import verified as ibp_verified
from .ibp import verified_accuracy

METHODS = ("ibp", "crown", "alpha-crown", "lp", "exact", "bab")
ROW_BUDGET = 1 << 24  # elements of one backward-pass tensor in preactivation_bounds (64 MB in float32)


def _check_model(model) -> list[nn.Module]:
    layers = supported_layers(model, "linear relaxations")
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
            raise ValueError(f"layer {i} (Conv2d) has padding_mode={layer.padding_mode!r}; only 'zeros' is supported")
        if isinstance(layer, nn.Conv2d) and isinstance(layer.padding, str):
            raise ValueError(f"layer {i} (Conv2d) has padding={layer.padding!r}; give the padding as numbers")
    return layers


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.device.type == "mps" else torch.float64


def _affine(layer: nn.Module, h: torch.Tensor, bias: bool) -> torch.Tensor:
    """layer(h) for an affine layer, in h's dtype; bias=False gives its linear part only."""
    if isinstance(layer, nn.Linear):
        b = layer.bias.to(h) if bias and layer.bias is not None else None
        return F.linear(h, layer.weight.to(h), b)
    if isinstance(layer, nn.Conv2d):
        b = layer.bias.to(h) if bias and layer.bias is not None else None
        return F.conv2d(h, layer.weight.to(h), b, layer.stride, layer.padding, layer.dilation, layer.groups)
    if isinstance(layer, Normalize):
        return ((h - layer.mean.to(h)) if bias else h) / layer.std.to(h)
    return layer(h)  # Flatten


def affine_blocks(model: nn.Sequential, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The network as dense affine maps [(W_1, b_1), ..., (W_L, b_L)] with a ReLU between consecutive ones.

    W_i: (n_i, n_{i-1}), b_i: (n_i,), n_0 = x[0].numel(), in float64 (float32 on MPS) on x.device.
    Consecutive affine layers are composed; a ReLU at the start or end or two ReLUs in a row get an
    identity map between them. Memory: sum of n_i * n_{i-1} (Conv2d becomes a dense matrix).
    """
    layers = _check_model(model)
    dtype, shape = _work_dtype(x), tuple(x.shape[1:])
    n = int(np.prod(shape))
    w, b = torch.eye(n, dtype=dtype, device=x.device), torch.zeros(n, dtype=dtype, device=x.device)
    blocks = []
    for layer in layers:
        if isinstance(layer, nn.ReLU):
            blocks.append((w, b))
            w, b = torch.eye(len(b), dtype=dtype, device=x.device), torch.zeros_like(b)
            continue
        cols = _affine(layer, w.T.reshape(w.shape[1], *shape), bias=False)  # column k: A w_k
        b_out = _affine(layer, b.reshape(1, *shape), bias=True)
        shape = tuple(b_out.shape[1:])
        w, b = cols.reshape(w.shape[1], -1).T, b_out.reshape(-1)
    blocks.append((w, b))
    return blocks


def relu_relaxation(lower: torch.Tensor, upper: torch.Tensor):
    """CROWN's lines for h = relu(z), l <= z <= u (Zhang et al. 2018): alpha z <= h <= s z + t.

    lower, upper: (B, n) pre-activation bounds. Returns (alpha, s, t), each (B, n):
    inactive (u <= 0): alpha = s = t = 0; active (l >= 0): alpha = s = 1, t = 0; unstable:
    s = u / (u - l), t = -s l (the chord through (l, 0) and (u, u)), and the adaptive lower slope
    alpha = 1 if u >= -l else 0.
    """
    active, unstable = lower >= 0, (lower < 0) & (upper > 0)
    s_unstable = upper / (upper - lower).clamp_min(1e-12)
    s = torch.where(unstable, s_unstable, active.to(lower.dtype))
    t = torch.where(unstable, -s_unstable * lower, torch.zeros_like(lower))
    alpha = torch.where(unstable, (upper >= -lower).to(lower.dtype), active.to(lower.dtype))
    return alpha, s, t


def affine_segments(model: nn.Sequential, x: torch.Tensor) -> list[list[tuple[nn.Module, tuple, tuple]]]:
    """The network as L segments of affine layers with a ReLU between consecutive segments, for CROWN.

    Segment i is a list of (layer, input shape, output shape) (shapes without the batch dimension)
    whose composition is z_i = W_i h_{i-1} + b_i of ``affine_blocks``, kept as layers so that the
    backward pass applies W_i^T with the layers' own adjoints (``F.conv_transpose2d`` for Conv2d),
    never forming the dense matrix. An empty segment is the identity.
    """
    layers = _check_model(model)
    segments, current, shape = [], [], tuple(x.shape[1:])
    with torch.no_grad():
        h = torch.zeros(1, *shape, dtype=x.dtype, device=x.device)
        for layer in layers:
            if isinstance(layer, nn.ReLU):
                segments.append(current)
                current = []
                continue
            out = layer(h)
            current.append((layer, tuple(h.shape[1:]), tuple(out.shape[1:])))
            h = out
    segments.append(current)
    return segments


def _conv_adjoint(a: torch.Tensor, layer: nn.Conv2d, size, padding) -> torch.Tensor:
    """W^T a for a Conv2d (the adjoint of the convolution): a (N, C_out, h, w) -> (N, C_in, *size).

    size: the input's (H, W) without ``padding``, whose border the adjoint drops. As a matrix product
    with the kernel and ``F.fold`` (the sum of overlapping patches): on one CPU thread this is up to 5
    times faster than ``F.conv_transpose2d`` for few input channels and small maps; grouped
    convolutions use ``conv_transpose2d``.
    """
    if layer.groups != 1:
        pad = [size[i] + 2 * padding[i] - ((a.shape[2 + i] - 1) * layer.stride[i]
                                           + layer.dilation[i] * (layer.kernel_size[i] - 1) + 1) for i in range(2)]
        return F.conv_transpose2d(a, layer.weight.to(a), None, layer.stride, padding, pad, layer.groups, layer.dilation)
    n, c_out = a.shape[:2]
    cols = a.flatten(2).transpose(1, 2) @ layer.weight.to(a).reshape(c_out, -1)  # (N, h w, C_in kh kw)
    if cols.shape[1] == 1 and tuple(layer.dilation) == (1, 1) and tuple(padding) == (0, 0):
        return cols.reshape(n, -1, *layer.kernel_size)  # one output pixel: the kernel itself
    return F.fold(cols.transpose(1, 2), tuple(size), layer.kernel_size, layer.dilation, padding, layer.stride)


def _back_affine(segment, a: torch.Tensor, c: torch.Tensor, window=None):
    """Push the linear function a . z + c of a segment's output back to its input: (a W, c + a b, window).

    a: (B, m, *output shape), c: (B, m). Returns (a', c', window') with a' (B, m, *input shape).
    window = (r0, r1, c0, c1): a covers only rows [r0, r1) and columns [c0, c1) of a (C, H, W) output
    (a: (B, m, C, r1 - r0, c1 - c0)), the receptive field of the rows' neurons, and a' covers the
    window of the input that those outputs read (clipped to the map: padding contributes nothing).
    That is auto_LiRPA's "patches" idea in its simplest form: a convolution's intermediate bounds
    never touch the rest of the map. Windows pass through Conv2d and Normalize only.
    """
    bsz, m = a.shape[:2]
    for layer, in_shape, out_shape in reversed(segment):
        if window is not None:
            if isinstance(layer, nn.Conv2d):
                if layer.bias is not None:
                    c = c + a.sum((-2, -1)) @ layer.bias.to(a)
                r0, r1, c0, c1 = window
                size = [(n - 1) * layer.stride[i] + layer.dilation[i] * (layer.kernel_size[i] - 1) + 1
                        for i, n in enumerate((r1 - r0, c1 - c0))]
                full = _conv_adjoint(a.reshape(bsz * m, out_shape[0], r1 - r0, c1 - c0), layer, size, (0, 0))  # from row top, column left
                top, left = r0 * layer.stride[0] - layer.padding[0], c0 * layer.stride[1] - layer.padding[1]
                window = (max(top, 0), min(top + full.shape[-2], in_shape[1]), max(left, 0), min(left + full.shape[-1], in_shape[2]))
                a = full[..., window[0] - top:window[1] - top, window[2] - left:window[3] - left]
                a = a.reshape(bsz, m, in_shape[0], window[1] - window[0], window[3] - window[2])
            elif isinstance(layer, Normalize):
                mean, std = layer.mean.to(a).reshape(-1, 1, 1), layer.std.to(a).reshape(-1, 1, 1)
                c = c - (a * (mean / std)).flatten(2).sum(-1)
                a = a / std
            else:
                raise ValueError(f"a window cannot pass through {type(layer).__name__}")
            continue
        a = a.reshape(bsz, m, *out_shape)
        if isinstance(layer, nn.Linear):
            if layer.bias is not None:
                c = c + a @ layer.bias.to(a)
            a = a @ layer.weight.to(a)
        elif isinstance(layer, nn.Conv2d):
            if layer.bias is not None:
                c = c + a.sum((-2, -1)) @ layer.bias.to(a)
            a = _conv_adjoint(a.reshape(bsz * m, *out_shape), layer, in_shape[1:], layer.padding)
        elif isinstance(layer, Normalize):  # (h - mean) / std
            view = (-1,) + (1,) * (len(in_shape) - 1)
            mean, std = layer.mean.to(a).reshape(view), layer.std.to(a).reshape(view)
            c = c - (a * (mean / std)).flatten(2).sum(-1)
            a = a / std
        a = a.reshape(bsz, m, *in_shape)  # Flatten: a reshape
    return a, c, window


def _per_row(v: torch.Tensor, shape, window) -> torch.Tensor:
    """A ReLU's slope or offset, (B, n) or per specification row (B, m, n), as (B, 1 or m, n) or, with a
    window, (B, 1 or m, C, r1 - r0, c1 - c0) cut from the (C, H, W) map ``shape``."""
    v = v if v.ndim == 3 else v[:, None]
    if window is None:
        return v
    r0, r1, c0, c1 = window
    return v.reshape(*v.shape[:2], *shape)[..., r0:r1, c0:c1]


def _backward_lower(segments, relax, a, c, x_lower, x_upper, window=None):
    """CROWN's lower bound of a . z_k + c over the box, z_k the output of the last of ``segments``.

    a: (B, m, *shape of z_k), c: (B, m); segments: the k + 1 segments up to z_k; relax: the k ReLU
    relaxations (alpha, s, t) between them, each (B, n) or, for alpha, per row (B, m, n) (alpha-CROWN).
    The linear bound is pushed back segment by segment (positive coefficients take a ReLU's lower line,
    negative ones its upper line) down to x, where A x + c is minimised in closed form:
    A^+ x_l + A^- x_u + c. x_lower, x_upper: (B, n_0). window: a covers only that window of z_k (see
    ``_back_affine``; convolutional segments only). Returns (B, m).
    """
    bsz, m = a.shape[:2]
    for i in reversed(range(len(segments))):
        a, c, window = _back_affine(segments[i], a, c, window)
        if i > 0:
            shape = segments[i][0][1] if segments[i] else None
            alpha, s, t = (_per_row(v, shape, window) for v in relax[i - 1])
            a = a if window is not None else a.reshape(bsz, m, -1)
            a_pos, a_neg = a.clamp(min=0), a.clamp(max=0)  # A^+ takes the lower line, A^- the upper one
            c = c + (a_neg * t).flatten(2).sum(-1)
            a = a_pos * alpha + a_neg * s
    if window is not None:
        shape = segments[0][0][1]
        xl, xu = _per_row(x_lower, shape, window), _per_row(x_upper, shape, window)
        return (a.clamp(min=0) * xl + a.clamp(max=0) * xu).flatten(2).sum(-1) + c
    a = a.reshape(bsz, m, -1)
    return (a.clamp(min=0) @ x_lower[..., None] + a.clamp(max=0) @ x_upper[..., None]).squeeze(-1) + c


def _windowed(segments) -> bool:
    """True when every layer up to z_k is a Conv2d or Normalize (z_k a (C, H, W) map): its neurons'
    backward passes can run on their receptive fields (``_back_affine``'s window)."""
    return all(seg and all(isinstance(layer, (nn.Conv2d, Normalize)) for layer, _, _ in seg) for seg in segments) \
        and len(segments[-1][-1][2]) == 3


def _rows(unstable: torch.Tensor, dtype):
    """(order, valid, rows): the unstable neurons of each example first, (B, m); which of them are real
    (padding to the batch's largest count m), (B, m); and one-hot rows e_j (B, m, n), zero where not valid."""
    count = unstable.sum(1, keepdim=True)
    m = int(count.max())
    order = unstable.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :m]
    valid = torch.arange(m, device=unstable.device) < count
    rows = torch.zeros(*order.shape, unstable.shape[1], dtype=dtype, device=unstable.device)
    return order, valid, rows.scatter_(2, order[..., None], valid[..., None].to(dtype))


def _tighten(lower, upper, order, valid, new_l, new_u):
    """Intersect the bounds of the neurons ``order`` (B, m) with new ones where ``valid``."""
    old_l, old_u = lower.gather(1, order), upper.gather(1, order)
    return (lower.scatter(1, order, torch.where(valid, torch.maximum(new_l, old_l), old_l)),
            upper.scatter(1, order, torch.where(valid, torch.minimum(new_u, old_u), old_u)))


def preactivation_bounds(model: nn.Sequential, x: torch.Tensor, eps, splits=None):
    """(segments, relax, bounds, x_lower, x_upper): everything CROWN, the LP and the MILP share.

    segments: ``affine_segments``; bounds[i] = (l_i, u_i), each (B, n_i), bounds on z_i for every
    ReLU (i = 1 .. L-1), intersected with IBP; relax[i] = ``relu_relaxation(l_i, u_i)``; x_lower,
    x_upper: the box (B, n_0). A neuron that IBP already proves stable (l >= 0 or u <= 0) keeps its
    IBP bounds: it stays stable under CROWN n IBP and its relaxation is exact either way. Only the
    unstable ones get a CROWN backward pass, batched: all of a layer's unstable neurons at once (one row
    each, per example, padded to the batch's largest count; in chunks of ``ROW_BUDGET`` elements), or,
    for a convolutional layer reached through convolutions only, one pass per spatial position over its
    receptive field (``_back_affine``'s window: the cost of a pass no longer grows with the map). The
    first layer keeps its IBP bounds when it holds a single Linear or Conv2d (after Normalize /
    Flatten): interval arithmetic of one affine map over a box is exact per neuron, so CROWN could not
    tighten them. splits (branch and bound): None, or per ReLU layer a (B, n_i) tensor in {-1, 0, 1}:
    1 restricts the branch to z >= 0 (l := max(l, 0)), -1 to z <= 0 (u := min(u, 0)), before the
    later layers are bounded.
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
        if k and splits is not None:  # IBP's later layers ignore the splits: CROWN's below does not
            lower, upper = _apply_split(lower, upper, splits[k])
        unstable = (lower < 0) & (upper > 0)
        if k == 0 and first_exact:  # one affine map of the box: IBP's bounds are already exact per neuron
            unstable = torch.zeros_like(unstable)
        zero = lambda rows: torch.zeros(rows.shape[:2], dtype=dtype, device=x.device)  # noqa: E731
        if unstable.any() and _windowed(segments[:k + 1]):
            channels, height, width = segments[k][-1][2]
            per_pos = unstable.reshape(len(x), channels, height * width)
            for pos in per_pos.any(1).any(0).nonzero().flatten().tolist():
                order, valid, rows = _rows(per_pos[:, :, pos], dtype)  # (B, m, C): channels unstable at pos
                spec = torch.cat([rows, -rows], 1)[..., None, None]  # +z_j and -z_j, (B, 2m, C, 1, 1)
                r, q = divmod(pos, width)
                both = _backward_lower(segments[:k + 1], relax, spec, zero(spec), xl, xu, window=(r, r + 1, q, q + 1))
                m = order.shape[1]
                lower, upper = _tighten(lower, upper, order * height * width + pos, valid, both[:, :m], -both[:, m:])
        elif unstable.any():
            count = unstable.sum(1, keepdim=True)
            m = int(count.max())
            order = unstable.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :m]  # (B, m) unstable first
            valid = torch.arange(m, device=x.device) < count
            widest = max([xl.shape[1]] + [math.prod(shape) for seg in segments[:k + 1] for _, _, shape in seg])
            chunk = max(1, ROW_BUDGET // (2 * len(x) * widest))  # rows per backward pass: bounded memory
            new_l, new_u = [], []
            for start in range(0, m, chunk):
                idx, ok = order[:, start:start + chunk], valid[:, start:start + chunk]
                rows = torch.zeros(len(x), idx.shape[1], lower.shape[1], dtype=dtype, device=x.device)
                rows.scatter_(2, idx[..., None], ok[..., None].to(dtype))  # one-hot rows e_j, j unstable
                spec = torch.cat([rows, -rows], 1)  # +z_j and -z_j
                both = _backward_lower(segments[:k + 1], relax, spec, zero(spec), xl, xu)
                new_l.append(both[:, :idx.shape[1]])
                new_u.append(-both[:, idx.shape[1]:])
            lower, upper = _tighten(lower, upper, order, valid, torch.cat(new_l, 1), torch.cat(new_u, 1))
        if splits is not None:
            lower, upper = _apply_split(lower, upper, splits[k])
        bounds.append((lower, upper))
        relax.append(relu_relaxation(lower, upper))
    return segments, relax, bounds, xl, xu


def _apply_split(lower, upper, split):
    """Branch and bound's split of a ReLU layer: split (B, n) in {-1, 0, 1}; 1: z >= 0, -1: z <= 0.
    An empty branch (l > u after the split) keeps l > u: ``bab_verify`` treats it as proved."""
    return (torch.where(split > 0, lower.clamp(min=0), lower), torch.where(split < 0, upper.clamp(max=0), upper))


def _crown_spec(model, x, eps, make_spec):
    """min over the box of C z_L by CROWN; make_spec(K, dtype) -> C (B, m, K). Returns (B, m) in x.dtype."""
    segments, relax, _, xl, xu = preactivation_bounds(model, x, eps)
    with torch.no_grad():
        spec = make_spec(model(x[:1]).shape[1], xl.dtype)
    zero = torch.zeros(spec.shape[:2], dtype=xl.dtype, device=x.device)
    return _backward_lower(segments, relax, spec, zero, xl, xu).to(x.dtype)


def crown_bounds(model: nn.Sequential, x: torch.Tensor, eps) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN lower and upper bounds (B, K) on the logits of ``model`` over the eps-box around x.

    model: nn.Sequential of Linear, Conv2d, ReLU, Flatten, Normalize. x: (B, C, H, W) or (B, D) in
    [0, 1]; eps: L-infinity radius in pixel units. Rows of C: +e_k and -e_k, so the upper bound is
    -(CROWN lower bound of -z_k).
    """
    def spec(k, dtype):
        eye = torch.eye(k, device=x.device, dtype=dtype)
        return torch.cat([eye, -eye]).expand(len(x), -1, -1)

    both = _crown_spec(model, x, eps, spec)
    k = both.shape[1] // 2
    return both[:, :k], -both[:, k:]


def crown_margin_lower_bounds(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps) -> torch.Tensor:
    """CROWN lower bounds (B, K) of z_y - z_j over the eps-box, the specification C = e_y - e_j
    folded into the backward pass (tighter than l_y - u_j). Column y is 0. y: (B,) labels."""
    check_images(x)
    y = check_labels(y, x).to(x.device)
    with torch.no_grad():
        check_label_range(y, model(x[:1]).shape[1])

    return _crown_spec(model, x, eps, lambda k, dtype: _margin_spec(y, k, dtype)).scatter(1, y[:, None], 0.0)


ALPHA_STEPS, ALPHA_LR, ALPHA_DECAY = 20, 0.5, 0.98  # auto_LiRPA's defaults: iteration, lr_alpha, lr_decay (Adam)


def optimize_slopes(segments, relax, spec, x_lower, x_upper, steps: int = ALPHA_STEPS, lr: float = ALPHA_LR):
    """alpha-CROWN (Xu et al. 2021, "Fast and Complete"): the best lower bound of spec . z_L over the
    lower slopes alpha of the unstable ReLUs, by projected gradient ascent.

    Any alpha in [0, 1] gives a sound lower line h >= alpha z of an unstable ReLU (l < 0 < u), so
    every point of the ascent is a valid CROWN bound. Slopes are per neuron and per specification
    row, (B, m, n_i) for each ReLU layer, warm-started from CROWN's adaptive alpha; the upper lines
    and the intermediate bounds (``relax``) stay fixed. Adam ascent (written out: torch.optim's first
    step costs seconds of imports) with learning rate ``lr`` decayed by ALPHA_DECAY per step, alpha
    clipped to [0, 1] after each step, and the best bound of each row kept (so the result is never
    below CROWN's, step 0). spec: (B, m, K). Returns ((B, m) bounds, the slopes of the last step).
    """
    zero = torch.zeros(spec.shape[:2], dtype=spec.dtype, device=spec.device)
    relax = [tuple(v.detach() for v in r) for r in relax]
    unstable = [(s > 0) & (s < 1) for _, s, _ in relax]  # s = u / (u - l) lies strictly inside (0, 1) iff unstable
    slopes = [a[:, None, :].expand(-1, spec.shape[1], -1).clone() for a, _, _ in relax]
    moments = [(torch.zeros_like(a), torch.zeros_like(a)) for a in slopes]  # Adam's m and v (Kingma & Ba 2015)
    best = None
    for step in range(steps + 1):
        with torch.enable_grad():
            slopes = [a.requires_grad_(True) for a in slopes]
            lines = [(torch.where(u[:, None], a, r[0][:, None]), r[1], r[2]) for a, u, r in zip(slopes, unstable, relax)]
            bound = _backward_lower(segments, lines, spec, zero, x_lower, x_upper)
            best = bound.detach() if best is None else torch.maximum(best, bound.detach())
            if step == steps or not slopes:
                break
            grads = torch.autograd.grad(bound.sum(), slopes)  # rows are independent: the sum's gradient is each row's
        with torch.no_grad():
            eta = lr * ALPHA_DECAY ** step
            for i, (a, g) in enumerate(zip(slopes, grads)):
                m, v = moments[i][0].lerp(g, 0.1), moments[i][1].lerp(g * g, 0.001)  # beta1 = 0.9, beta2 = 0.999
                moments[i] = (m, v)
                m_hat, v_hat = m / (1 - 0.9 ** (step + 1)), v / (1 - 0.999 ** (step + 1))
                slopes[i] = (a + eta * m_hat / (v_hat.sqrt() + 1e-8)).clamp(0.0, 1.0)  # ascent, then the projection onto [0, 1]
    return best, [a.detach() for a in slopes]


def _margin_spec(y: torch.Tensor, k: int, dtype) -> torch.Tensor:
    """C = e_y - e_j for every j: (B, K, K), row y zero."""
    eye = torch.eye(k, device=y.device, dtype=dtype)
    return eye[y][:, None, :] - eye[None, :, :]


def alpha_crown_margin_lower_bounds(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps,
                                    steps: int = ALPHA_STEPS, lr: float = ALPHA_LR, splits=None,
                                    return_bounds: bool = False):
    """alpha-CROWN lower bounds (B, K) of z_y - z_j over the eps-box (Xu et al. 2021): CROWN's backward
    pass from C = e_y - e_j with the lower slopes optimised per margin (``optimize_slopes``), on
    CROWN's intermediate bounds (``preactivation_bounds``), the ones the LP and the MILP use, so that
    exact >= LP >= alpha-CROWN >= CROWN. Column y is 0. splits: see ``preactivation_bounds`` (branch
    and bound). return_bounds=True also returns the intermediate bounds [(l_i, u_i)].
    """
    check_images(x)
    y = check_labels(y, x).to(x.device)
    with torch.no_grad():
        k = model(x[:1]).shape[1]
        check_label_range(y, k)
        segments, relax, bounds, xl, xu = preactivation_bounds(model, x, eps, splits)
    best, _ = optimize_slopes(segments, relax, _margin_spec(y, k, xl.dtype), xl, xu, steps, lr)
    out = best.to(x.dtype).scatter(1, y[:, None], 0.0)
    return (out, bounds) if return_bounds else out


def _program(blocks, bounds, xl, xu, integer: bool, signs: bool = False):
    """Constraints of the triangle LP (integer=False) or the big-M MILP (integer=True) for one example.
    signs=True adds z <= 0 for every inactive neuron (u <= 0), so that an LP whose ReLUs are all stable
    is the network on exactly that activation region (branch and bound's leaves).

    Variables: [x (n_0), h_1 (n_1), ..., h_{L-1}, d (one binary per unstable ReLU, MILP only)].
    Returns (A, lo, hi, var_lo, var_hi, integrality, offsets) with lo <= A v <= hi, numpy float64;
    offsets[i] is where h_i starts (offsets[0] = 0 for x).
    """
    sizes = [len(xl)] + [len(l) for l, _ in bounds]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    unstable = [(l < 0) & (u > 0) for l, u in bounds]
    n_bin = int(sum(m.sum() for m in unstable)) if integer else 0
    n_var = int(offsets[-1]) + n_bin
    var_lo, var_hi = np.zeros(n_var), np.ones(n_var)
    var_lo[:sizes[0]], var_hi[:sizes[0]] = xl, xu
    rows, lo, hi = [], [], []

    def row(j, k, w_row, coef_h, coef_d=None, d_index=None):  # coef_h h_kj - w_row h_{k-1} (+ coef_d d)
        r = np.zeros(n_var)
        r[offsets[k - 1]:offsets[k]] = -w_row
        r[offsets[k] + j] = coef_h
        if coef_d is not None:
            r[d_index] = coef_d
        rows.append(r)

    d_next = int(offsets[-1])
    for k, ((w, b), (l, u), unst) in enumerate(zip(blocks[:-1], bounds, unstable), start=1):
        for j in range(len(b)):
            o = offsets[k] + j
            var_lo[o], var_hi[o] = max(l[j], 0.0), max(u[j], 0.0)
            if u[j] <= 0:  # inactive: h = 0 (by the variable bounds)
                if signs:  # and z <= 0:  -W h_prev >= b
                    row(j, k, w[j], 0.0)
                    lo.append(b[j]), hi.append(np.inf)
                continue
            if l[j] >= 0:  # active: h - W h_prev = b
                row(j, k, w[j], 1.0)
                lo.append(b[j]), hi.append(b[j])
                continue
            row(j, k, w[j], 1.0)  # h >= z:  h - W h_prev >= b
            lo.append(b[j]), hi.append(np.inf)
            if integer:  # h <= z - l (1 - d): h - W h_prev - l d <= b - l;  h <= u d: h - u d <= 0
                row(j, k, w[j], 1.0, -l[j], d_next)
                lo.append(-np.inf), hi.append(b[j] - l[j])
                r = np.zeros(n_var)
                r[o], r[d_next] = 1.0, -u[j]
                rows.append(r), lo.append(-np.inf), hi.append(0.0)
                d_next += 1
            else:  # h <= s (z - l): h - s W h_prev <= s (b - l)
                s = u[j] / (u[j] - l[j])
                row(j, k, s * w[j], 1.0)
                lo.append(-np.inf), hi.append(s * (b[j] - l[j]))
    integrality = np.zeros(n_var)
    integrality[int(offsets[-1]):] = 1
    a = np.array(rows) if rows else np.zeros((0, n_var))
    return a, np.array(lo), np.array(hi), var_lo, var_hi, integrality, offsets


def _solve_margins(model, x, y, eps, integer: bool, return_inputs: bool = False, splits=None):
    check_images(x)
    y = check_labels(y, x)
    with torch.no_grad():
        check_label_range(y, model(x[:1]).shape[1])
        _, _, bounds, xl, xu = preactivation_bounds(model, x, eps, splits)
    blocks = [(w.detach().cpu().double().numpy(), b.detach().cpu().double().numpy()) for w, b in affine_blocks(model, x)]
    w_last, b_last = blocks[-1]
    k = len(b_last)
    out = np.zeros((len(x), k))
    inputs = np.zeros((len(x), k, xl.shape[1]))
    for i in range(len(x)):
        bi = [(l[i].detach().cpu().double().numpy(), u[i].detach().cpu().double().numpy()) for l, u in bounds]
        xli, xui = xl[i].detach().cpu().double().numpy(), xu[i].detach().cpu().double().numpy()
        a, lo, hi, var_lo, var_hi, integrality, offsets = _program(blocks, bi, xli, xui, integer, splits is not None)
        yi = int(y[i])
        for j in range(k):
            if j == yi:
                inputs[i, j] = x[i].detach().flatten().cpu().double().numpy()
                continue
            cost = np.zeros(len(var_lo))
            cost[offsets[-2]:offsets[-1]] = w_last[yi] - w_last[j]  # (w_y - w_j) h_{L-1}
            const = b_last[yi] - b_last[j]
            if integer:
                res = milp(cost, integrality=integrality, bounds=Bounds(var_lo, var_hi),
                           constraints=[LinearConstraint(a, lo, hi)] if len(a) else None,
                           options={"mip_rel_gap": 1e-9})
                if res.status != 0:
                    raise RuntimeError(f"MILP failed for example {i}, class {j}: {res.message}")
                value = res.mip_dual_bound if getattr(res, "mip_dual_bound", None) is not None else res.fun
            else:
                eq = lo == hi  # h = z rows; the rest are one-sided
                up, dn = ~eq & np.isfinite(hi), ~eq & np.isfinite(lo)
                a_ub, b_ub = np.concatenate([a[up], -a[dn]]), np.concatenate([hi[up], -lo[dn]])
                res = linprog(cost, A_ub=a_ub if len(b_ub) else None, b_ub=b_ub if len(b_ub) else None,
                              A_eq=a[eq] if eq.any() else None, b_eq=lo[eq] if eq.any() else None,
                              bounds=np.stack([var_lo, var_hi], 1), method="highs")
                if res.status == 2 and splits is not None:  # a branch whose splits no input satisfies: nothing to bound
                    out[i, j], inputs[i, j] = np.inf, x[i].detach().flatten().cpu().double().numpy()
                    continue
                if res.status != 0:
                    raise RuntimeError(f"LP failed for example {i}, class {j}: {res.message}")
                value = res.fun
            out[i, j] = value + const
            inputs[i, j] = res.x[:offsets[1]]
    out = torch.as_tensor(out, dtype=x.dtype, device=x.device)
    if return_inputs:
        return out, torch.as_tensor(inputs, dtype=x.dtype, device=x.device).reshape(len(x), k, *x.shape[1:])
    return out


def lp_margin_lower_bounds(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps, splits=None,
                           return_inputs: bool = False):
    """Lower bounds (B, K) of z_y - z_j by the triangle LP relaxation (Ehlers 2017; Wong & Kolter 2018).

    Every unstable ReLU (l < 0 < u, bounds from CROWN) is replaced by h >= 0, h >= z,
    h <= u (z - l) / (u - l); one LP per (example, j != y) minimises z_y - z_j (scipy ``linprog``,
    HiGHS). Column y is 0. For fully connected nets of a few dozen neurons and small B. splits (see
    ``preactivation_bounds``) restricts to a branch and adds z <= 0 for the inactive neurons: where no
    ReLU is left unstable, the value is the exact minimum over the branch (branch and bound's leaves).
    return_inputs=True also returns the minimisers, as ``exact_margin_lower_bounds``.
    """
    return _solve_margins(model, x, y, eps, integer=False, return_inputs=return_inputs, splits=splits)


def exact_margin_lower_bounds(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps,
                              return_inputs: bool = False):
    """The exact minimum (B, K) of z_y - z_j over the eps-box, by a big-M MILP (Tjeng et al. 2019).

    A binary d per unstable ReLU: h >= 0, h >= z, h <= z - l (1 - d), h <= u d, with the CROWN
    pre-activation bounds as big-M constants (scipy ``milp``, HiGHS, relative gap 1e-9). The value is
    HiGHS's dual bound, so it stays a valid lower bound if the gap did not close. Exponential in the
    number of unstable ReLUs: tiny networks only. Column y is 0. return_inputs=True also returns the
    minimisers x* (B, K, *x.shape[1:]) (x itself in column y), where the network attains the value.
    """
    return _solve_margins(model, x, y, eps, integer=True, return_inputs=return_inputs)


def margin_lower_bounds_by(method: str, model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps,
                           **options) -> torch.Tensor:
    """Lower bounds (B, K) of z_y - z_j over the eps-box by method in METHODS ("ibp", "crown",
    "alpha-crown", "lp", "exact", "bab"). options: ``steps``, ``lr`` for "alpha-crown"; ``time_limit``
    (seconds per image), ``batch``, ``steps`` for "bab" (``bab.bab_verify``'s margins: the lowest bound
    over its branches, or over what was left at the time limit)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    allowed = {"alpha-crown": {"steps", "lr"}, "bab": {"time_limit", "batch", "steps", "seed"}}.get(method, set())
    if set(options) - allowed:
        raise ValueError(f"method {method!r} takes options {sorted(allowed)}, got {sorted(options)}")
    if method == "ibp":
        return ibp_margin_lower_bounds(model, x, y, eps)
    if method == "crown":
        return crown_margin_lower_bounds(model, x, y, eps)
    if method == "alpha-crown":
        return alpha_crown_margin_lower_bounds(model, x, y, eps, **options)
    if method == "lp":
        return lp_margin_lower_bounds(model, x, y, eps)
    if method == "exact":
        return exact_margin_lower_bounds(model, x, y, eps)
    from .bab import bab_verify  # bab builds on this module

    return torch.stack([r.margins for r in bab_verify(model, x, y, eps, **options)])


@torch.no_grad()
def verified_by(method: str, model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps, **options) -> torch.Tensor:
    """(B,) bool: every margin bound z_y - z_j (j != y) by ``method`` is > 0 (``ibp`` uses ``ibp.verified``;
    ``bab``: the status is "verified"). options: as ``margin_lower_bounds_by``."""
    if method == "ibp":
        return ibp_verified(model, x, y, eps)
    if method == "bab":
        from .bab import bab_verify

        return torch.tensor([r.status == "verified" for r in bab_verify(model, x, y, eps, **options)], device=x.device)
    m = margin_lower_bounds_by(method, model, x, y, eps, **options)
    y = check_labels(y, x)
    return (m.scatter(1, y[:, None], float("inf")) > 0).all(1)


def verified_accuracy_by(method: str, model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps,
                         batch_size: int = 32, **options) -> tuple[int, int]:
    """(number verified, number of examples) by ``method`` over x (N, ...), in batches of ``batch_size``
    (CROWN's memory grows with batch x unstable neurons x layer size: keep batches small); options as
    ``margin_lower_bounds_by``."""
    return verified_accuracy(model, x, y, eps, batch_size,
                             verify=lambda m, xb, yb, e: verified_by(method, m, xb, yb, e, **options))
