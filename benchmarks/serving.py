"""Throughput and latency of the p4 image API on loopback, with and without the defense layers.

    COURSE_DATA_DIR=../shared/data python benchmarks/serving.py [--requests 300] [--clients 4]

Serves the quick-profile model of notebook p4 (``serving.course_model``, loaded from the cache the
notebook writes, else trained here) three ways, each in its own ``python -m course_utils.serving``
process on 127.0.0.1:

- bare: upload validation + the model (``--no-defense``);
- layers: + rate limit (set high enough never to refuse), query-pattern detector, feature-squeezing
  detector (3 forward passes per request), SQLite log of flagged requests, enforce mode;
- layers + smoothing: + the smoothed classifier (sigma 0.25, ``--smooth-n`` noise samples).

``--clients`` threads send ``--requests`` distinct clean test images in all (PNG, multipart), after
a warm-up; on loopback they are one client to the service (its identity is the peer address), which
the high rate limit never refuses. Reports requests per second, p50 / p95 latency and the ratio to
bare. The load generator shares the CPU with the service; on a shared machine the numbers are inflated.
Target: the layers cost at most half the throughput of the bare service (ratio >= 0.5).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from course_utils import data
from course_utils.config import cache_dir, get_device
from course_utils.serving import course_model, export_model
from course_utils.serving.client import ApiClient, ServiceProcess
from course_utils.serving.uploads import encode_png


def run_load(url, pngs, clients):
    """Send every PNG once, split over ``clients`` threads; returns (wall seconds, latencies s, statuses)."""
    def worker(k):
        out = []
        with ApiClient(url, f"bench-{k}") as c:
            for png in pngs[k::clients]:
                t0 = time.perf_counter()
                status, _ = c.predict(data=png)
                out.append((time.perf_counter() - t0, status))
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        res = [r for rs in pool.map(worker, range(clients)) for r in rs]
    return time.perf_counter() - t0, np.array([r[0] for r in res]), [r[1] for r in res]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--smooth-n", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)

    test = data.load_dataset("mnist", "test")
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))
    x_calib, _ = test.tensors(perm[:500])
    x, _ = test.tensors(perm[500:500 + args.requests + 20])
    pngs = [encode_png(xi) for xi in x]
    device = get_device()  # trains here if not cached; the service process loads the exported file itself
    model, arch_kwargs = course_model("quick", device=device)
    path = cache_dir() / "p4" / "bench_model.pt"
    export_model(model.eval(), path, "mnist_small_cnn", "mnist", x_calib=x_calib.to(device), fpr=0.05,
                 meta={"profile": "quick"}, architecture_kwargs=arch_kwargs)

    high = ["--rate", "1000000", "--burst", "1000000"]
    configs = {"bare (validation + model)": ["--no-defense"],
               "layers (+ rate limit, query pattern, squeeze, log)": high,
               f"layers + smoothing (sigma 0.25, n={args.smooth_n})": high + ["--sigma", "0.25", "--smooth-n", str(args.smooth_n)]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in configs.items():
            with ServiceProcess(path, Path(tmp) / f"{len(rows)}.sqlite", args=extra) as svc:
                run_load(svc.url, pngs[:20], args.clients)  # warm-up
                wall, lat, statuses = run_load(svc.url, pngs[20:], args.clients)
            bad = sum(s >= 500 for s in statuses)
            rows.append((name, len(lat) / wall, np.percentile(lat, 50) * 1e3, np.percentile(lat, 95) * 1e3, bad,
                         sum(s != 200 for s in statuses)))
            print(f"{name}: {rows[-1][1]:.1f} req/s", flush=True)

    base = rows[0][1]
    print(f"\n{args.requests} requests, {args.clients} concurrent clients, loopback; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; client and server share them\n")
    print("| service | req/s | ratio to bare | p50 ms | p95 ms | 5xx | non-200 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, rps, p50, p95, bad, non200 in rows:
        print(f"| {name} | {rps:.1f} | {rps / base:.2f} | {p50:.1f} | {p95:.1f} | {bad} | {non200} |")


if __name__ == "__main__":
    main()
