"""Prometheus metrics of the service (project p4), in a registry of its own per app.

``requests_total{status}``, ``flags_total{layer}`` (squeeze, query_pattern, quarantine),
``abstentions_total``, ``rate_limited_total`` and the ``request_latency_seconds`` histogram of
``/predict``. The flagged rate an operator watches is ``rate(flagged_requests_total[5m]) /
rate(requests_total[5m])`` in PromQL; ``scrape`` reads the counters back from a metrics page.

Who sees them: the operator only. Counters tell an attacker when its requests start being flagged
(a cheap oracle for tuning an adaptive attack) and how busy the service is, so the public port
serves no ``/metrics``; ``serve_metrics`` serves them on a separate port bound to 127.0.0.1
(``--metrics-port``; a Prometheus scraper on the same host, or an SSH tunnel). With several
worker processes each counts in its own file under ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
multiprocess mode) and ``multiprocess_registry`` sums them, so one scrape covers every worker.
``register_operator_url`` / ``operator_metrics_url``: the metrics address of a service this Python
process started (``client.ServiceProcess``), which ``client.ApiClient.metrics`` reads.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

METRICS_HOST = "127.0.0.1"  # the operator's port is never bound elsewhere
_OPERATOR_URLS: dict[str, str] = {}  # service url -> its metrics url, for services this process started

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self, prefix: str = "imageapi"):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(f"{prefix}_requests", "Requests to /predict by HTTP status", ["status"], registry=r)
        self.flagged = Counter(f"{prefix}_flagged_requests", "Requests flagged by at least one layer", registry=r)
        self.flags = Counter(f"{prefix}_flags", "Flags raised, by defense layer", ["layer"], registry=r)
        self.abstentions = Counter(f"{prefix}_abstentions", "Smoothed-classifier abstentions", registry=r)
        self.rate_limited = Counter(f"{prefix}_rate_limited", "Requests refused by the rate limit", registry=r)
        self.latency = Histogram(f"{prefix}_request_latency_seconds", "Latency of /predict", registry=r,
                                 buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def scrape(text: str, prefix: str = "imageapi") -> dict:
    """Counter totals from a /metrics page: {"requests": {status: n}, "flagged": n, "flags": {layer: n}, ...}."""
    out = {"requests": {}, "flags": {}, "flagged": 0.0, "abstentions": 0.0, "rate_limited": 0.0}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if not s.name.endswith("_total"):
                continue
            name = s.name[len(prefix) + 1:-len("_total")]
            if name == "requests":
                out["requests"][s.labels["status"]] = s.value
            elif name == "flags":
                out["flags"][s.labels["layer"]] = s.value
            elif name == "flagged_requests":
                out["flagged"] = s.value
            elif name in out:
                out[name] = s.value
    out["total"] = sum(out["requests"].values())
    return out


def multiprocess_registry(path) -> CollectorRegistry:
    """A registry that sums the counters of every worker process writing under ``path``."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(path))
    return registry


def serve_metrics(registry: CollectorRegistry, port: int):
    """Serve ``registry`` as ``GET /metrics`` on 127.0.0.1:``port`` in a daemon thread; returns the
    server (``shutdown()`` stops it). Raises ``OSError`` when the port is taken."""
    from prometheus_client import start_http_server

    server, _ = start_http_server(port, addr=METRICS_HOST, registry=registry)
    return server


def register_operator_url(service_url: str, metrics_url: str | None):
    if metrics_url is None:
        _OPERATOR_URLS.pop(service_url.rstrip("/"), None)
    else:
        _OPERATOR_URLS[service_url.rstrip("/")] = metrics_url


def operator_metrics_url(service_url: str) -> str | None:
    """The metrics page of the service at ``service_url`` if this process started it, else None."""
    return _OPERATOR_URLS.get(str(service_url).rstrip("/"))
