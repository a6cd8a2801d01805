"""A hostile-client probe of the p4 image API (issue 17), on loopback only, bounded in time and count.

    COURSE_DATA_DIR=../shared/data python benchmarks/api_security.py [--model PATH] [--tiny]

Starts ``python -m course_utils.serving`` on 127.0.0.1 (a free port each; three times with ``--tiny``) and runs:

1. malformed uploads (``client.hostile_uploads`` and a few more): every answer must be a 4xx, no 5xx;
2. the Sybil test: ``--sybil`` requests, each with a new ``X-Client-ID`` and ``X-Forwarded-For``, at
   ``--rate 2 --burst 5``: answered at most as often as one client's token bucket allows;
3. the disk-fill test: a chunked multipart upload (no Content-Length) of 20 x the byte cap, with the
   service's ``TMPDIR`` polled every few milliseconds: 413, and temporary bytes at most the cap;
4. the decoding-stall test: four clients send the heaviest upload the limits accept
   (``client.heaviest_png``: a 16-bit noise PNG at the pixel cap) for ``--stall-s`` seconds while
   ``GET /health`` is timed: p95 under 100 ms;
5. kill -9 durability: one client repeats one image (the query-pattern layer flags it), then the
   service gets SIGKILL: every flagged answer the client received has its row in the flag log;
6. slow headers (issue 35): ``--slow`` connections that send one header line every 0.5 s to a
   service started with ``--header-timeout 2``: each closed within the timeout (plus 1 s);
7. ``/metrics`` asked by a client on the public port: 404 (the operator's port is separate);
8. multi-worker rows (issue 35; they need ``redis-server``, else they say so): a client opening a new
   connection per request (``--rotation`` requests) against 4 workers at ``--rate 2 --burst 5``, with
   per-process state (``--state local``: informative, the hole) and with ``--state redis``
   (limited like one client); throughput of ``--requests`` distinct images from 8 client threads
   with 1 and with 4 workers (both with Redis state); the Redis round trip per request
   (``allow`` + history push + quarantine check, timed in this process against the local state).

Prints one markdown table (check, measured, target, pass; "-" for an informative row) and exits 1
if a check failed. Without
``--model`` it serves an untrained seeded CNN whose squeeze threshold is calibrated on 32 MNIST test
images (the probe tests the service, not the model). Latencies depend on the machine: state it
next to the numbers (the load generator shares the CPU with the service).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from course_utils import data, models
from course_utils.config import seed_everything
from course_utils.serving import export_model
from course_utils.serving.app import MULTIPART_OVERHEAD
from course_utils.serving.client import (ApiClient, RedisServer, ServiceProcess, chunked_upload, flagged, heaviest_png,
                                         hostile_uploads, redis_server_binary, slow_header_clients, stalled_upload)
from course_utils.serving.state import LocalState, RedisState
from course_utils.serving.store import read_flags
from course_utils.serving.uploads import UploadLimits, encode_png

HEALTH_P95_MS = 100.0  # target: /health p95 while the heaviest uploads decode


def dir_bytes(path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:  # removed while we looked
                pass
    return total


def probe_malformed(url, good_png) -> tuple[str, bool]:
    cases = dict(hostile_uploads(good_png))
    cases["raw png declared as jpeg"] = (good_png, "image/jpeg")
    statuses = {}
    with ApiClient(url, "prober") as c:
        for name, (payload, ctype) in cases.items():
            statuses[name] = c.predict(data=payload, content_type=ctype)[0]
        statuses["text body"] = c.http.post("/predict", content=b"hello", headers={"Content-Type": "text/plain"}).status_code
    statuses["stalled body (408)"] = stalled_upload(url, declared_bytes=10_000, sent_bytes=100, timeout=30)[0] or 0
    n5 = sum(s >= 500 for s in statuses.values())
    n4 = sum(400 <= s < 500 for s in statuses.values())
    odd = [k for k, s in statuses.items() if not 400 <= s < 500]
    return f"{len(statuses)} uploads: {n4} 4xx, {n5} 5xx" + (f" (not 4xx: {odd})" if odd else ""), n4 == len(statuses)


def probe_disk(url, tmpdir, cap) -> tuple[str, bool]:
    peak, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], dir_bytes(tmpdir))
            time.sleep(0.005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        status, sent = chunked_upload(url, 20 * cap, multipart=True)
    finally:
        stop.set()
        t.join()
    return (f"chunked {20 * cap / 1e6:.1f} MB: HTTP {status}, {sent / 1e6:.2f} MB sent before the answer, "
            f"peak temp files {peak[0]:,} B (cap {cap:,} B)"), status == 413 and peak[0] <= cap


def probe_stall(url, heavy, seconds, clients=4) -> tuple[str, bool, float]:
    stop = threading.Event()
    sent = []

    def sender(k):
        with ApiClient(url, f"heavy-{k}", timeout=60) as c:
            while not stop.is_set():
                sent.append(c.predict(data=heavy)[0])

    lat = []
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(sender, k) for k in range(clients)]
        time.sleep(0.5)  # the uploads are decoding
        with httpx.Client(base_url=url, timeout=30) as http:
            t_end = time.monotonic() + seconds
            while time.monotonic() < t_end:
                t0 = time.perf_counter()
                http.get("/health")
                lat.append(time.perf_counter() - t0)
                time.sleep(0.02)
        stop.set()
        for f in futures:
            f.result()
    p95 = float(np.percentile(np.array(lat) * 1e3, 95))
    n5 = sum(s >= 500 for s in sent)
    return (f"{clients} clients, {len(sent)} uploads of {len(heavy) / 1e3:.0f} KB ({n5} 5xx); /health p95 {p95:.1f} ms, "
            f"max {max(lat) * 1e3:.1f} ms (n={len(lat)})"), p95 < HEALTH_P95_MS and n5 == 0, p95


def probe_sybil(model, db, png, n) -> tuple[str, bool]:
    rate, burst = 2.0, 5
    with ServiceProcess(model, db, args=["--rate", str(rate), "--burst", str(burst), "--monitor"]) as svc:
        with httpx.Client(base_url=svc.url, timeout=30) as http:
            t0 = time.monotonic()
            codes = [http.post("/predict", files={"file": ("a.png", png, "image/png")},
                               headers={"X-Client-ID": f"sybil-{i}", "X-Forwarded-For": f"10.0.{i % 250}.1"}).status_code
                     for i in range(n)]
            elapsed = time.monotonic() - t0
    one_client = burst + int(rate * elapsed) + 1
    answered = codes.count(200)
    return (f"{n} requests under {n} names in {elapsed:.1f} s at --rate {rate:g} --burst {burst}: {answered} answered, "
            f"{codes.count(429)} x 429 (one client: at most {one_client})"), answered <= one_client


def probe_kill(model, db, image, n) -> tuple[str, bool]:
    acked = []
    with ServiceProcess(model, db, args=["--rate", "1000", "--burst", "1000", "--query-k", "2"]) as svc:
        with ApiClient(svc.url, "victim") as c:
            for _ in range(n):
                status, body = c.predict(image)
                if flagged(body):
                    acked.append(body["request_id"])
        svc.kill()
        killed = svc.proc.returncode == -9
    logged = set(read_flags(db)["request_id"])
    missing = [r for r in acked if r not in logged]
    return (f"SIGKILL after {n} requests: {len(acked)} flagged answers, {len(acked) - len(missing)} in the log"
            + ("" if killed else " (the service was not killed)"), killed and len(acked) > 0 and not missing)


def probe_slow_headers(url, n, timeout_s) -> tuple[str, bool]:
    closed = slow_header_clients(url, n, interval_s=0.5, duration_s=timeout_s + 4)
    cut = [c for c in closed if c is not None]
    worst = max(cut) if cut else float("nan")
    return (f"{n} connections, a header line every 0.5 s, --header-timeout {timeout_s:g}: {len(cut)} closed, "
            f"the last after {worst:.1f} s"), len(cut) == n and worst <= timeout_s + 1


def probe_public_metrics(url) -> tuple[str, bool]:
    status = httpx.get(url + "/metrics", timeout=30).status_code
    return f"GET /metrics on the public port: HTTP {status}", status == 404


def new_connection_posts(url, pngs):
    codes = []
    for png in pngs:
        with httpx.Client(base_url=url, timeout=30) as http:
            codes.append(http.post("/predict", files={"file": ("a.png", png, "image/png")}).status_code)
    return codes


def probe_rotation(model, db, pngs, state, workers=4) -> tuple[str, bool]:
    rate, burst = 2.0, 5
    with ServiceProcess(model, db, args=["--workers", workers, "--state", state, "--rate", rate, "--burst", burst]) as svc:
        t0 = time.monotonic()
        codes = new_connection_posts(svc.url, pngs)
        elapsed = time.monotonic() - t0
    one_client = burst + int(rate * elapsed) + 1
    answered = codes.count(200)
    return (f"{len(pngs)} requests, a new connection each, in {elapsed:.1f} s at --rate {rate:g} --burst {burst}: "
            f"{answered} answered (one client: at most {one_client})"), answered <= one_client


def probe_throughput(model, db, pngs, workers, state, clients=8) -> str:
    high = ["--rate", "1000000", "--burst", "1000000"]
    with ServiceProcess(model, db, args=["--workers", workers, "--state", state, *high]) as svc:
        def send(k):
            out = []
            with ApiClient(svc.url, timeout=60) as c:
                for png in pngs[k::clients]:
                    t0 = time.perf_counter()
                    out.append((c.predict(data=png)[0], time.perf_counter() - t0))
            return out

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(send, range(clients)))  # warm-up: every connection, every worker
            t0 = time.perf_counter()
            res = [r for rs in pool.map(send, range(clients)) for r in rs]
            wall = time.perf_counter() - t0
    lat = np.array([r[1] for r in res]) * 1e3
    n5 = sum(r[0] >= 500 for r in res)
    return (f"{len(res)} requests from {clients} clients: {len(res) / wall:.1f} req/s, p50 {np.percentile(lat, 50):.1f} ms, "
            f"p95 {np.percentile(lat, 95):.1f} ms, {n5} 5xx")


def probe_redis_cost(url, x, n) -> str:
    from course_utils.serving.layers import image_signature

    sigs = image_signature(x)
    per = {}
    for name, state in (("local", LocalState(1e6, 1_000_000, 100, 60.0, sigs.shape[1])),
                        ("redis", RedisState(url, 1e6, 1_000_000, 100, 60.0, sigs.shape[1], prefix="probe").connect())):
        t0 = time.perf_counter()
        for i in range(n):
            client = f"c{i % 50}"
            state.allow(client)
            state.histories.push(client, sigs[i % len(sigs)])
            state.blocked(client)
        per[name] = (time.perf_counter() - t0) / n * 1e3
    return (f"state calls of one request (bucket + history of up to 100 + quarantine), {n} requests, 50 clients: "
            f"local {per['local']:.3f} ms, Redis {per['redis']:.3f} ms (3 round trips; +{per['redis'] - per['local']:.3f} ms)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="a file written by serving.export_model (default: an untrained CNN)")
    ap.add_argument("--stall-s", type=float, default=5.0, help="seconds of heavy uploads while /health is timed")
    ap.add_argument("--sybil", type=int, default=20, help="requests of the identity-rotating client")
    ap.add_argument("--kill-requests", type=int, default=8, help="requests before the kill -9")
    ap.add_argument("--slow", type=int, default=200, help="slow-header connections")
    ap.add_argument("--rotation", type=int, default=40, help="requests of the client rotating over workers")
    ap.add_argument("--requests", type=int, default=400, help="requests of each throughput row")
    ap.add_argument("--redis-calls", type=int, default=2000, help="requests timed for the Redis round trip")
    ap.add_argument("--tiny", action="store_true",
                    help="a quick run (tests): 1 s of stall, 10 Sybil requests, 20 slow connections, no multi-worker "
                         "rows (tests/test_serving_scale.py covers them)")
    args = ap.parse_args(argv)
    if args.tiny:
        args.stall_s, args.sybil, args.kill_requests, args.slow = 1.0, 10, 4, 20
    x, _ = data.subset_tensors(data.load_dataset("mnist", "test"), max(40, args.rotation + 36, args.requests), seed=0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="api_security_") as work:
        work = Path(work)
        model = args.model
        if model is None:
            seed_everything(0)
            model = work / "model.pt"
            export_model(models.mnist_small_cnn().eval(), model, "mnist_small_cnn", x_calib=x[:32], fpr=0.25)
        limits = UploadLimits()  # the service's defaults for a (1, 28, 28) model
        tmpdir = work / "tmp"
        tmpdir.mkdir()
        with ServiceProcess(model, work / "main.sqlite", args=["--rate", "1000000", "--burst", "1000000",
                                                                "--body-timeout", "2", "--header-timeout", "2"],
                            env={"TMPDIR": str(tmpdir)}) as svc:
            rows.append(("malformed uploads", *probe_malformed(svc.url, encode_png(x[33])), "every one a 4xx, 0 5xx"))
            rows.append(("disk fill (chunked upload)", *probe_disk(svc.url, tmpdir, limits.max_bytes + MULTIPART_OVERHEAD),
                         "413; temp bytes <= cap"))
            rows.append(("/metrics for the operator only", *probe_public_metrics(svc.url), "404 on the public port"))
            heavy = heaviest_png(limits.max_pixels, limits.max_bytes)
            measured, ok, _ = probe_stall(svc.url, heavy, args.stall_s)
            rows.append(("decoding stall", measured, ok, f"/health p95 < {HEALTH_P95_MS:g} ms, 0 5xx"))
            rows.append(("slow headers (slowloris)", *probe_slow_headers(svc.url, args.slow, 2.0),
                         "each closed within the header timeout + 1 s"))
        rows.append(("Sybil (rotating X-Client-ID, X-Forwarded-For)", *probe_sybil(model, work / "sybil.sqlite", encode_png(x[35]), args.sybil),
                     "limited like one client"))
        rows.append(("kill -9 durability", *probe_kill(model, work / "kill.sqlite", x[34], args.kill_requests),
                     "every acknowledged flag in the log"))
        rotation = [encode_png(xi) for xi in x[36:36 + args.rotation]]
        pngs = [encode_png(xi) for xi in x[:args.requests]]
        if args.tiny:  # tests/test_serving_scale.py tests what these rows measure
            pass
        elif redis_server_binary() is None:
            for name in ("rotation across 4 workers, per-process state", "rotation across 4 workers, Redis state",
                         "Redis round trip per request"):
                rows.append((name, "not run: redis-server is not installed (apt-get install redis-server)", None, "-"))
        else:
            with RedisServer() as redis:
                measured, ok = probe_rotation(model, work / "rot_local.sqlite", rotation, "local")
                rows.append(("rotation across 4 workers, per-process state", measured + (" (more than one client)" if not ok else ""),
                             None, "informative: the hole shared state closes"))
                rows.append(("rotation across 4 workers, Redis state",
                             *probe_rotation(model, work / "rot_redis.sqlite", rotation, redis.url), "limited like one client"))
                for n in (1, 4):
                    rows.append((f"throughput, {n} worker{'s' if n > 1 else ''} (Redis state)",
                                 probe_throughput(model, work / f"tp{n}.sqlite", pngs, n, redis.url), None, "informative"))
                rows.append(("Redis round trip per request", probe_redis_cost(redis.url, x[:32], args.redis_calls), None,
                             "informative"))
    print(f"\nAPI security probe, loopback; {platform.machine()}, {os.cpu_count()} CPUs shared by client and service\n")
    print("| check | measured | target | pass |")
    print("| --- | --- | --- | --- |")
    for name, measured, ok, target in rows:
        print(f"| {name} | {measured} | {target} | {'-' if ok is None else 'yes' if ok else 'NO'} |")
    return 0 if all(ok is not False for _, _, ok, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
