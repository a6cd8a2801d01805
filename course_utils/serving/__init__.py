"""A defended image-classification API (project p4, notebook ``projects/p4_secure_image_api``).

``python -m course_utils.serving --model PATH`` serves ``POST /predict`` and ``GET /health`` on
127.0.0.1 (metrics on the operator's ``--metrics-port``). Modules: ``uploads`` (upload checks),
``identity`` (who a client is: peer address or API key), ``layers`` (squeeze detector, smoothed
classifier, query-pattern detector), ``ratelimit``, ``state`` (where the rate limit, query
histories and quarantine live: this process, or Redis shared by several workers), ``store``
(SQLite flag log), ``metrics`` (Prometheus), ``modelfile`` (safe model files, sidecar schema),
``limits`` (header timeout, connection cap), ``app`` (FastAPI), ``workers`` (``--workers N`` on one
port), ``client`` (start the service or a throwaway Redis in a subprocess and call it;
hostile-client helpers for ``benchmarks/api_security.py``). FastAPI, uvicorn and httpx are imported only
when ``app`` / ``client`` are used, so ``course_utils.checks`` does not need them.
"""
_LAZY = {"Service": "app", "ServiceConfig": "app", "create_app": "app", "ModelFileError": "modelfile",
         "course_model": "modelfile", "export_model": "modelfile", "load_service_model": "modelfile"}
__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
