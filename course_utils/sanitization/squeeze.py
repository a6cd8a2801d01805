"""Input sanitization: feature squeezers and detectors calibrated for a false-positive rate (notebook 06).

Feature squeezing (Xu, Evans & Qi, NDSS 2018, "Feature Squeezing: Detecting Adversarial Examples
in Deep Neural Networks") compares a model's prediction on an input x with its predictions on
squeezed copies s_k(x). Squeezers here take and return x: (B, C, H, W) in [0, 1]:

- ``bit_depth(x, bits)``: round each pixel to 2^bits levels (1 bit for MNIST, 5 for CIFAR-10);
  ``flippable_pixels(x, eps, bits)``: the share of pixels an L-infinity change of eps can move to
  another level (what the attacker has left after squeezing).
- ``median_smooth(x, size)``: size x size median filter (2x2 in the paper), scipy's window and
  'reflect' borders.
- ``non_local_means(x, search, patch, h)``: non-local means denoising (scikit-image), the paper's
  "11-3-2" for colour images. Not differentiable; attacks go through it with BPDA
  (``sanitization.bpda``).

Detectors share one interface (``Detector``), kept small so a service can use it:
``det.fit_threshold(x_clean, fpr=0.05)`` picks the threshold tau for a false-positive rate,
``det.score(x) -> (B,)`` (higher = more suspicious), ``det.detect(x) -> bool (B,)`` is
``score > tau``. ``SqueezeDetector`` scores max_k ||softmax f(x) - softmax f(s_k(x))||_1;
``ConfidenceDetector`` scores 1 - max softmax (the low-confidence filter that high-confidence
adversarial examples pass). The MagNet reconstruction detector is in ``purification``.
``stream_flag_rate`` simulates monitoring: the flagged-input rate over mixed traffic.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..validation import check_images, eval_mode


# ----------------------------------------------------------------------------- squeezers
def bit_depth(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Reduce colour depth to ``bits`` per channel: round(x * (2^bits - 1)) / (2^bits - 1).

    x: (B, C, H, W) in [0, 1] -> same shape, values on the 2^bits-level grid in [0, 1]. Ties round
    to even, as ``np.rint`` in ART's ``FeatureSqueezing``. bits must be an integer in 1..8.
    """
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an integer in 1..8, got {bits!r}")
    check_images(x)
    levels = 2 ** bits - 1
    return torch.round(x * levels) / levels


