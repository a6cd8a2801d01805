"""``python -m course_utils.serving --model PATH [--port 8000] ...``: start the service with uvicorn.

Refuses to start (exit code 2, one line on stderr, no traceback) when an option is out of range,
the API-key file is malformed, or the model file is missing, has a sidecar that does not match the
schema (``modelfile.check_sidecar``) or does not match its SHA-256. Binds to 127.0.0.1 unless
``--host`` says otherwise.

Identity (see ``identity``): clients are known by their peer address; ``--api-keys FILE`` makes
every request carry an issued key (``X-API-Key``) instead, and ``--trusted-proxies`` lists the
reverse proxies whose ``X-Forwarded-For`` names the client (default: none, not even loopback).
``--health-details`` makes ``GET /health`` show the model hash and settings (else only "ok").

Scaling out (issue 35): ``--workers N`` runs N processes on one port (``workers``: each binds it
with SO_REUSEPORT, so the kernel spreads connections over them; a dead worker is restarted).
Their defenses must share state, or a client whose connections land on N workers gets N rate
limits, N partial query histories and N - 1 ways out of quarantine: ``--state redis://HOST:PORT/DB``
keeps the state in Redis (``state.RedisState``); ``--workers`` above 1 without ``--state`` is
refused (``--state local`` states that per-process state is meant, e.g. to demonstrate the hole).
Redis unreachable at start: exit 2 with one line. Connection limits (``limits``):
``--header-timeout``, ``--max-connections`` per worker, ``--keep-alive``. Metrics are served only
on ``--metrics-port`` (127.0.0.1), never on the public port.
"""
from __future__ import annotations

import argparse
import math
import sys

