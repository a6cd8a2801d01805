"""Linear relaxations of ReLU networks: CROWN, the triangle LP and the exact MILP (convex relaxation lesson).

The network ``nn.Sequential`` of Linear / Conv2d / ReLU / Flatten / ``models.Normalize`` is first
rewritten as L dense affine maps with a ReLU between consecutive ones (``affine_blocks``):

    h_0 = x (flattened, n_0),   z_i = W_i h_{i-1} + b_i,   h_i = relu(z_i)  (i < L),   logits = z_L.

Consecutive affine layers (Normalize, Conv2d, Flatten, Linear) are composed exactly. Conv2d is
turned into its dense matrix by applying it to the identity basis, so memory grows as (neurons)^2:
this is meant for the small networks of the course (up to a few thousand neurons per layer and a
handful of examples), not for CIFAR-sized CNNs (use conv_transpose-based CROWN, e.g. auto_LiRPA).

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
(``ibp.input_box``). Results are float tensors (B, K) on x.device. CROWN is computed in float64
(float32 on MPS, which has no float64) and stays differentiable; LP and MILP run on the CPU.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from torch import nn

from ..models import Normalize
from ..validation import check_images, check_labels
from .ibp import input_box, layer_bounds, supported_layers
from .ibp import margin_lower_bounds as ibp_margin_lower_bounds
from .ibp import verified as ibp_verified

METHODS = ("ibp", "crown", "lp", "exact")


def _check_model(model) -> list[nn.Module]:
    layers = supported_layers(model, "linear relaxations")
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
            raise ValueError(f"layer {i} (Conv2d) has padding_mode={layer.padding_mode!r}; only 'zeros' is supported")
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


def _backward_lower(blocks, relax, spec_w, spec_b, x_lower, x_upper):
    """CROWN's lower bound of C z_k over the box: C z_k = A h_{k-1} + c pushed back to x, then minimised.

    spec_w: (B, m, n_{k-1}) = C W_k, spec_b: (B, m) = C b_k; blocks, relax: the k - 1 affine maps and
    ReLU relaxations below z_k. x_lower, x_upper: (B, n_0). Returns (B, m).
    """
    a, c = spec_w, spec_b
    for (w, b), (alpha, s, t) in zip(reversed(blocks), reversed(relax)):
        a_pos, a_neg = a.clamp(min=0), a.clamp(max=0)  # A^+ takes the lower line, A^- the upper one
        c = c + (a_neg * t[:, None, :]).sum(-1)
        a = a_pos * alpha[:, None, :] + a_neg * s[:, None, :]  # (B, m, n_i): coefficients on z_i
        c = c + a @ b
        a = a @ w  # (B, m, n_{i-1})
    return (a.clamp(min=0) @ x_lower[..., None] + a.clamp(max=0) @ x_upper[..., None]).squeeze(-1) + c


def preactivation_bounds(model: nn.Sequential, x: torch.Tensor, eps):
    """(blocks, relax, bounds, x_lower, x_upper): everything CROWN, the LP and the MILP share.

    blocks: ``affine_blocks``; bounds[i] = (l_i, u_i), each (B, n_i), bounds on z_i for every ReLU
    (i = 1 .. L-1), each by a CROWN backward pass over the layers below, intersected with IBP;
    relax[i] = ``relu_relaxation(l_i, u_i)``; x_lower, x_upper: the box (B, n_0).
    """
    layers = _check_model(model)
    check_images(x)
    xl, xu = input_box(x, eps)
    ibp_pre, lo, hi = [], xl, xu  # IBP pre-activation bounds at each ReLU, via ibp.layer_bounds
    for layer in layers:
        if isinstance(layer, nn.ReLU):
            ibp_pre.append((lo.flatten(1), hi.flatten(1)))
        lo, hi = layer_bounds(layer, lo, hi)
    blocks = affine_blocks(model, x)
    dtype = blocks[0][0].dtype
    xl, xu = xl.flatten(1).to(dtype), xu.flatten(1).to(dtype)
    relax, bounds = [], []
    for k, (w, b) in enumerate(blocks[:-1]):
        spec_w = torch.cat([w, -w]).expand(len(x), -1, -1)  # rows: +z_k and -z_k
        spec_b = torch.cat([b, -b]).expand(len(x), -1)
        both = _backward_lower(blocks[:k], relax, spec_w, spec_b, xl, xu)
        lower, upper = both[:, :len(b)], -both[:, len(b):]
        lower = torch.maximum(lower, ibp_pre[k][0].to(dtype))
        upper = torch.minimum(upper, ibp_pre[k][1].to(dtype))
        bounds.append((lower, upper))
        relax.append(relu_relaxation(lower, upper))
    return blocks, relax, bounds, xl, xu


def _crown_spec(model, x, eps, make_spec):
    """min over the box of C z_L by CROWN; make_spec(K, dtype) -> C (B, m, K). Returns (B, m) in x.dtype."""
    blocks, relax, _, xl, xu = preactivation_bounds(model, x, eps)
    w, b = blocks[-1]
    spec = make_spec(len(b), w.dtype)
    return _backward_lower(blocks[:-1], relax, spec @ w, spec @ b, xl, xu).to(x.dtype)


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

    def spec(k, dtype):  # (B, K, K): row j = e_y - e_j, row y is zero
        eye = torch.eye(k, device=x.device, dtype=dtype)
        return eye[y][:, None, :] - eye[None, :, :]

    return _crown_spec(model, x, eps, spec).scatter(1, y[:, None], 0.0)


def _program(blocks, bounds, xl, xu, integer: bool):
    """Constraints of the triangle LP (integer=False) or the big-M MILP (integer=True) for one example.

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