def flippable_pixels(x: torch.Tensor, eps: float, bits: int) -> torch.Tensor:
    """Per image, the share of pixels whose ``bit_depth(., bits)`` value an L-infinity change of at
    most ``eps`` (staying in [0, 1]) can change: why 1-bit squeezing holds on MNIST at 0.3 and 5 bits
    do not on CIFAR-10 at 8/255 (notebook 06).

    ``bit_depth`` is monotonic, so a pixel p can be moved to another level iff
    ``bit_depth(p - eps)`` or ``bit_depth(p + eps)`` (clipped to [0, 1]) differs from ``bit_depth(p)``.
    x: (B, C, H, W) in [0, 1] -> (B,) in [0, 1].
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    s = bit_depth(x, bits)
    moved = (bit_depth((x - eps).clamp(0, 1), bits) != s) | (bit_depth((x + eps).clamp(0, 1), bits) != s)
    return moved.flatten(1).float().mean(1)


def _symmetric_pad(x: torch.Tensor, before: int, after: int, dim: int) -> torch.Tensor:
    """Pad by mirroring with the edge repeated ("d c b a | a b c d", scipy's mode='reflect')."""
    parts = [x.narrow(dim, 0, before).flip(dim)] if before else []
    parts.append(x)
    if after:
        parts.append(x.narrow(dim, x.shape[dim] - after, after).flip(dim))
    return torch.cat(parts, dim)


def median_smooth(x: torch.Tensor, size: int = 2) -> torch.Tensor:
    """Median over a size x size window per channel, as ``scipy.ndimage.median_filter(mode='reflect')``.

    x: (B, C, H, W) in [0, 1] -> same shape. For an even size (the paper's 2x2) the window covers
    offsets -size//2 .. size//2 - 1 and the median is the upper middle value, both as scipy does.
    size must be an integer in 1..min(H, W); size 1 is the identity.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive integer (the median window is size x size), got {size!r}")
    check_images(x)
    if x.ndim != 4 or size > min(x.shape[-2:]):
        raise ValueError(f"median_smooth needs x of shape (B, C, H, W) with H, W >= size={size}, got {tuple(x.shape)}")
    before, after = size // 2, (size - 1) // 2
    padded = _symmetric_pad(_symmetric_pad(x, before, after, 2), before, after, 3)
    windows = padded.unfold(2, size, 1).unfold(3, size, 1).flatten(-2)  # (B, C, H, W, size^2)
    return windows.sort(dim=-1).values[..., (size * size) // 2]


def non_local_means(x: torch.Tensor, search: int = 11, patch: int = 3, h: float = 2 / 255) -> torch.Tensor:
    """Non-local means denoising (Buades et al. 2005) per image with scikit-image.

    Xu et al.'s "11-3-2": search window 11 x 11, patch 3 x 3, filter strength 2 (on a 0..255
    scale; h = 2/255 here). x: (B, C, H, W) in [0, 1] -> same shape, in [0, 1], on x.device.
    Runs on the CPU in NumPy: no gradient (use ``sanitization.bpda`` to attack through it).
    """
    from skimage.restoration import denoise_nl_means

    check_images(x)
    if x.ndim != 4:
        raise ValueError(f"non_local_means needs x of shape (B, C, H, W), got {tuple(x.shape)}")
    for name, v in (("search", search), ("patch", patch)):
        if not isinstance(v, int) or v < 1 or v % 2 == 0:
            raise ValueError(f"{name} must be an odd positive integer (a window side), got {v!r}")
    if not h > 0:
        raise ValueError(f"h must be > 0, got {h!r}")
    imgs = x.detach().cpu().numpy().transpose(0, 2, 3, 1).astype(np.float64)  # (B, H, W, C)
    out = np.stack([denoise_nl_means(im, patch_size=patch, patch_distance=search // 2, h=h,
                                     channel_axis=-1, fast_mode=True) for im in imgs])
    out = out.reshape(imgs.shape).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.clip(out, 0, 1)).to(device=x.device, dtype=x.dtype)


def paper_squeezers(dataset: str) -> dict:
    """Xu et al.'s squeezers: MNIST 1-bit and 2x2 median; CIFAR-10 5-bit, 2x2 median and NLM 11-3-2."""
    if dataset == "mnist":
        return {"bit depth 1": functools.partial(bit_depth, bits=1), "median 2x2": functools.partial(median_smooth, size=2)}
    if dataset == "cifar10":
        return {"bit depth 5": functools.partial(bit_depth, bits=5), "median 2x2": functools.partial(median_smooth, size=2),
                "non-local means 11-3-2": non_local_means}
    raise ValueError(f"dataset must be 'mnist' or 'cifar10', got {dataset!r}")


# ----------------------------------------------------------------------------- calibration
def threshold_for_fpr(scores, fpr: float = 0.05, is_adversarial=None) -> float:
    """The threshold tau such that at most a fraction ``fpr`` of clean scores exceed it: flag ``score > tau``.

    The course's one threshold rule (notebook 06, projects p2 and p4). Convention: a higher score is
    more suspicious. For a score where *low* is suspicious (a similarity), negate it:
    ``tau = -threshold_for_fpr(-scores, fpr)`` and flag ``score < tau``.
    scores: (N,) detector scores of calibration inputs; only the clean
    ones (``is_adversarial`` False, or all when it is None) are used. With n clean scores sorted
    in decreasing order s_(0) >= s_(1) >= ..., tau = s_(k) with k = floor(fpr * n), so the
    empirical false-positive rate of ``score > tau`` is k / n (less with ties).
    """
    if not isinstance(fpr, (int, float)) or not 0 <= fpr < 1:
        raise ValueError(f"fpr must be a number in [0, 1), got {fpr!r}")
    scores = torch.as_tensor(scores, dtype=torch.float64).flatten()
    if is_adversarial is not None:
        mask = torch.as_tensor(is_adversarial, dtype=torch.bool).flatten()
        if mask.shape != scores.shape:
            raise ValueError(f"is_adversarial must have one entry per score ({scores.numel()}), got {mask.numel()}")
        scores = scores[~mask]
    if scores.numel() == 0:
        raise ValueError("the calibration set has no clean examples: a threshold for a false-positive rate needs clean scores")
    if not torch.isfinite(scores).all():
        raise ValueError("calibration scores must be finite")
    k = math.floor(fpr * scores.numel() + 1e-9)
    return float(scores.sort(descending=True).values[k])


