"""Synthetic card transactions for the certified fraud-model project (notebooks/projects/p3).

SYNTHETIC DATA. Real card data is personal and cannot ship with a course, and public fraud sets
are PCA-anonymised, so their features have no units and no threat model can be stated for them.
This seeded generator produces transactions with named features in real units, so that "the
attacker may shift the amount by a few dollars and the time by some minutes" becomes a box in
feature space. It is a teaching model, not a fraud statistic: the rates and patterns below are
invented to be plausible (a low fraud rate; card testing, account take-over and skimming patterns
that overlap with legitimate behaviour), not measured.

``make_transactions(n, fraud_rate, seed)`` -> pandas DataFrame, one row per transaction:

| feature | unit | legitimate | fraud patterns |
| --- | --- | --- | --- |
| amount | USD | log-normal per merchant category | tiny test charges; large take-over purchases |
| hour | hours since midnight, [0, 24) | daytime peak | more at night |
| distance_km | km from home | mostly near home | take-over and skimming far away |
| velocity_1h | transactions on the card in the last hour | Poisson(0.3) | card testing: many |
| velocity_24h | transactions in the last 24 h | Poisson(3) | higher |
| amount_ratio | amount / the card's 90-day mean amount | around 1 | large for take-over |
| device_change | 1 if a new device or browser | 3% | take-over: mostly |
| foreign | 1 if abroad | 4% | skimming: often |
| card_present | 1 if chip/stripe read | most offline categories | card testing: never |
| category_* | one-hot merchant category | | |
| is_fraud | label | 0 | 1 |

``FeatureScaler`` maps the numeric features linearly to [0, 1] (clipped at the training data's
0.5% and 99.5% quantiles), so a change of d units in feature k is d / scale_k in model units.
``threat_radii(scaler, tolerance)`` turns a business tolerance ({"amount": 5.0, "hour": 0.25})
into per-feature L-infinity radii (attacker-controlled features only, 0 elsewhere) and the L2
radius of the box's corner, which randomized smoothing must certify to cover the whole box.
"""
from __future__ import annotations

import numpy as np

CATEGORIES = ("grocery", "fuel", "restaurant", "electronics", "online", "travel")
_CAT_P = np.array([0.30, 0.15, 0.22, 0.06, 0.22, 0.05])
_CAT_MEDIAN_USD = np.array([45.0, 40.0, 35.0, 250.0, 60.0, 400.0])
_CAT_PRESENT_P = np.array([0.97, 0.98, 0.93, 0.80, 0.0, 0.40])
NUMERIC = ("amount", "hour", "distance_km", "velocity_1h", "velocity_24h", "amount_ratio", "device_change",
           "foreign", "card_present")
FEATURES = NUMERIC + tuple(f"category_{c}" for c in CATEGORIES)
CONTROLLED = ("amount", "hour", "distance_km")  # what a fraudster can shift a little, in its units
UNITS = {"amount": "USD", "hour": "hours", "distance_km": "km"}


def _legit(n, rng):
    cat = rng.choice(len(CATEGORIES), size=n, p=_CAT_P)
    amount = _CAT_MEDIAN_USD[cat] * rng.lognormal(0.0, 0.7, n)
    hour = (rng.normal(14.0, 4.0, n)) % 24
    distance = rng.lognormal(1.5, 1.0, n)  # median ~4.5 km
    distance[cat == 5] *= 40  # travel happens far from home
    v1 = rng.poisson(0.3, n)
    v24 = v1 + rng.poisson(3.0, n)
    ratio = rng.lognormal(0.0, 0.5, n)
    device = rng.random(n) < 0.03
    foreign = rng.random(n) < np.where(cat == 5, 0.35, 0.03)
    present = rng.random(n) < _CAT_PRESENT_P[cat]
    return cat, amount, hour, distance, v1, v24, ratio, device, foreign, present


def _fraud(n, rng):
    pattern = rng.choice(3, size=n, p=[0.35, 0.40, 0.25])  # card testing, take-over, skimming
    test, ato, skim = pattern == 0, pattern == 1, pattern == 2
    cat = np.where(test, 4, rng.choice(len(CATEGORIES), size=n, p=[0.15, 0.10, 0.10, 0.30, 0.25, 0.10]))
    amount = _CAT_MEDIAN_USD[cat] * rng.lognormal(0.6, 0.8, n)
    amount[test] = rng.uniform(0.5, 12.0, test.sum())
    hour = np.where(rng.random(n) < 0.5, rng.normal(3.0, 2.5, n), rng.normal(15.0, 5.0, n)) % 24
    distance = rng.lognormal(3.0, 1.5, n)
    distance[test] = rng.lognormal(1.5, 1.0, test.sum())  # online: the card's own address
    v1 = rng.poisson(np.where(test, 5.0, 0.8))
    v24 = v1 + rng.poisson(np.where(test, 8.0, 4.0))
    ratio = rng.lognormal(np.where(ato, 1.3, 0.4), 0.8)
    ratio[test] = rng.uniform(0.01, 0.3, test.sum())
    device = rng.random(n) < np.where(ato, 0.75, 0.10)
    foreign = rng.random(n) < np.where(skim, 0.55, 0.12)
    present = (rng.random(n) < np.where(skim, 0.9, 0.2)) & (cat != 4) & ~test
    return cat, amount, hour, distance, v1, v24, ratio, device, foreign, present