def _solve_margins(model, x, y, eps, integer: bool, return_inputs: bool = False):
    check_images(x)
    y = check_labels(y, x)
    blocks, _, bounds, xl, xu = preactivation_bounds(model, x, eps)
    blocks = [(w.detach().cpu().double().numpy(), b.detach().cpu().double().numpy()) for w, b in blocks]
    w_last, b_last = blocks[-1]
    k = len(b_last)
    out = np.zeros((len(x), k))
    inputs = np.zeros((len(x), k, xl.shape[1]))
    for i in range(len(x)):
        bi = [(l[i].detach().cpu().double().numpy(), u[i].detach().cpu().double().numpy()) for l, u in bounds]
        xli, xui = xl[i].detach().cpu().double().numpy(), xu[i].detach().cpu().double().numpy()
        a, lo, hi, var_lo, var_hi, integrality, offsets = _program(blocks, bi, xli, xui, integer)
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
                if res.status != 0:
                    raise RuntimeError(f"LP failed for example {i}, class {j}: {res.message}")
                value = res.fun
            out[i, j] = value + const
            inputs[i, j] = res.x[:offsets[1]]
    out = torch.as_tensor(out, dtype=x.dtype, device=x.device)
    if return_inputs:
        return out, torch.as_tensor(inputs, dtype=x.dtype, device=x.device).reshape(len(x), k, *x.shape[1:])
    return out


def lp_margin_lower_bounds(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps) -> torch.Tensor:
    """Lower bounds (B, K) of z_y - z_j by the triangle LP relaxation (Ehlers 2017; Wong & Kolter 2018).

    Every unstable ReLU (l < 0 < u, bounds from CROWN) is replaced by h >= 0, h >= z,
    h <= u (z - l) / (u - l); one LP per (example, j != y) minimises z_y - z_j (scipy ``linprog``,
    HiGHS). Column y is 0. For fully connected nets of a few dozen neurons and small B.
    """
    return _solve_margins(model, x, y, eps, integer=False)


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


def margin_lower_bounds_by(method: str, model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps) -> torch.Tensor:
    """Lower bounds (B, K) of z_y - z_j over the eps-box by method in METHODS ("ibp", "crown", "lp", "exact")."""
    if method == "ibp":
        return ibp_margin_lower_bounds(model, x, y, eps)
    if method == "crown":
        return crown_margin_lower_bounds(model, x, y, eps)
    if method == "lp":
        return lp_margin_lower_bounds(model, x, y, eps)
    if method == "exact":
        return exact_margin_lower_bounds(model, x, y, eps)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def verified_by(method: str, model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps) -> torch.Tensor:
    """(B,) bool: every margin bound z_y - z_j (j != y) by ``method`` is > 0 (``ibp`` uses ``ibp.verified``)."""
    if method == "ibp":
        return ibp_verified(model, x, y, eps)
    m = margin_lower_bounds_by(method, model, x, y, eps)
    y = check_labels(y, x)
    return (m.scatter(1, y[:, None], float("inf")) > 0).all(1)
