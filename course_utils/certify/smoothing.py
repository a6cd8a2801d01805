"""Randomized smoothing: a certified L2 defense (Cohen, Rosenfeld & Kolter 2019; notebook 07).

The smoothed classifier of a base classifier f is

    g(x) = argmax_c P(f(x + delta) = c),   delta ~ N(0, sigma^2 I).

If the top class c_A has probability p_A >= pA_lower > 1/2, then g(x + d) = c_A for every
``||d||_2 < R = sigma * PhiInverse(pA_lower)`` (Theorem 1, the runner-up bounded by 1 - pA_lower).
``Smooth`` follows the paper's PREDICT and CERTIFY (Algorithm, Section 3.2; the reference code is
locuslab/smoothing ``core.py``): counts of ``f`` over batched Gaussian samples, a one-sided
Clopper-Pearson lower bound at level alpha, abstention (label ``-1``) when the evidence is too weak.

Also here: ``certify_dataset`` (a table of labels, radii and timings over many images),
``certified_accuracy`` (the curve of certified accuracy against radius), ``NoisySoftmax`` (the
Monte-Carlo soft smoothed classifier that attacks differentiate, Salman et al. 2019) and
``noise_augment`` (Gaussian data augmentation for training the base classifier).
Inputs are pixels in [0, 1] (normalization is the model's first layer); sigma and R are in pixel
units. Interval bound propagation lives in ``certify.ibp``.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import binomtest, norm
from statsmodels.stats.proportion import proportion_confint
from torch import nn
from tqdm.auto import tqdm

from ..validation import check_labels, check_nonnegative, check_positive, check_positive_int, check_probability

ABSTAIN = -1


def lower_confidence_bound(n_a: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on p from n_a successes in n trials.

    The two-sided ``beta`` interval at level 2 * alpha has this as its lower end (Cohen et al. 2019).
    """
    check_probability(alpha, "alpha")
    if not 0 <= n_a <= n:
        raise ValueError(f"need 0 <= n_a <= n, got n_a={n_a}, n={n}")
    return float(proportion_confint(n_a, n, alpha=2 * alpha, method="beta")[0])


def certified_radius(pa_lower: float, sigma: float) -> float:
    """R = sigma * PhiInverse(pA_lower) for pA_lower > 1/2, else 0 (nothing certified). sigma: finite > 0."""
    sigma = check_positive(sigma, "sigma")
    return float(sigma * norm.ppf(pa_lower)) if pa_lower > 0.5 else 0.0


class Smooth:
    """The smoothed classifier g of a base classifier f (Cohen et al. 2019).

    base_classifier: maps (B, C, H, W) in [0, 1] (or (B, D) features) to (B, num_classes) logits.
    sigma: noise level, in input units, a finite number > 0 (an infinite sigma would "certify" any
    constant prediction at an infinite radius); inputs x must be finite. generator: an optional
    torch.Generator on the model's device for reproducible noise (default: torch's global generator).
    Noise is *not* clipped to [0, 1]: the guarantee is for the Gaussian measure the base classifier
    saw during training.
    """

    ABSTAIN = ABSTAIN

    def __init__(self, base_classifier: nn.Module, num_classes: int, sigma: float, generator: torch.Generator | None = None):
        if not callable(base_classifier):
            raise ValueError(f"base_classifier must be a torch.nn.Module, got {type(base_classifier).__name__}")
        self.base_classifier = base_classifier
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.sigma = check_positive(sigma, "sigma")
        self.generator = generator

    def _check_x(self, x):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim not in (1, 3):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be ONE float input of shape (C, H, W) (or (D,) features), got {shape}")
        if not torch.isfinite(x).all():
            raise ValueError(f"x must be finite, got {int((~torch.isfinite(x)).sum())} NaN or infinite value(s)")
        return x

    def certify(self, x: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int) -> tuple[int, float]:
        """CERTIFY: guess c_A from n0 samples, bound p_A from n fresh samples; return (label, radius).

        With probability >= 1 - alpha over the noise, a returned label c_A satisfies
        g(x + d) = c_A for all ||d||_2 < radius. Returns (ABSTAIN, 0.0) when pA_lower < 1/2.
        """
        self._check_x(x)
        n0, n = check_positive_int(n0, "n0"), check_positive_int(n, "n")
        alpha = check_probability(alpha, "alpha")
        c_a = int(self.sample_counts(x, n0, batch_size).argmax())  # selection samples
        n_a = int(self.sample_counts(x, n, batch_size)[c_a])  # estimation samples
        pa_lower = lower_confidence_bound(n_a, n, alpha)
        if pa_lower < 0.5:
            return ABSTAIN, 0.0
        return c_a, certified_radius(pa_lower, self.sigma)

    def predict(self, x: torch.Tensor, n: int, alpha: float, batch_size: int) -> int:
        """PREDICT: the top class of n samples, or ABSTAIN unless a two-sided binomial test of
        top-1 versus top-2 counts rejects equality at level alpha (then P(wrong answer) <= alpha)."""
        self._check_x(x)
        n = check_positive_int(n, "n")
        alpha = check_probability(alpha, "alpha")
        counts = self.sample_counts(x, n, batch_size)
        top2 = np.argsort(counts, kind="stable")[::-1][:2]
        n1, n2 = int(counts[top2[0]]), int(counts[top2[1]])
        if binomtest(n1, n1 + n2, p=0.5).pvalue > alpha:
            return ABSTAIN
        return int(top2[0])

    @torch.no_grad()
    def sample_counts(self, x: torch.Tensor, num: int, batch_size: int) -> np.ndarray:
        """Class counts of f(x + delta) over ``num`` Gaussian draws, in batches: (num_classes,) int."""
        batch_size = check_positive_int(batch_size, "batch_size")
        model = self.base_classifier
        was_training = getattr(model, "training", False)
        if isinstance(model, nn.Module):
            model.eval()
        counts = torch.zeros(self.num_classes, dtype=torch.long, device=x.device)
        try:
            remaining = num
            while remaining > 0:
                b = min(batch_size, remaining)
                batch = x.unsqueeze(0).expand(b, *x.shape)
                noise = torch.randn(batch.shape, generator=self.generator, device=x.device, dtype=x.dtype)
                preds = model(batch + self.sigma * noise).argmax(1)
                counts += torch.bincount(preds, minlength=self.num_classes)
                remaining -= b
        finally:
            if isinstance(model, nn.Module):
                model.train(was_training)
        return counts.cpu().numpy()


