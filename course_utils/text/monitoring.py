"""Layer 3: every request logged with its flags; flag and repair rates as Prometheus metrics.

``RequestMonitor.record(result)`` counts the request in ``prometheus_client`` counters
(``sentiment_requests_total``, ``sentiment_flagged_total{flag=...}``, ``sentiment_sanitized_total``)
on its own ``CollectorRegistry`` (so re-running a notebook cell does not clash with the global one),
and appends a log entry (time, length, SHA-256 prefix of the text, label, confidence, flags).
``rates(window)`` gives the rolling flagged / sanitized rates that an alert rule watches; a web
service exposes ``exposition()`` at ``/metrics`` for Prometheus to scrape.
"""
from __future__ import annotations

import hashlib
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, generate_latest


class RequestMonitor:
    """Counters + a bounded request log for a ``DefendedPipeline``."""

    def __init__(self, registry: CollectorRegistry | None = None, log_size: int = 100_000):
        self.registry = registry or CollectorRegistry()
        self.requests = Counter("sentiment_requests", "Requests classified", registry=self.registry)
        self.flagged = Counter("sentiment_flagged", "Requests flagged, by flag", ["flag"], registry=self.registry)
        self.sanitized = Counter("sentiment_sanitized", "Requests the spell-checker changed", registry=self.registry)
        self.log = deque(maxlen=log_size)

    def record(self, text: str, result: dict) -> dict:
        """Count one answered request and log it; returns the log entry."""
        self.requests.inc()
        for flag in result["flags"]:
            self.flagged.labels(flag=flag).inc()
        if "sanitized" in result["flags"]:
            self.sanitized.inc()
        entry = {"time": time.time(), "chars": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
                 "label": result["label"], "confidence": result["confidence"], "certified": result["certified"],
                 "flags": tuple(result["flags"])}
        self.log.append(entry)
        return entry

    def value(self, counter, **labels) -> float:
        """Current value of a counter (optionally one label set)."""
        name = counter._name + "_total"
        return self.registry.get_sample_value(name, labels or None) or 0.0

    def rates(self, window: int = 50, min_periods: int = 1):
        """DataFrame, one row per logged request: rolling rate of any flag, of 'sanitized' and of 'out_of_distribution'
        over the last ``window`` requests (NaN until ``min_periods`` requests have been seen)."""
        import pandas as pd

        df = pd.DataFrame({"flagged": [bool(e["flags"]) for e in self.log],
                           "sanitized": ["sanitized" in e["flags"] for e in self.log],
                           "out_of_distribution": ["out_of_distribution" in e["flags"] for e in self.log]}, dtype=float)
        return df.rolling(window, min_periods=min_periods).mean()

    def alerts(self, threshold: float, window: int = 50, column: str = "flagged"):
        """Request indices at which the rolling ``column`` rate first crosses ``threshold`` (rising edges),
        judged on full windows only, so that the first few requests cannot raise an alert on their own."""
        above = (self.rates(window, min_periods=window)[column] > threshold).to_numpy()
        return [i for i in range(len(above)) if above[i] and (i == 0 or not above[i - 1])]

    def exposition(self) -> str:
        """The metrics in Prometheus' text format (what ``/metrics`` serves)."""
        return generate_latest(self.registry).decode()
