"""Verdicts: what a run showed about a claimed phenomenon, in one of three outcomes.

Every lesson claims phenomena ("PGD is stronger than FGSM", "clean accuracy hides the backdoor") and
measures them on a finite sample. A verdict says one of three things (``../shared/STYLE.md``):

- **shown**: the effect, with its interval, is beyond sampling noise in the claimed direction;
- **contradicted**: the opposite is shown, or the effect is shown to be smaller than a stated margin
  (a one-sided test at 5%; for a claim of *no difference*, equivalence by a two one-sided test, TOST);
- **not resolved** at this size: neither, with the number of images (or seeds) that would resolve it.

Non-significance is never evidence of no effect: "A is no better than B" needs a margin.

Statistics (all at the 5% level):
- a rate: Clopper-Pearson exact interval (statsmodels);
- two settings on the same images: McNemar's exact test for the direction, and Newcombe's (1998,
  method 10) score interval for the paired difference of two proportions, whose 90% version is the
  TOST for a margin;
- sizes that would resolve a comparison: Connor's (1987) normal approximation for McNemar's test at
  80% power, from the observed discordance (an estimate, printed as "about").

``evaluation`` re-exports every public name here; lessons call ``evaluation.paired_verdict`` etc.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm as _normal
from statsmodels.stats.proportion import proportion_confint

from .validation import check_fraction

SHOWN, CONTRADICTED, NOT_RESOLVED = "shown", "contradicted", "not resolved"
OUTCOMES = (SHOWN, CONTRADICTED, NOT_RESOLVED)
_LABEL = {SHOWN: "SHOWN", CONTRADICTED: "CONTRADICTED", NOT_RESOLVED: "NOT RESOLVED at this size"}


@dataclass(frozen=True)
class Verdict:
    """A claim's outcome in one run. ``str(v)`` (and ``repr``) is the sentence a guard cell displays:
    "NAME: SHOWN. evidence. note". ``bool(v)`` is True only when shown; ``ok, sentence = v`` unpacks."""

    name: str
    outcome: str
    evidence: str
    note: str = ""

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if not self.name or not self.evidence:
            raise ValueError("a verdict needs a name and its evidence (the numbers, with n and intervals)")
        if self.outcome != SHOWN and not self.note:
            raise ValueError(f"a verdict that is {self.outcome!r} needs a note: what it means or what would resolve it")

    @property
    def shown(self) -> bool:
        return self.outcome == SHOWN

    def __bool__(self):
        return self.shown

    def __iter__(self):  # ok, sentence = verdict
        return iter((self.shown, str(self)))

    def __getitem__(self, i):  # verdict[1] is the sentence, as for the older (ok, sentence) pairs
        return (self.shown, str(self))[i]

    def __str__(self):
        return f"{self.name}: {_LABEL[self.outcome]}. {self.evidence}." + (f" {self.note}" if self.note else "")

    __repr__ = __str__


def verdict(name: str, outcome: str, evidence: str, note: str = "") -> Verdict:
    """A verdict decided by the caller: ``outcome`` is "shown", "contradicted" or "not resolved";
    ``evidence`` the numbers with their threat model, n and intervals; ``note`` what it means or, unless
    shown, what would resolve it (required then)."""
    return Verdict(name, outcome, evidence, note)


def phenomenon(name: str, appeared: bool, evidence: str, if_not: str, if_so: str = "") -> Verdict:
    """A two-way reading for guards that cannot be contradicted by their own data: ``appeared`` ->
    shown (with ``if_so``), else not resolved (with ``if_not``: what to try). Prefer a test below."""
    return Verdict(name, SHOWN if appeared else NOT_RESOLVED, evidence, if_so if appeared else if_not)


# ---------------------------------------------------------------------------------------------- statistics
def _bools(v) -> np.ndarray:
    return np.asarray(getattr(v, "cpu", lambda: v)(), dtype=bool).ravel()


def rate_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Clopper-Pearson (exact) 1 - alpha interval of k successes in n trials."""
    lo, hi = proportion_confint(k, n, alpha=alpha, method="beta")
    return float(lo), float(hi)