def certify_dataset(smooth: Smooth, x: torch.Tensor, y: torch.Tensor, n0: int, n: int, alpha: float,
                    batch_size: int = 1000, progress: bool = True):
    """CERTIFY every image of x: (N, C, H, W) in [0, 1]; returns a DataFrame with columns
    label, predict (certified label or -1), radius, correct, seconds (as locuslab's certify.py).
    y: (N,) class indices in [0, smooth.num_classes)."""
    import pandas as pd

    y = check_labels(y, x, num_classes=smooth.num_classes)
    rows = []
    for i in tqdm(range(len(x)), desc=f"certify sigma={smooth.sigma:g}", disable=not progress, leave=False):
        t0 = time.perf_counter()
        label, radius = smooth.certify(x[i], n0, n, alpha, batch_size)
        rows.append({"label": int(y[i]), "predict": label, "radius": radius,
                     "correct": int(label == int(y[i])), "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)


def certified_accuracy(results, radii) -> np.ndarray:
    """Fraction of images certified correct with radius >= r, for each r in radii.

    results: a ``certify_dataset`` DataFrame (or anything with ``correct`` and ``radius`` columns).
    At r = 0 this counts every correct, non-abstained prediction.
    """
    correct = np.asarray(results["correct"], dtype=bool)
    radius = np.asarray(results["radius"], dtype=float)
    return np.array([(correct & (radius >= r)).mean() for r in radii])


def max_certifiable_radius(n: int, alpha: float, sigma: float) -> float:
    """The largest radius CERTIFY can ever return with n samples: all n votes for c_A."""
    return certified_radius(lower_confidence_bound(n, n, alpha), sigma)


class NoisySoftmax(nn.Module):
    """Monte-Carlo soft smoothed classifier: log of the mean of softmax(f(x + delta)) over m draws.

    Differentiable, so ``attacks.pgd`` (with the default cross-entropy, which on these log
    probabilities is -log E[softmax_y]) attacks the smoothed classifier itself (SmoothAdv,
    Salman et al. 2019). Fresh noise on every call (expectation over transformation).
    """

    def __init__(self, base_classifier: nn.Module, sigma: float, m: int = 32):
        super().__init__()
        self.base_classifier = base_classifier
        self.sigma = check_nonnegative(sigma, "sigma")
        self.m = check_positive_int(m, "m")

    def forward(self, x):  # x: (B, ...) -> (B, K) log-probabilities
        xs = x.unsqueeze(1).expand(x.shape[0], self.m, *x.shape[1:]).reshape(-1, *x.shape[1:])
        logits = self.base_classifier(xs + self.sigma * torch.randn_like(xs))
        probs = F.softmax(logits, dim=1).view(x.shape[0], self.m, -1).mean(1)
        return probs.clamp_min(1e-12).log()


def noise_augment(sigma: float):
    """A ``train_epoch``-style attack that returns x + N(0, sigma^2 I): Gaussian augmentation, the
    training recipe of Cohen et al. (2019). Usage: ``fit(model, loader, epochs, attack=noise_augment(0.25))``."""
    sigma = check_nonnegative(sigma, "sigma")

    def augment(model, x, y):
        return x + sigma * torch.randn_like(x)

    return augment