from ..config import cache_dir


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage first)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _checked(kind, low=None, high=None, low_open=False, high_open=False):
    """An argparse ``type``: ``kind`` (int or float), finite, within the range (None: unbounded)."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            v = None
        ok = v is not None and math.isfinite(v) and (low is None or (v > low if low_open else v >= low)) \
            and (high is None or (v < high if high_open else v <= high))
        if not ok:
            rng = (f"{'(' if low_open else '['}{'-inf' if low is None else f'{low:g}'}, "
                   f"{'inf' if high is None else f'{high:g}'}{')' if high_open else ']'}")
            raise argparse.ArgumentTypeError(f"must be a finite {'integer' if kind is int else 'number'} in {rng}, got {text!r}")
        return v
    return parse


def _api_keys(path):
    from .identity import ApiKeys

    try:
        return ApiKeys.load(path)
    except ValueError as e:
        raise argparse.ArgumentTypeError(" ".join(str(e).split())) from None


def _proxies(text):
    from .identity import uvicorn_proxy_settings

    proxies = [t.strip() for t in text.split(",") if t.strip()]
    try:
        uvicorn_proxy_settings(proxies)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return proxies


def parse_args(argv=None):
    from .app import ServiceConfig as d

    p = _Parser(prog="python -m course_utils.serving", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="checkpoint written by serving.export_model (with PATH.json)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_checked(int, 1, 65535), default=8000)
    p.add_argument("--db", default=None, help="SQLite flag log (default: cache_dir()/serving/flags.sqlite)")
    p.add_argument("--no-defense", action="store_true", help="validation and the model only (baseline)")
    p.add_argument("--monitor", action="store_true",
                   help="debugging: log flags but still answer, and tell the client (\"flagged\", X-Flagged)")
    p.add_argument("--threshold", type=_checked(float), default=None, help="squeeze-detector tau (default: from the sidecar)")
    p.add_argument("--sigma", type=_checked(float, 0, 10, low_open=True), default=None,
                   help="answer with the smoothed classifier at this noise level")
    p.add_argument("--smooth-n", type=_checked(int, 1, 100_000), default=d.smooth_n)
    p.add_argument("--smooth-alpha", type=_checked(float, 0, 1, low_open=True, high_open=True), default=d.smooth_alpha)
    p.add_argument("--rate", type=_checked(float, 0, 1e6, low_open=True), default=d.rate, help="requests per second per client")
    p.add_argument("--burst", type=_checked(int, 1, 1_000_000), default=d.burst)
    p.add_argument("--query-k", type=_checked(int, 1, 1000), default=d.query_k)
    p.add_argument("--query-delta", type=_checked(float, 0, 1, low_open=True), default=d.query_delta)
    p.add_argument("--query-window", type=_checked(float, 0, 86_400, low_open=True), default=d.query_window_s)
    p.add_argument("--block-s", type=_checked(float, 0, 86_400 * 30), default=d.block_s)
    p.add_argument("--body-timeout", type=_checked(float, 0, 3600, low_open=True), default=d.body_timeout_s,
                   help="seconds for the whole request body to arrive (else 408)")
    p.add_argument("--max-bytes", type=_checked(int, 1, 100_000_000), default=1_000_000, help="largest upload, bytes")
    p.add_argument("--api-keys", type=_api_keys, default=None, metavar="FILE",
                   help='JSON {"client id": "key", ...}: clients must send X-API-Key and are known by their id')
    p.add_argument("--trusted-proxies", type=_proxies, default=[], metavar="IPS",
                   help="comma-separated proxy addresses or networks allowed to set X-Forwarded-For (default: none)")
    p.add_argument("--health-details", action="store_true", help="GET /health shows the model hash and settings")
    p.add_argument("--no-store-images", action="store_true")
    p.add_argument("--threads", type=_checked(int, 1, 256), default=1, help="torch threads per request")
    p.add_argument("--workers", type=_checked(int, 1, 64), default=1, help="worker processes on the port (>1 needs --state)")
    p.add_argument("--state", default=None, metavar="URL",
                   help="where the rate limit, query histories and quarantine live: redis://HOST:PORT/DB "
                        "(shared by every worker), or local (this process; the default for one worker)")
    p.add_argument("--header-timeout", type=_checked(float, 0, 3600, low_open=True), default=10.0,
                   help="seconds for a request line and its headers to arrive (else the connection is closed)")
    p.add_argument("--max-connections", type=_checked(int, 1, 100_000), default=256,
                   help="open connections per worker; more are answered 503 and closed")
    p.add_argument("--keep-alive", type=_checked(float, 0, 3600, low_open=True), default=5.0,
                   help="seconds an idle kept-alive connection stays open")
    p.add_argument("--metrics-port", type=_checked(int, 1, 65535), default=None,
                   help="serve Prometheus metrics on 127.0.0.1:PORT for the operator (never on the public port)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug", "trace"])
    return p.parse_args(argv)


def refuse(message: str):
    """Print one line and exit with status 2."""
    print(f"refusing to start: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


STATELESS_WORKERS = ("--workers {n} without --state: each worker would keep its own rate limit, query histories "
                     "and quarantine, so a client whose connections land on {n} workers gets {n} token buckets and "
                     "escapes the query-pattern detector and the quarantine; pass --state redis://HOST:PORT/DB "
                     "(shared state), or --state local to accept per-process state knowingly")


def check_args(args):
    """Refusals that need no model: several workers without shared state, a malformed --state."""
    if args.workers > 1 and args.state is None:
        refuse(STATELESS_WORKERS.format(n=args.workers))
    if args.state not in (None, "local") and not args.state.startswith(("redis://", "rediss://")):
        refuse(f"--state must be local or a redis:// or rediss:// URL, got {args.state[:80]!r}")


def build(args, worker=None):
    """(model, sidecar, ServiceConfig, state) from the options; refuses (exit 2, one line) what cannot start.
    A worker (``worker`` set) does not refuse an unreachable Redis: the supervisor checked it at start, and
    a worker restarted while Redis is down must come up and fail closed like the others."""
    import torch

    from .app import MAX_CLIENTS, ServiceConfig
    from .layers import SIGNATURE_SIZE
    from .modelfile import ModelFileError, load_service_model
    from .state import StateUnavailable, make_state
    from .uploads import UploadLimits

    try:
        model, meta = load_service_model(args.model)
    except ModelFileError as e:
        refuse(e)
    torch.set_num_threads(args.threads)
    try:
        config = ServiceConfig(
            db_path=args.db or cache_dir() / "serving" / "flags.sqlite",
            limits=UploadLimits(tuple(meta.get("input_shape", (1, 28, 28))), max_bytes=args.max_bytes),
            defended=not args.no_defense, enforce=not args.monitor, dataset=meta.get("dataset", "mnist"),
            threshold=args.threshold if args.threshold is not None else meta.get("detector_threshold"),
            sigma=args.sigma, smooth_n=args.smooth_n, smooth_alpha=args.smooth_alpha, rate=args.rate, burst=args.burst,
            query_k=args.query_k, query_delta=args.query_delta, query_window_s=args.query_window, block_s=args.block_s,
            body_timeout_s=args.body_timeout, store_images=not args.no_store_images, model_sha256=meta.get("sha256"),
            api_keys=args.api_keys, health_details=args.health_details, worker=worker)
        state = make_state(args.state, config.rate, config.burst, config.query_history, config.query_window_s,
                           config.limits.input_shape[0] * SIGNATURE_SIZE ** 2, MAX_CLIENTS, check=worker is None)
    except StateUnavailable as e:
        refuse(f"cannot reach the state store: {e}")
    except ValueError as e:
        refuse(e)
    return model, meta, config, state


def uvicorn_config(app, args):
    """The ``uvicorn.Config`` keyword arguments of the service (one worker or each of several)."""
    from .identity import uvicorn_proxy_settings
    from .limits import connection_settings

    return dict(app=app, log_level=args.log_level, access_log=False, lifespan="off",
                **connection_settings(args.header_timeout, args.max_connections, args.keep_alive),
                **uvicorn_proxy_settings(args.trusted_proxies))


def main(argv=None) -> int:
    args = parse_args(argv)
    check_args(args)
    model, meta, config, state = build(args)

    from .app import Service, create_app
    from .metrics import serve_metrics

    try:
        service = Service(model, config, state)  # also creates (or migrates) the flag log before any worker starts
    except ValueError as e:
        refuse(e)
    print(f"serving {args.model} (sha256 {str(config.model_sha256)[:12]}...) on http://{args.host}:{args.port} "
          f"defended={config.defended} enforce={config.enforce} "
          f"identity={'api keys' if args.api_keys else 'peer address'} log={config.db_path} "
          f"workers={args.workers} state={state}"
          + (f" metrics=http://127.0.0.1:{args.metrics_port}/metrics" if args.metrics_port else ""), flush=True)
    if args.workers > 1:
        from .workers import supervise

        service.store.close()
        return supervise(args)
    import uvicorn

    if args.metrics_port:
        try:
            serve_metrics(service.metrics.registry, args.metrics_port)
        except OSError as e:
            refuse(f"--metrics-port {args.metrics_port}: {e}")
    uvicorn.Server(uvicorn.Config(**uvicorn_config(create_app(service), args), host=args.host, port=args.port)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