def make_transactions(n: int = 20_000, fraud_rate: float = 0.02, seed: int = 0):
    """``n`` synthetic transactions (about ``fraud_rate`` of them fraud), seeded; a DataFrame of
    ``FEATURES`` + ``category`` (name) + ``is_fraud`` (0/1), in shuffled order."""
    import pandas as pd

    if not isinstance(n, int) or n < 10:
        raise ValueError(f"n must be an integer >= 10, got {n!r}")
    if not 0 < fraud_rate < 0.5:
        raise ValueError(f"fraud_rate must be in (0, 0.5), got {fraud_rate!r}")
    rng = np.random.default_rng(seed)
    n_fraud = max(1, rng.binomial(n, fraud_rate))
    parts = [_legit(n - n_fraud, rng), _fraud(n_fraud, rng)]
    cols = [np.concatenate([p[i] for p in parts]) for i in range(10)]
    cat, amount, hour, distance, v1, v24, ratio, device, foreign, present = cols
    df = pd.DataFrame({
        "amount": np.round(amount, 2), "hour": hour, "distance_km": distance, "velocity_1h": v1.astype(float),
        "velocity_24h": v24.astype(float), "amount_ratio": ratio, "device_change": device.astype(float),
        "foreign": foreign.astype(float), "card_present": present.astype(float),
    })
    for k, c in enumerate(CATEGORIES):
        df[f"category_{c}"] = (cat == k).astype(float)
    df["category"] = np.array(CATEGORIES)[cat]
    df["is_fraud"] = np.r_[np.zeros(n - n_fraud, int), np.ones(n_fraud, int)]
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


class FeatureScaler:
    """Linear map of each feature to [0, 1]: x = clip((v - low) / (high - low), 0, 1).

    low / high: the 0.5% / 99.5% quantiles of the training data (binary and one-hot: 0 / 1).
    ``to_dict`` / ``from_dict`` store it in a checkpoint's JSON sidecar.
    """

    def __init__(self, low: dict | None = None, high: dict | None = None):
        self.low, self.high = dict(low or {}), dict(high or {})

    def fit(self, df):
        for f in FEATURES:
            v = df[f].to_numpy(dtype=float)
            lo, hi = (0.0, 1.0) if set(np.unique(v)) <= {0.0, 1.0} else (np.quantile(v, 0.005), np.quantile(v, 0.995))
            self.low[f], self.high[f] = float(lo), float(max(hi, lo + 1e-6))
        return self

    def scale(self, feature: str) -> float:
        """Units of ``feature`` per model unit: a change of d units moves the input by d / scale."""
        return self.high[feature] - self.low[feature]

    def transform(self, df) -> np.ndarray:
        """(N, D) float32 in [0, 1], columns in ``FEATURES`` order."""
        missing = [f for f in FEATURES if f not in df]
        if missing or not self.low:
            raise ValueError(f"scaler not fitted or columns missing: {missing}")
        cols = [(df[f].to_numpy(dtype=float) - self.low[f]) / self.scale(f) for f in FEATURES]
        return np.clip(np.stack(cols, 1), 0.0, 1.0).astype(np.float32)

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureScaler":
        if not isinstance(d, dict) or set(d) != {"low", "high"} or set(d["low"]) != set(FEATURES):
            raise ValueError("scaler must be a dict {'low': {...}, 'high': {...}} over course_utils.fraud.FEATURES")
        return cls(d["low"], d["high"])


def threat_radii(scaler: FeatureScaler, tolerance: dict) -> tuple[np.ndarray, float]:
    """Per-feature L-infinity radii (D,) in model units and the L2 radius of the box's corner.

    tolerance: {feature: change in its units}, e.g. {"amount": 5.0, "hour": 0.25, "distance_km": 2};
    only ``CONTROLLED`` features may appear; the others get radius 0.
    """
    bad = [f for f in tolerance if f not in CONTROLLED]
    if bad:
        raise ValueError(f"tolerance may only name attacker-controlled features {CONTROLLED}, got {bad}")
    eps = np.zeros(len(FEATURES), dtype=np.float32)
    for f, d in tolerance.items():
        if not d >= 0:
            raise ValueError(f"tolerance for {f} must be >= 0, got {d!r}")
        eps[FEATURES.index(f)] = d / scaler.scale(f)
    return eps, float(np.linalg.norm(eps))


def controlled_mask() -> np.ndarray:
    """(D,) float32: 1 for attacker-controlled features, 0 elsewhere."""
    return np.array([1.0 if f in CONTROLLED else 0.0 for f in FEATURES], dtype=np.float32)


def fraud_mlp(d: int = len(FEATURES), hidden: int = 64):
    """A small MLP for the scaled features (B, D) in [0, 1] -> 2 logits; Sequential, so IBP applies."""
    from torch import nn

    return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))
