"""A defended image-classification API (project p4, notebook ``projects/p4_secure_image_api``).

``python -m course_utils.serving --model PATH`` serves ``POST /predict``, ``GET /health`` and
``GET /metrics`` on 127.0.0.1. Modules: ``uploads`` (upload checks), ``identity`` (who a client
is: peer address or API key), ``layers`` (squeeze detector, smoothed classifier, query-pattern
detector), ``ratelimit``, ``store`` (SQLite flag log), ``metrics`` (Prometheus), ``modelfile``
(safe model files, sidecar schema), ``app`` (FastAPI), ``client`` (start the service in a
subprocess and call it; hostile-client helpers for ``benchmarks/api_security.py``). FastAPI, uvicorn and httpx are imported only
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
