"""Project p3, a certified fraud model gated in CI: the data, the feature scaler, the model, the gate.

- ``data``: synthetic card transactions (``make_transactions``), ``FeatureScaler``, ``threat_radii``,
  ``controlled_mask`` (the features an attacker controls), ``fraud_mlp``.
- ``gate``: the promotion gate (``python -m course_utils.fraud.gate``, alias ``python -m course_utils.gate``).
"""
from .data import (CATEGORIES, NUMERIC, FEATURES, CONTROLLED, UNITS, make_transactions, FeatureScaler,
    threat_radii, controlled_mask, fraud_mlp)
from . import gate  # noqa: E402,F401  (the promotion gate)
