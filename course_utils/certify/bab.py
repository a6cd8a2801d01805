"""Complete verification by branch and bound over ReLU splits, with alpha-CROWN bounds (notebook 08b).

``bab_verify(model, x, y, eps, time_limit)`` decides, per image, whether every margin z_y - z_j
(j != y) is > 0 on the box {x' : ||x' - x||_inf <= eps} n [0, 1]^d:

- ``"verified"``: every branch is proved: its alpha-CROWN bound is > 0, its splits are infeasible
  (some l > u), or, once no ReLU of the branch is unstable, the exact LP over its activation region is > 0;
- ``"falsified"``: a point of the box where the network's margin is <= 0, found by PGD first or by
  a leaf's LP, and checked by a forward pass (``counterexample``);
- ``"unknown"``: ``time_limit`` seconds passed first.

A branch fixes some unstable ReLUs on (z >= 0) or off (z <= 0) (Bunel et al. 2020, "Branch and
Bound for Piecewise Linear Neural Network Verification"). Here a split only clamps the neuron's
bounds (l := 0 or u := 0), which makes its relaxation exact and tightens every later layer's bounds
(``preactivation_bounds(splits=...)``); beta-CROWN (Wang et al. 2021) also adds the split
constraint z >= 0 / z <= 0 itself to the bound, with a Lagrange multiplier beta optimised like
alpha, which we do not. Without beta a branch whose every ReLU is fixed can still be bounded below
its true minimum (nothing forces its input into the region), so such a leaf is solved exactly by an
LP (``lp_margin_lower_bounds(splits=...)``, scipy's HiGHS): that makes the search complete, on
networks small enough to reach the leaves. On networks of at most ``LP_NEURONS`` inputs and ReLUs, a
branch that alpha-CROWN leaves unproved is also bounded by that LP (triangles plus the split
constraints; beta-CROWN approaches that LP through its dual, Wang et al. 2021),
and its minimiser is tried as a counterexample. The split neuron is the unstable one with the largest
-l u / (u - l), the height of its triangle (a simple stand-in for BaBSR's score); the branch with
the lowest bound is split first, ``batch`` branches bounded per call.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from ..attacks import default_alpha, pgd
from ..validation import check_images, check_labels
from .relaxation import ALPHA_STEPS, alpha_crown_margin_lower_bounds, lp_margin_lower_bounds

STATUSES = ("verified", "falsified", "unknown")
LP_NEURONS = 256  # inputs + ReLUs up to which a branch alpha-CROWN leaves unproved is also bounded by the LP


@dataclass(frozen=True)
class BaBResult:
    """One image's answer. margins: (K,) lower bounds of z_y - z_j over the box from the branches
    (0 at y; for "verified" all > 0); counterexample: (1, ...) a point of the box with a margin <= 0,
    or None; branches: bounded; seconds: spent."""
    status: str
    margins: torch.Tensor
    counterexample: torch.Tensor | None
    branches: int
    seconds: float


def _margins(model, x, y):
    with torch.no_grad():
        z = model(x)
    return z.gather(1, y[:, None]) - z  # (N, K)


def _split_choice(bounds, b):
    """(layer, neuron) of branch b to split: the unstable ReLU with the largest -l u / (u - l)."""
    best, where = -1.0, None
    for k, (lo, hi) in enumerate(bounds):
        l, u = lo[b], hi[b]
        score = torch.where((l < 0) & (u > 0), -l * u / (u - l).clamp_min(1e-12), torch.full_like(l, -1.0))
        j = int(score.argmax())
        if float(score[j]) > best:
            return k, j
    return where


def _bab_one(model, x, y, eps, time_limit, batch, steps, generator):
    start = time.perf_counter()
    off = torch.ones(_margins(model, x, y).shape[1], dtype=torch.bool, device=x.device)
    off[int(y)] = False

    def result(status, margins, cex, branches):
        return BaBResult(status, margins.scatter(0, y, 0.0), cex, branches, time.perf_counter() - start)

    inf = torch.full((len(off),), math.inf, dtype=x.dtype, device=x.device)
    for candidate in [x] + ([] if eps <= 0 else [None]):  # the image, then PGD (a counterexample ends the search)
        if candidate is None:
            with torch.enable_grad():
                candidate = pgd(model, x, y, eps, default_alpha(eps, 50), 50, restarts=2, generator=generator)
        if (_margins(model, candidate, y)[0, off] <= 0).any():  # the box's margins: alpha-CROWN's, unsplit
            return result("falsified", alpha_crown_margin_lower_bounds(model, x, y, eps, steps)[0], candidate, 0)
    layers = [lo.shape[1] for lo, _ in alpha_crown_margin_lower_bounds(model, x, y, eps, steps=0, return_bounds=True)[1]]
    small = x[0].numel() + sum(layers) <= LP_NEURONS
    queue = [(-math.inf, 0, [torch.zeros(1, n, dtype=x.dtype, device=x.device) for n in layers], -inf)]
    closed, branches, unresolved, counter = inf.clone(), 0, False, 1
    while queue:
        if branches and time.perf_counter() - start > time_limit:  # (the whole box is always bounded once)
            return result("unknown", torch.minimum(closed, torch.stack([q[3] for q in queue]).min(0).values), None, branches)
        queue.sort(key=lambda q: (q[0], q[1]))
        take, queue = queue[:batch], queue[batch:]
        splits = [torch.cat([q[2][k] for q in take]) for k in range(len(layers))]
        xb, yb = x.expand(len(take), *x.shape[1:]), y.expand(len(take))
        m, bounds = alpha_crown_margin_lower_bounds(model, xb, yb, eps, steps, splits=splits, return_bounds=True)
        m = torch.maximum(m, torch.stack([q[3] for q in take]))  # a parent's bound holds on its children
        branches += len(take)
        for b in range(len(take)):
            if any(bool((lo[b] > hi[b]).any()) for lo, hi in bounds):
                continue  # the splits contradict each other: an empty region
            if (m[b][off] > 0).all():
                closed = torch.minimum(closed, m[b])
                continue
            where = _split_choice(bounds, b)
            if where is None or small:  # the LP with the split constraints (exact once every ReLU is fixed)
                mine = [s[b:b + 1] for s in splits]
                lp, x_star = lp_margin_lower_bounds(model, x, y, eps, splits=mine, return_inputs=True)
                lp = torch.maximum(lp[0], m[b])
                j = int(torch.where(off, lp, inf).argmin())
                if off[j] and lp[j] <= 0:  # (an empty region has lp = inf everywhere)
                    cex = x_star[0, j][None]
                    if _margins(model, cex, y)[0, j] <= 0:  # checked by a forward pass
                        rest = torch.stack([m.min(0).values] + [q[3] for q in queue]).min(0).values  # every open branch
                        return result("falsified", torch.minimum(torch.minimum(closed, lp), rest), cex, branches)
                    unresolved = unresolved or where is None  # a leaf: the LP and the network disagree (tolerance)
                if where is None or (lp[off] > 0).all():
                    closed = torch.minimum(closed, lp)
                    continue
                m[b] = lp
            k, j = where
            for side in (1.0, -1.0):
                child = [s[b:b + 1].clone() for s in splits]
                child[k][0, j] = side
                queue.append((float(m[b][off].min()), counter, child, m[b]))
                counter += 1
    return result("unknown" if unresolved else "verified", closed, None, branches)


def bab_verify(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps, time_limit: float = 10.0,
               batch: int = 8, steps: int = ALPHA_STEPS, seed: int = 0) -> list[BaBResult]:
    """Branch and bound on each image of x (B, ...) in [0, 1] with labels y (B,): a ``BaBResult`` per
    image, within ``time_limit`` seconds each. eps: L-infinity radius in pixels (a float). steps:
    alpha-CROWN's per branch; seed: PGD's random starts (50 steps, 2 restarts)."""
    check_images(x)
    y = check_labels(y, x).to(x.device)
    gen = torch.Generator(x.device).manual_seed(seed)
    return [_bab_one(model, x[i:i + 1], y[i:i + 1], float(eps), time_limit, batch, steps, gen) for i in range(len(x))]