def paired_comparison(a_ok, b_ok) -> dict:
    """McNemar's exact test on per-image correctness of two models (or checkpoints, or attacks) on the
    same images: ``a_ok``, ``b_ok`` bool arrays of one non-zero length (``evaluation.correct``'s output).
    Returns ``{"n", "a", "b", "only_a", "only_b", "p"}`` (accuracies, discordant counts, two-sided
    p-value). It sees test-set noise, not training-seed noise."""
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = _bools(a_ok), _bools(b_ok)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired_comparison needs two per-image bool arrays of the same non-zero length")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = float(mcnemar([[0, only_a], [only_b, 0]], exact=True).pvalue)
    return {"n": int(a.size), "a": float(a.mean()), "b": float(b.mean()), "only_a": only_a, "only_b": only_b, "p": p}


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def paired_difference_interval(a_ok, b_ok, alpha: float = 0.05) -> tuple[float, float, float]:
    """(d, low, high): d = accuracy(a) - accuracy(b) on the same images and its 1 - alpha interval by
    Newcombe's (1998) method 10 (Wilson score intervals of both proportions, combined with the
    phi correlation of the pairs). Unlike the Wald interval it does not collapse to a point when no
    image is discordant. alpha = 0.10 gives the interval of a two one-sided test (TOST) at 5%."""
    a, b = _bools(a_ok), _bools(b_ok)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired_difference_interval needs two per-image bool arrays of the same non-zero length")
    n = a.size
    both, only_a, only_b = int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum())
    neither = n - both - only_a - only_b
    z = float(_normal.ppf(1 - alpha / 2))
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = _wilson(both + only_a, n, z)
    l2, u2 = _wilson(both + only_b, n, z)
    denom = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    if denom == 0:
        phi = 0.0
    else:
        phi = (max(cross - n / 2, 0) if cross > 0 else cross) / math.sqrt(denom)
    d = p1 - p2
    delta = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    eps = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return d, max(d - delta, -1.0), min(d + eps, 1.0)


def _images_to_detect(d: float, discordant: float, power: float = 0.8) -> int | None:
    """Images McNemar's test needs to detect a paired difference d at 5% (two-sided) with ``power``,
    given the discordant share (Connor 1987). None when d is 0."""
    if d == 0:
        return None
    psi = max(discordant, abs(d), 1e-6)
    za, zb = _normal.ppf(0.975), _normal.ppf(power)
    return int(math.ceil(((za * math.sqrt(psi) + zb * math.sqrt(max(psi - d * d, 0.0))) / abs(d)) ** 2))


def _images_to_bound(d: float, margin: float, discordant: float, power: float = 0.8) -> int | None:
    """Images a one-sided test at 5% needs to show the paired difference below ``margin`` when it is d."""
    if d >= margin:
        return None
    psi = max(discordant, 1e-6)
    za, zb = _normal.ppf(0.95), _normal.ppf(power)
    return int(math.ceil(psi * ((za + zb) / (margin - d)) ** 2))


def _notes(*parts: str) -> str:
    """The sentence's tail: the outcome's own text, then ``if_so`` / ``if_not``, then ``note`` (printed in
    every outcome), each only when given."""
    return " ".join(p.strip() for p in parts if p and p.strip())


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _acc(k: int, n: int) -> str:
    lo, hi = rate_interval(k, n)
    return f"{100 * k / n:.1f}% ({100 * lo:.1f}-{100 * hi:.1f})"


