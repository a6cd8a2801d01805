"""``python -m course_utils.serving --model PATH [--port 8000] ...``: start the service with uvicorn.

Refuses to start (exit code 2, message on stderr) when the model file is missing, has no checksum
sidecar or does not match its SHA-256. Binds to 127.0.0.1 unless ``--host`` says otherwise.
"""
from __future__ import annotations

import argparse
import sys

from ..config import cache_dir


def parse_args(argv=None):
    d = __import__("course_utils.serving.app", fromlist=["ServiceConfig"]).ServiceConfig
    p = argparse.ArgumentParser(prog="python -m course_utils.serving", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="checkpoint written by serving.export_model (with PATH.json)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--db", default=None, help="SQLite flag log (default: cache_dir()/serving/flags.sqlite)")
    p.add_argument("--no-defense", action="store_true", help="validation and the model only (baseline)")
    p.add_argument("--monitor", action="store_true", help="log flags but still answer (no rejections or blocks)")
    p.add_argument("--threshold", type=float, default=None, help="squeeze-detector tau (default: from the sidecar)")
    p.add_argument("--sigma", type=float, default=None, help="answer with the smoothed classifier at this noise level")
    p.add_argument("--smooth-n", type=int, default=d.smooth_n)
    p.add_argument("--smooth-alpha", type=float, default=d.smooth_alpha)
    p.add_argument("--rate", type=float, default=d.rate, help="requests per second per client")
    p.add_argument("--burst", type=int, default=d.burst)
    p.add_argument("--query-k", type=int, default=d.query_k)
    p.add_argument("--query-delta", type=float, default=d.query_delta)
    p.add_argument("--query-window", type=float, default=d.query_window_s)
    p.add_argument("--block-s", type=float, default=d.block_s)
    p.add_argument("--max-bytes", type=int, default=1_000_000)
    p.add_argument("--no-store-images", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch threads per request")
    p.add_argument("--log-level", default="warning")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import uvicorn

    from .app import Service, ServiceConfig, create_app
    from .modelfile import ModelFileError, load_service_model
    from .uploads import UploadLimits

    try:
        model, meta = load_service_model(args.model)
    except ModelFileError as e:
        print(f"refusing to start: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))
    config = ServiceConfig(
        db_path=args.db or cache_dir() / "serving" / "flags.sqlite",
        limits=UploadLimits(tuple(meta.get("input_shape", (1, 28, 28))), max_bytes=args.max_bytes),
        defended=not args.no_defense, enforce=not args.monitor, dataset=meta.get("dataset", "mnist"),
        threshold=args.threshold if args.threshold is not None else meta.get("detector_threshold"),
        sigma=args.sigma, smooth_n=args.smooth_n, smooth_alpha=args.smooth_alpha, rate=args.rate, burst=args.burst,
        query_k=args.query_k, query_delta=args.query_delta, query_window_s=args.query_window, block_s=args.block_s,
        store_images=not args.no_store_images, model_sha256=meta.get("sha256"))
    try:
        service = Service(model, config)
    except ValueError as e:
        print(f"refusing to start: {e}", file=sys.stderr)
        return 2
    print(f"serving {args.model} (sha256 {str(config.model_sha256)[:12]}...) on http://{args.host}:{args.port} "
          f"defended={config.defended} enforce={config.enforce} log={config.db_path}", flush=True)
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
