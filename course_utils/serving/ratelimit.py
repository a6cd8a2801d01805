"""Per-client rate limits: a token bucket per client id (project p4).

Each client holds up to ``burst`` tokens, refilled at ``rate`` tokens per second; a request spends
one token or is refused (HTTP 429 with ``Retry-After``). Rate limits slow a query-based attack
(HopSkipJump needs thousands of queries per image) and cap the cost of a flood; they are per
client, so an attacker with many identities (a Sybil attack) needs the query-pattern layer and
authentication too. Memory is bounded: the least recently seen clients are dropped first.
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict


class TokenBucketLimiter:
    """``allow(client) -> (allowed, retry_after_s)``; thread-safe. rate: tokens/s, burst: bucket size."""

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000, clock=time.monotonic):
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a finite number of requests per second > 0, got {rate!r}")
        if not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an integer >= 1, got {burst!r}")
        self.rate, self.burst, self.max_clients, self.clock = float(rate), burst, max_clients, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, last time)
        self._lock = threading.Lock()

    def allow(self, client: str) -> tuple[bool, float]:
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return allowed, 0.0 if allowed else (1.0 - tokens) / self.rate