def format_p(p: float) -> str:
    """A p-value for people: "p = 0.034", "p < 0.001"."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}" if p < 0.01 else f"p = {p:.2f}"


def paired_verdict(name: str, higher_ok, lower_ok, higher: str, lower: str, if_not: str = "", *, if_so: str = "",
                   note: str = "", margin: float = 0.01, threat: str = "", unit: str = "images") -> Verdict:
    """The claim "``higher`` is more accurate than ``lower``" on the same images.

    higher_ok, lower_ok: per-image bool correctness of the two settings on one set of images.
    - shown: ``higher``'s accuracy is above and McNemar's exact test separates them (p < 0.05);
    - contradicted: ``lower`` is above beyond noise (McNemar p < 0.05), or the difference is shown to be
      below ``margin`` (the upper end of its 90% Newcombe interval, a one-sided test at 5%);
    - not resolved: otherwise, with the images that would detect the observed difference (80% power).
    After the evidence the sentence prints ``if_so`` when shown, ``if_not`` (what to try, what it means)
    otherwise, and ``note`` always (see ``_notes``). ``margin``: the smallest difference (a fraction)
    worth calling an effect; ``unit``: images, reviews, transactions."""
    if isinstance(if_not, (int, float)) and not isinstance(if_not, bool):
        if_not, margin = "", float(if_not)
    margin = check_fraction(margin, "margin")
    pair = paired_comparison(higher_ok, lower_ok)
    n, p = pair["n"], pair["p"]
    ka, kb = round(pair["a"] * n), round(pair["b"] * n)
    d, lo90, hi90 = paired_difference_interval(higher_ok, lower_ok, alpha=0.10)
    _, lo95, hi95 = paired_difference_interval(higher_ok, lower_ok, alpha=0.05)
    where = f" ({threat})" if threat else ""
    evidence = (f"{higher} {_acc(ka, n)} vs {lower} {_acc(kb, n)} on the same {n} {unit}{where}; difference "
                f"{100 * d:+.1f} points (95% CI {100 * lo95:+.1f} to {100 * hi95:+.1f}), McNemar {format_p(p)}")
    discordant = max(pair["only_a"] + pair["only_b"], 3) / n  # none seen: at most about 3 / n (rule of three)
    if d > 0 and p < 0.05:
        return Verdict(name, SHOWN, evidence, _notes(if_so, note))
    if d < 0 and p < 0.05:
        return Verdict(name, CONTRADICTED, evidence, _notes(f"{lower} comes out higher here.", if_not, note))
    if hi90 < margin:
        return Verdict(name, CONTRADICTED, evidence + f"; the difference is below the {100 * margin:g}-point margin "
                       "(one-sided test at 5%)", _notes(f"{higher} is not better than {lower} by the margin or more.",
                                                        if_not, note))
    if d > 0:
        need = _images_to_detect(d, discordant)
        size = f"About {need:,} {unit} would resolve a difference of this size." if need else f"More {unit} are needed."
    else:
        need = _images_to_bound(d, margin, discordant)
        size = (f"No gain was seen; about {need:,} {unit} would show whether the difference is below the "
                f"{100 * margin:g}-point margin." if need else f"More {unit} are needed.")
    return Verdict(name, NOT_RESOLVED, evidence, _notes(size, if_not, note))


def equivalence_verdict(name: str, a_ok, b_ok, a: str, b: str, margin: float, if_not: str = "", *, if_so: str = "",
                        note: str = "", threat: str = "", unit: str = "images") -> Verdict:
    """The claim "``a`` and ``b`` agree within ``margin``" (a fraction: 0.01 = one point) on the same images.

    - shown: the 90% Newcombe interval of the paired difference lies inside (-margin, margin): a two
      one-sided test (TOST) at 5%;
    - contradicted: the 95% interval lies wholly outside [-margin, margin] (a difference larger than the margin);
    - not resolved: otherwise, with the images that would resolve it.
    This is the only way a lesson says "no difference": non-significance is not equivalence."""
    margin = check_fraction(margin, "margin")
    if margin <= 0:
        raise ValueError("margin must be > 0: equivalence is always within a stated margin")
    pair = paired_comparison(a_ok, b_ok)
    n = pair["n"]
    ka, kb = round(pair["a"] * n), round(pair["b"] * n)
    d, lo90, hi90 = paired_difference_interval(a_ok, b_ok, alpha=0.10)
    _, lo95, hi95 = paired_difference_interval(a_ok, b_ok, alpha=0.05)
    where = f" ({threat})" if threat else ""
    evidence = (f"{a} {_acc(ka, n)} vs {b} {_acc(kb, n)} on the same {n} {unit}{where}; difference "
                f"{100 * d:+.1f} points, 90% CI {100 * lo90:+.1f} to {100 * hi90:+.1f} against a margin of "
                f"+-{100 * margin:g} points (TOST)")
    if -margin < lo90 and hi90 < margin:
        return Verdict(name, SHOWN, evidence, _notes(if_so, note))
    if lo95 > margin or hi95 < -margin:
        return Verdict(name, CONTRADICTED, evidence, _notes(f"{a} and {b} differ by more than the margin.", if_not, note))
    discordant = max(pair["only_a"] + pair["only_b"], 3) / n  # none seen: at most about 3 / n (rule of three)
    need = _images_to_bound(abs(d), margin, discordant) if abs(d) < margin else None
    size = (f"About {need:,} {unit} would resolve it." if need
            else f"The observed difference sits at the margin: more {unit} are needed.")
    return Verdict(name, NOT_RESOLVED, evidence, _notes(size, if_not, note))


def rate_verdict(name: str, k: int, n: int, threshold: float, what: str, if_not: str = "", above: bool = True, *,
                 if_so: str = "", note: str = "") -> Verdict:
    """The claim "the rate of ``what`` is above (``above=False``: below) ``threshold``": k of n events.

    - shown: the whole 95% Clopper-Pearson interval lies on the claimed side;
    - contradicted: it lies wholly on the other side;
    - not resolved: it straddles the threshold (with the n that would resolve the observed rate)."""
    threshold = check_fraction(threshold, "threshold")
    if not (isinstance(k, numbers.Integral) and isinstance(n, numbers.Integral) and 0 <= k <= n and n > 0):
        raise ValueError(f"need integers 0 <= k <= n, n > 0; got k={k!r}, n={n!r}")
    lo, hi = rate_interval(int(k), int(n))
    side = "above" if above else "below"
    evidence = f"{what}: {k} of {n}, {_acc(int(k), int(n))}; the claim needs the 95% interval {side} {_pct(threshold)}"
    claimed, opposite = (lo > threshold, hi < threshold) if above else (hi < threshold, lo > threshold)
    if claimed:
        return Verdict(name, SHOWN, evidence, _notes(if_so, note))
    if opposite:
        return Verdict(name, CONTRADICTED, evidence, _notes(f"The rate is on the other side of {_pct(threshold)}.",
                                                            if_not, note))
    rate = k / n
    if rate == threshold:
        size = "The observed rate equals the threshold."
    else:
        need = math.ceil(rate * (1 - rate) * (1.96 / (rate - threshold)) ** 2) if 0 < rate < 1 else None
        size = f"About {need:,} trials would resolve a rate of {_pct(rate)}." if need and need > n else "More trials are needed."
    return Verdict(name, NOT_RESOLVED, evidence, _notes(size, if_not, note))
