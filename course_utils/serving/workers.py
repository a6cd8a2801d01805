"""Several worker processes on one port (``python -m course_utils.serving --workers N``; project p4).

``supervise(args)`` starts N workers and keeps them running. They are forked from one
``multiprocessing`` fork server that has imported torch and the service once (a clean,
single-threaded process: forking the supervisor itself, whose threads serve the metrics, is not
safe), so a worker starts, or restarts, in about the time it takes to load the model. Each worker
loads the model, connects to the shared state (``--state``) and binds the port with
``SO_REUSEPORT``, so the kernel spreads incoming connections over the workers by a hash of each
connection's addresses and ports (a client opening a new connection per request lands on a new
worker most of the time). A worker that dies (``kill -9``, a crash) is restarted; the others keep
serving, and its acknowledged flags are already committed to the shared SQLite log (``store``).
SIGTERM or SIGINT stops every worker. Each worker counts its metrics in its own file under a
``PROMETHEUS_MULTIPROC_DIR`` created here; ``--metrics-port`` serves their sum on 127.0.0.1.

SO_REUSEPORT lets any process of the same user join the port's group and receive a share of the
connections: run the service as its own user. Workers die with the supervisor (Linux: a
parent-death signal).
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

PRELOAD = ["torch", "sympy", "torch._prims", "torch._refs", "torch._decomp", "torch._dynamo",  # the model file's
           "course_utils.serving.app", "course_utils.serving.modelfile", "course_utils.serving.__main__",  # meta-device
           "course_utils.serving.workers"]  # check imports the torch ones lazily: seconds per worker otherwise
RESTART_PAUSE_S = 1.0  # wait before restarting a worker that died
MAX_QUICK_DEATHS = 5  # workers that died within QUICK_S of their start, in a row: give up
QUICK_S = 5.0


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port) with SO_REUSEPORT, for one worker."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _die_with_parent():
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def run_worker(args, index: int):
    """One worker: the service of ``args`` (parsed options) on a SO_REUSEPORT socket of the port."""
    if sys.platform.startswith("linux"):
        _die_with_parent()
    import uvicorn

    from .__main__ import build, uvicorn_config
    from .app import Service, create_app

    model, _, config, state = build(args, worker=index)
    service = Service(model, config, state)
    sock = reuseport_socket(args.host, args.port)
    print(f"worker {index} (pid {os.getpid()}) listening", flush=True)
    uvicorn.Server(uvicorn.Config(**uvicorn_config(create_app(service), args))).run(sockets=[sock])


def supervise(args) -> int:
    """Run ``args.workers`` workers until SIGTERM / SIGINT; restart any that dies. Returns the exit status."""
    from .__main__ import refuse

    if not hasattr(socket, "SO_REUSEPORT"):
        refuse("--workers needs SO_REUSEPORT (Linux, macOS, BSD)")
    try:  # the port must be free for a SO_REUSEPORT group, checked once here
        reuseport_socket(args.host, args.port).close()
    except OSError as e:
        refuse(f"cannot listen on {args.host}:{args.port}: {e}")
    metrics_dir = tempfile.mkdtemp(prefix="imageapi_metrics_")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the workers (spawned after this)
    if args.metrics_port:
        from .metrics import multiprocess_registry, serve_metrics

        try:
            serve_metrics(multiprocess_registry(metrics_dir), args.metrics_port)
        except OSError as e:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            refuse(f"--metrics-port {args.metrics_port}: {e}")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))

    def start(i):
        p = ctx.Process(target=run_worker, args=(args, i), name=f"imageapi-worker-{i}")
        p.start()
        return p, time.monotonic()

    workers = [start(i) for i in range(args.workers)]
    quick_deaths, status = 0, 0
    try:
        while not stopping:
            time.sleep(0.2)
            for i, (p, started) in enumerate(workers):
                if p.is_alive() or stopping:
                    continue
                code = p.exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                if code == 2:  # refused to start (one line on stderr already): the others would too
                    print(f"worker {i} (pid {p.pid}) refused to start; stopping", flush=True)
                    stopping.append(True)
                    status = 2
                    break
                quick_deaths = quick_deaths + 1 if time.monotonic() - started < QUICK_S else 0
                if quick_deaths >= MAX_QUICK_DEATHS:
                    print(f"workers keep dying right after their start ({how}); stopping", flush=True)
                    stopping.append(True)
                    status = 1
                    break
                print(f"worker {i} (pid {p.pid}) died ({how}); restarting it", flush=True)
                time.sleep(RESTART_PAUSE_S)
                workers[i] = start(i)
    finally:
        for p, _ in workers:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + 10
        for p, _ in workers:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return status