# ----------------------------------------------------------------------------- detectors
class Detector:
    """Base: subclasses define ``differentiable_score(x) -> (B,)``; tau is set by ``fit_threshold``."""

    threshold: float | None = None

    def differentiable_score(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def score(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Scores (B,) on x.device, higher = more suspicious. x: (B, C, H, W) in [0, 1]."""
        check_images(x)
        return torch.cat([self.differentiable_score(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    def fit_threshold(self, x_clean: torch.Tensor, fpr: float = 0.05):
        """Set tau so that a fraction ``fpr`` of the clean images ``x_clean`` is flagged; returns self."""
        check_images(x_clean, "x_clean")
        if len(x_clean) == 0:
            raise ValueError("x_clean is empty: calibration needs clean examples")
        self.threshold = threshold_for_fpr(self.score(x_clean), fpr)
        self.fpr = fpr
        return self

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        """bool (B,): True where ``score(x) > tau`` (flagged as adversarial)."""
        if self.threshold is None:
            raise ValueError("call fit_threshold(x_clean, fpr) before detect()")
        return self.score(x) > self.threshold


class SqueezeDetector(Detector):
    """Feature-squeezing detector (Xu et al. 2018): score = max_k ||softmax f(x) - softmax f(s_k(x))||_1.

    model: x (B, C, H, W) in [0, 1] -> logits (B, K); squeezers: dict name -> (or list of)
    functions x -> x in [0, 1]. Scores lie in [0, 2]. ``differentiable_score(x, through=...)``
    lets an attack pass gradients through the squeezers (``through=sanitization.bpda``).
    """

    def __init__(self, model, squeezers):
        self.model = model
        self.squeezers = dict(squeezers) if isinstance(squeezers, dict) else {getattr(s, "__name__", f"s{i}"): s for i, s in enumerate(squeezers)}
        if not self.squeezers:
            raise ValueError("SqueezeDetector needs at least one squeezer")

    def distances(self, x: torch.Tensor, through=None) -> torch.Tensor:
        """L1 distances (B, n_squeezers) between the softmax on x and on each squeezed x."""
        p = F.softmax(self.model(x), dim=1)
        d = []
        for s in self.squeezers.values():
            xs = through(x, s) if through is not None else s(x)
            d.append((p - F.softmax(self.model(xs), dim=1)).abs().sum(1))
        return torch.stack(d, dim=1)

    def differentiable_score(self, x, through=None):
        with eval_mode(self.model):
            return self.distances(x, through).amax(dim=1)


class ConfidenceDetector(Detector):
    """The naive filter: score = 1 - max_j softmax f(x)_j (flag low-confidence predictions)."""

    def __init__(self, model):
        self.model = model

    def differentiable_score(self, x, through=None):
        with eval_mode(self.model):
            return 1 - F.softmax(self.model(x), dim=1).amax(dim=1)


def detection_rate(detector: Detector, x_adv: torch.Tensor, mask=None) -> float:
    """Fraction of x_adv (optionally only where ``mask``, e.g. the successful ones) that is flagged."""
    flags = detector.detect(x_adv).cpu()
    if mask is not None:
        flags = flags[torch.as_tensor(mask).cpu().bool()]
    return flags.float().mean().item() if flags.numel() else float("nan")


def roc_points(scores_clean, scores_adv):
    """ROC curve of a detector: (fpr, tpr, auc) from clean (negatives) and adversarial (positives) scores."""
    from sklearn.metrics import roc_auc_score, roc_curve

    s = torch.cat([torch.as_tensor(scores_clean).flatten().cpu(), torch.as_tensor(scores_adv).flatten().cpu()]).numpy()
    labels = np.r_[np.zeros(len(s) - torch.as_tensor(scores_adv).numel()), np.ones(torch.as_tensor(scores_adv).numel())]
    fpr, tpr, _ = roc_curve(labels, s)
    return fpr, tpr, float(roc_auc_score(labels, s))


# ----------------------------------------------------------------------------- monitoring
def stream_flag_rate(flags_clean, flags_adv, attack_share, batch: int = 32, generator: torch.Generator | None = None):
    """Simulate monitoring: per time step, a batch of traffic of which ``attack_share[t]`` is attacked.

    flags_clean / flags_adv: bool (N,) detector decisions on clean and attacked inputs (drawn with
    replacement); attack_share: sequence of fractions in [0, 1], one per time step. Returns a
    DataFrame with columns step, attack_share (the true share drawn) and flagged (the flagged rate,
    the security metric an operator watches).
    """
    import pandas as pd

    flags_clean = torch.as_tensor(flags_clean).bool().flatten().cpu()
    flags_adv = torch.as_tensor(flags_adv).bool().flatten().cpu()
    if len(flags_clean) == 0 or len(flags_adv) == 0:
        raise ValueError("flags_clean and flags_adv must each hold at least one decision")
    rows = []
    for t, share in enumerate(attack_share):
        if not 0 <= share <= 1:
            raise ValueError(f"attack_share must be fractions in [0, 1], got {share!r} at step {t}")
        attacked = torch.rand(batch, generator=generator) < share
        ic = torch.randint(len(flags_clean), (batch,), generator=generator)
        ia = torch.randint(len(flags_adv), (batch,), generator=generator)
        flagged = torch.where(attacked, flags_adv[ia], flags_clean[ic])
        rows.append({"step": t, "attack_share": attacked.float().mean().item(), "flagged": flagged.float().mean().item()})
    return pd.DataFrame(rows)


@torch.no_grad()
def detection_report(model, detector: Detector, x, y, x_adv, name: str = "attack") -> dict:
    """How an attack fares against classifier + detector, on the n examples the model gets right clean.

    fooled: share of x_adv misclassified; detected: share of the fooled ones flagged (Xu et al.'s
    detection rate); evaded: share fooled AND not flagged (the attacker's real success). Detected and
    evaded carry 95% Clopper-Pearson intervals. x, x_adv: (B, C, H, W) in [0, 1]; y: (B,).
    """
    from statsmodels.stats.proportion import proportion_confint

    with eval_mode(model):
        keep = (model(x).argmax(1) == y).cpu()
        fooled = (model(x_adv).argmax(1) != y).cpu()[keep]
    flagged = detector.detect(x_adv).cpu()[keep]
    n, n_fooled, n_evaded = int(keep.sum()), int(fooled.sum()), int((fooled & ~flagged).sum())
    n_detected = int((flagged & fooled).sum())
    lo, hi = proportion_confint(n_evaded, max(n, 1), alpha=0.05, method="beta")
    d_lo, d_hi = proportion_confint(n_detected, max(n_fooled, 1), alpha=0.05, method="beta")
    return {"attack": name, "n": n, "fooled": n_fooled / max(n, 1),
            "detected (of fooled)": n_detected / n_fooled if n_fooled else float("nan"),
            "detected 95% CI": f"{d_lo:.2f}-{d_hi:.2f}" if n_fooled else "-",
            "evaded": n_evaded / max(n, 1), "evaded 95% CI": f"{lo:.2f}-{hi:.2f}"}
