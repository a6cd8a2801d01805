"""Run the service in a subprocess on loopback and talk to it (notebook p4, tests, benchmark).

``ServiceProcess(model_path, db_path, args)`` starts ``python -m course_utils.serving`` on
127.0.0.1 and a free port, with its operator metrics on another free loopback port
(``metrics_url``), waits for ``GET /health`` (and, with ``--workers N``, for every worker) and
stops it (``stop``: SIGTERM then SIGKILL; ``kill``: SIGKILL at once, to test durability;
``worker_pids()``: the workers' process ids, to kill one). Use it as a context manager so the
service stops on error too, or ``guarded(fn, ...)`` for one phase of a notebook.
``ApiClient(url, client_id, api_key, retries, wait)`` sends images: ``predict(x)`` encodes x
(C, H, W) in [0, 1] as PNG and returns ``(status, json)``; a 429 (rate limited) or 503 answer is
asked again up to ``retries`` times by ``with_retries``, the one retry loop. ``flagged(body)``:
whether an answer says a layer fired (rejected or blocked; "flagged" in monitor mode).

For notebook p4's traffic and attacks:

- ``Traffic(ops)``: sends labelled images (``send``), remembers the SHA-256 and true label of
  every PNG sent (the analyst's ground truth) and scrapes ``GET /metrics`` into a timeline.
- ``hostile_uploads(png)``: the malformed and hostile files a prober sends first (``bomb_png``);
  ``chunked_upload`` (an endless chunked body: the disk-fill attack), ``stalled_upload`` (a body
  that never arrives) and ``heaviest_png`` (the costliest image the service accepts) for the probe
  ``benchmarks/api_security.py``.
- ``LabelOracle``: ART's ``predict_fn`` through the API (one request per image, labels only) for
  decision-based attacks; ``Blocked`` when its identity keeps getting 403. ``hop_skip_jump`` runs
  ART's HopSkipJump (Chen, Jordan & Wainwright 2020) through such an oracle; ``start_image`` picks
  a real image of another class to start from.
"""
from __future__ import annotations

import atexit
import hashlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from .metrics import operator_metrics_url, register_operator_url, scrape
from .uploads import encode_png

HOST = "127.0.0.1"
RETRY_STATUSES = frozenset({429, 503})  # rate limited, temporarily unavailable: worth asking again
FLAGGED_DECISIONS = frozenset({"rejected", "blocked", "flagged"})  # a layer fired ("flagged": monitor mode)


def flagged(body: dict) -> bool:
    """Whether an answer of ``POST /predict`` says a defense layer fired (the service sends no scores)."""
    return body.get("decision") in FLAGGED_DECISIONS


def _die_with_parent():  # runs in the child before exec: SIGTERM it when the parent dies
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except OSError:
        pass


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ServiceProcess:
    """``python -m course_utils.serving`` in a subprocess; ``env``: extra environment (e.g. ``TMPDIR``)."""

    def __init__(self, model_path, db_path, args=(), port: int | None = None, startup_timeout: float = 120.0,
                 env: dict | None = None):
        self.model_path, self.db_path, self.args = str(model_path), str(db_path), [str(a) for a in args]
        self.extra_env = dict(env or {})
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.metrics_port = free_port()
        self.metrics_url = f"http://{HOST}:{self.metrics_port}/metrics"
        self.workers = int(self.args[self.args.index("--workers") + 1]) if "--workers" in self.args else 1
        self.startup_timeout = startup_timeout
        self.proc = None
        self.log = Path(tempfile.mkstemp(prefix="p4_service_", suffix=".log")[1])

    def command(self):
        return [sys.executable, "-m", "course_utils.serving", "--model", self.model_path, "--db", self.db_path,
                "--host", HOST, "--port", str(self.port), "--metrics-port", str(self.metrics_port), *self.args]

    def worker_pids(self) -> dict:
        """{worker index: pid} of the workers now running (from the log's "listening" lines; latest wins)."""
        import re

        pids = {}
        for i, pid in re.findall(r"^worker (\d+) \(pid (\d+)\) listening", self.log_tail(10**7), re.M):
            pids[int(i)] = int(pid)
        return pids

    def start(self):
        """Start and wait for /health. The service also stops when this Python process exits (atexit,
        and on Linux a parent-death signal), so a failing notebook does not leave it running."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200 and len(self.worker_pids()) >= (
                        self.workers if self.workers > 1 else 0):
                    register_operator_url(self.url, self.metrics_url)
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the service did not answer /health within {self.startup_timeout:g} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self, timeout: float = 10.0):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc is not None else None

    def kill(self):
        """SIGKILL: no clean shutdown, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def guarded(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` (one phase of traffic); on any error stop the service, then re-raise."""
        try:
            return fn(*args, **kwargs)
        except BaseException:
            self.stop()
            raise

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def redis_server_binary() -> str | None:
    """The ``redis-server`` program (Debian: ``apt-get install redis-server``), or None when not installed."""
    import shutil

    return shutil.which("redis-server") or next((p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server")
                                                 if os.access(p, os.X_OK)), None)


class RedisServer:
    """A throwaway Redis for the tests, the probe and notebook p4: ``redis-server`` on 127.0.0.1 and
    a free port, nothing written to disk (no RDB snapshots, no append-only file), protected mode on.
    ``url``: ``redis://127.0.0.1:PORT/0``; ``stop()`` (SIGTERM), ``kill()`` (SIGKILL: Redis lost);
    ``start()`` again on the same port. A context manager, like ``ServiceProcess``."""

    def __init__(self, port: int | None = None, binary: str | None = None, startup_timeout: float = 20.0):
        self.binary = binary or redis_server_binary()
        if self.binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = port or free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.startup_timeout, self.proc = startup_timeout, None

    def start(self):
        import redis

        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", HOST, "--save", "",
                                      "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no",
                                      "--loglevel", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        atexit.register(self.stop)
        client = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.proc.returncode} (port {self.port} taken?)")
            try:
                if client.ping():
                    client.close()
                    return self
            except (redis.RedisError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING within {self.startup_timeout:g} s")

    def stop(self, timeout: float = 10.0):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def with_retries(request, retries: int = 0, wait: float = 0.2, statuses=RETRY_STATUSES, sleep=time.sleep):
    """The client's one retry loop: ``request()`` -> ``httpx.Response``, called again while the answer's
    status is in ``statuses`` (429 rate limited, 503 unavailable), at most ``retries`` more times and
    ``wait`` seconds apart. Returns the last response: still 429 / 503 when the client gave up.

    The wait is fixed and short: the service's ``Retry-After`` is rounded up to whole seconds, while a
    token of its per-client bucket refills in 1 / rate seconds. ``sleep``: injectable for tests.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries!r}")
    response = request()
    for _ in range(retries):
        if response.status_code not in statuses:
            break
        sleep(wait)
        response = request()
    return response


class ApiClient:
    """A client of one service. client_id: sent as X-Client-ID, a name the service ignores (it knows
    clients by address); api_key: sent as X-API-Key, the identity of a service started with ``--api-keys``.

    retries / wait: how many times and how far apart a 429 or 503 answer is asked again
    (``with_retries``; 0: returned as it is). transport: an ``httpx`` transport (tests: ``httpx.MockTransport``).
    """

    def __init__(self, url: str, client_id: str | None = None, timeout: float = 30.0, retries: int = 0,
                 wait: float = 0.2, transport=None, api_key: str | None = None):
        self.url, self.retries, self.wait = url, retries, wait
        headers = {"X-Client-ID": client_id} if client_id else {}
        if api_key:
            headers["X-API-Key"] = api_key
        self.http = httpx.Client(base_url=url, timeout=timeout, transport=transport, headers=headers)

    def predict(self, x=None, data: bytes | None = None, content_type: str = "image/png"):
        """POST one image (tensor x, or raw ``data`` bytes) as multipart field ``file``: (status, json)."""
        data = encode_png(x) if data is None else data
        r = with_retries(lambda: self.http.post("/predict", files={"file": ("image.png", data, content_type)}),
                         self.retries, self.wait)
        return r.status_code, r.json()

    def labels_one(self, x):
        """The label for one image x: (C, H, W), or None where the service gave none."""
        return self.predict(x)[1].get("label")

    def labels(self, x):
        """Labels for a batch x: (B, C, H, W); None where the service gave none (rejected, abstained, blocked)."""
        return [self.predict(xi)[1].get("label") for xi in x]

    def metrics(self) -> dict:
        """The service's counters, read as its operator: from the metrics port of a service this
        process started (``ServiceProcess``, ``ThreadedServer``); the public port serves none."""
        url = operator_metrics_url(self.url)
        if url is None:
            raise RuntimeError(f"no operator metrics known for {self.url}: metrics are served on the operator's "
                               "port (--metrics-port), not to API clients")
        return scrape(httpx.get(url, timeout=30).text)

    def close(self):
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Traffic:
    """Labelled traffic to one service, and what it did (notebook p4).

    ``send(clients, x, y, phase)`` posts each image of x (B, C, H, W) in [0, 1], the clients taking
    turns, and returns a DataFrame with one row per request: phase, status, label, decision,
    flagged and the true label y. ``sent`` maps the SHA-256 of every PNG sent to ``(y, phase)``:
    the ground truth an analyst would supply when replaying the log. ``snapshot(phase)`` scrapes
    ``GET /metrics`` through the client ``ops`` into ``timeline`` (cumulative counters, one row per
    scrape), as Prometheus would; after a redeployment, point ``ops`` at the new service.
    """

    def __init__(self, ops: ApiClient):
        self.ops, self.timeline, self.sent = ops, [], {}

    def snapshot(self, phase: str):
        m = self.ops.metrics()
        req = m["requests"]
        self.timeline.append({"t": time.time(), "phase": phase, "requests": m["total"], "flagged": m["flagged"],
                              "4xx": sum(v for k, v in req.items() if k.startswith("4") and k not in ("403", "429")),
                              "429": req.get("429", 0), "403": req.get("403", 0),
                              **{f"flag_{k}": v for k, v in m["flags"].items()}})

    def send(self, clients, x, y, phase: str, every: int = 8):
        """POST each image of x with one client (an ``ApiClient``) or a list taking turns; snapshot every ``every``."""
        import pandas as pd

        clients = list(clients) if isinstance(clients, (list, tuple)) else [clients]
        rows = []
        for i in range(len(x)):
            png = encode_png(x[i])
            self.sent[hashlib.sha256(png).hexdigest()] = (int(y[i]), phase)
            status, body = clients[i % len(clients)].predict(data=png)
            rows.append({"phase": phase, "status": status, "label": body.get("label"), "decision": body.get("decision"),
                         "flagged": flagged(body), "y": int(y[i])})
            if (i + 1) % every == 0:
                self.snapshot(phase)
        self.snapshot(phase)
        return pd.DataFrame(rows)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG whose header declares width x height pixels, with almost no data (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def hostile_uploads(good_png: bytes) -> dict:
    """What a prober sends first: ``{name: (bytes, content type)}``. An empty upload, text declared as
    PNG, a PNG declared as text, the first half of ``good_png`` and a decompression bomb; the
    service must answer each with a 4xx and a message, and keep serving."""
    return {"empty": (b"", "image/png"), "text as png": (b"hello", "image/png"), "wrong type": (good_png, "text/plain"),
            "truncated": (good_png[: len(good_png) // 2], "image/png"), "bomb": (bomb_png(), "image/png")}


def _http_parts(url: str) -> tuple[str, int]:
    u = httpx.URL(url)
    if u.host not in (HOST, "localhost"):
        raise ValueError(f"the hostile-client helpers talk to loopback only, got {url!r}")
    return u.host, u.port or 80


def _read_status(sock) -> int | None:
    """The status code of the HTTP answer waiting on ``sock``, or None when the connection closed without one."""
    head = b""
    try:
        while b"\r\n" not in head:
            part = sock.recv(4096)
            if not part:
                break
            head += part
    except OSError:  # reset or timed out
        pass
    fields = head.split(b"\r\n", 1)[0].split()
    return int(fields[1]) if len(fields) >= 2 and fields[1].isdigit() else None


def chunked_upload(url: str, total_bytes: int, chunk_bytes: int = 64 * 1024, multipart: bool = True,
                   timeout: float = 30.0) -> tuple[int | None, int]:
    """The disk-fill attack: ``POST /predict`` with a chunked body (no Content-Length) of ``total_bytes``.

    The body is a multipart file part (or a raw ``image/png`` body) starting with PNG magic bytes,
    then zeros. Sending stops as soon as the service answers or drops the connection. Returns
    ``(HTTP status or None, body bytes handed to the socket)``; loopback only.
    """
    import select

    host, port = _http_parts(url)
    boundary = "probe-boundary"
    ctype = f"multipart/form-data; boundary={boundary}" if multipart else "image/png"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() if multipart else b""
    tail = f"\r\n--{boundary}--\r\n".encode() if multipart else b""
    sent, first = 0, head + b"\x89PNG\r\n\x1a\n"
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\n"
                     "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode())
        while sent < total_bytes:
            if select.select([sock], [], [], 0)[0]:  # the service answered (or closed): stop sending
                break
            piece = first if sent == 0 else bytes(min(chunk_bytes, total_bytes - sent))
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except OSError:
                break
            sent += len(piece)
        else:
            try:
                sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail) if tail else b"0\r\n\r\n")
            except OSError:
                pass
        return _read_status(sock), sent


def stalled_upload(url: str, declared_bytes: int = 10_000, sent_bytes: int = 100, timeout: float = 60.0):
    """A client that stalls: declares ``declared_bytes`` of PNG, sends ``sent_bytes``, then waits.

    Returns ``(HTTP status or None, seconds until the answer, whether the service then closed the
    connection)``; loopback only.
    """
    host, port = _http_parts(url)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        t0 = time.monotonic()
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
                     f"Content-Length: {declared_bytes}\r\n\r\n".encode() + b"\x89PNG\r\n\x1a\n" + bytes(sent_bytes - 8))
        status = _read_status(sock)
        elapsed = time.monotonic() - t0
        try:
            while sock.recv(65536):  # the rest of the answer, then EOF if the service closed
                pass
            closed = True
        except OSError:
            closed = False
    return status, elapsed, closed


def slow_header_clients(url: str, n: int, interval_s: float = 0.5, duration_s: float = 5.0) -> list:
    """The slowloris: ``n`` connections that each send a request line, then one more header line every
    ``interval_s`` seconds, never finishing the head, for at most ``duration_s`` seconds.

    Returns, per connection, the seconds from its opening until the service closed it (an answer such
    as a 503 followed by the close counts as closed), or None if still open at the end. Loopback only.
    """
    import selectors

    host, port = _http_parts(url)
    sel, opened, closed, socks = selectors.DefaultSelector(), [], [None] * n, []
    t0 = time.monotonic()
    for i in range(n):
        s = socket.create_connection((host, port), timeout=5)
        socks.append(s)
        opened.append(time.monotonic())
        try:
            s.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\n".encode())
        except OSError:
            closed[i] = time.monotonic() - opened[i]
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    next_send = time.monotonic() + interval_s
    try:
        while time.monotonic() < t0 + duration_s and any(c is None for c in closed):
            for key, _ in sel.select(timeout=0.05):
                i = key.data
                try:
                    data = key.fileobj.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data and closed[i] is None:
                    closed[i] = time.monotonic() - opened[i]
                    sel.unregister(key.fileobj)
            if time.monotonic() >= next_send:
                next_send += interval_s
                for key in list(sel.get_map().values()):
                    try:
                        key.fileobj.send(b"X-Slow: 1\r\n")
                    except BlockingIOError:
                        pass
                    except OSError:
                        if closed[key.data] is None:
                            closed[key.data] = time.monotonic() - opened[key.data]
                        sel.unregister(key.fileobj)
    finally:
        sel.close()
        for s in socks:
            s.close()
    return closed


def heaviest_png(max_pixels: int, max_bytes: int, seed: int = 0) -> bytes:
    """The costliest PNG to decode that the limits still accept: a 16-bit greyscale square of noise
    with at most ``max_pixels`` pixels and ``max_bytes`` bytes (noise does not compress)."""
    from PIL import Image

    side = int(max_pixels ** 0.5)
    rng = np.random.default_rng(seed)
    while side > 1:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 65536, (side, side), dtype=np.uint16)).save(buf, format="PNG")
        if buf.tell() <= max_bytes:
            return buf.getvalue()
        side = int(side * 0.9)
    raise ValueError(f"no PNG fits in {max_bytes} bytes")


class Blocked(Exception):
    """The attacker gives up: its identity keeps getting HTTP 403."""


class LabelOracle:
    """``predict_fn`` for ART's ``BlackBoxClassifier``: one HTTP request per image, one-hot labels.

    What a decision-based attacker sees: only the label. Where the API gives none (rejected, blocked,
    still rate limited), the oracle reports ``fallback`` (the true label: "not adversarial").
    Identities are ``ApiClient(url, f"{prefix}-{n}", **client_kw)`` with n the queries sent so far;
    ``rotate`` > 0 starts a new one every ``rotate`` queries (a Sybil attacker), 0 keeps one.
    ``log``: one row per query (phase, status, decision, flagged). After ``give_up`` 403 answers in a
    row it raises ``Blocked`` (a blocked identity only burns queries). ``monitor(phase)`` is called
    every ``every`` queries (e.g. ``Traffic.snapshot``).
    """

    def __init__(self, url: str, prefix: str, fallback: int, phase: str = "attack", rotate: int = 0,
                 give_up: int = 20, num_classes: int = 10, monitor=None, every: int = 25, **client_kw):
        self.url, self.prefix, self.fallback, self.phase, self.rotate = url, prefix, int(fallback), phase, rotate
        self.give_up, self.num_classes, self.monitor, self.every, self.client_kw = give_up, num_classes, monitor, every, client_kw
        self.log, self.blocked = [], 0
        self.client = self._new_client()

    def _new_client(self) -> ApiClient:
        return ApiClient(self.url, f"{self.prefix}-{len(self.log)}", **self.client_kw)

    def __call__(self, x):
        """x: (N, C, H, W) array in [0, 1] -> (N, num_classes) float32 one-hot labels."""
        out = np.zeros((len(x), self.num_classes), dtype=np.float32)
        for i, xi in enumerate(x):
            if self.rotate and self.log and len(self.log) % self.rotate == 0:  # a new identity every `rotate` queries
                self.client.close()
                self.client = self._new_client()
            status, body = self.client.predict(torch.from_numpy(np.asarray(xi, dtype=np.float32)))
            label = body.get("label")
            self.log.append({"phase": self.phase, "status": status, "decision": body.get("decision"),
                             "flagged": flagged(body)})
            self.blocked = self.blocked + 1 if status == 403 else 0
            if self.blocked >= self.give_up:
                raise Blocked(f"{self.blocked} answers 403 in a row")
            out[i, self.fallback if label is None else label] = 1.0
            if self.monitor is not None and len(self.log) % self.every == 0:
                self.monitor(self.phase)
        return out


def hop_skip_jump(predict_fn, x0: torch.Tensor, budget: dict, x_init=None, num_classes: int = 10) -> torch.Tensor:
    """ART's HopSkipJump (Chen, Jordan & Wainwright 2020; L2, untargeted) on x0 (1, C, H, W) in [0, 1].

    predict_fn: labels only, (N, C, H, W) array -> (N, num_classes) one-hot (a ``LabelOracle``, or a
    model's argmax). budget: HopSkipJump's ``max_iter``, ``max_eval``, ``init_eval``, ``init_size``.
    x_init: a starting point predict_fn labels otherwise (``start_image``); None: ART's random noise.
    Returns x_adv (1, C, H, W) on the CPU (x0 itself where the attack found nothing).
    """
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import BlackBoxClassifier

    clf = BlackBoxClassifier(predict_fn, input_shape=tuple(x0.shape[1:]), nb_classes=num_classes, clip_values=(0.0, 1.0))
    kw = {} if x_init is None else {"x_adv_init": np.asarray(x_init, dtype=np.float32)}
    attack = HopSkipJump(clf, targeted=False, norm=2, verbose=False, **budget)
    return torch.from_numpy(attack.generate(x0.detach().cpu().numpy(), **kw))


def start_image(x: torch.Tensor, y: torch.Tensor, i: int, label_of):
    """Where a decision-based attack on x[i] can start: the first x[j] of another class that
    ``label_of`` (one image (C, H, W) -> a label, or None for no answer) labels other than y[i];
    a (1, C, H, W) array, or None when no image works (then HopSkipJump starts from noise)."""
    for j in range(len(x)):
        if y[j] != y[i]:
            label = label_of(x[j])
            if label is not None and label != int(y[i]):
                return x[j:j + 1].detach().cpu().numpy()
    return None


class ThreadedServer:
    """Serve a FastAPI ``app`` with uvicorn in a background thread on loopback (tests: no subprocess).

    ``with ThreadedServer(app) as url: ...`` starts it, waits until it accepts connections, stops it.
    trusted_proxies: as the service's ``--trusted-proxies`` (default: none, as the service);
    header_timeout_s, max_connections, keep_alive_s: the connection limits (``limits``), as the
    service's defaults; ``guarded=False``: plain uvicorn (to show what the limits change). An app
    from ``create_app`` gets its operator metrics port too (``ApiClient.metrics`` finds it).
    """

    def __init__(self, app, port: int | None = None, timeout: float = 30.0, trusted_proxies=(), header_timeout_s=10.0,
                 max_connections=256, keep_alive_s=5.0, guarded=True):
        import uvicorn

        from .identity import uvicorn_proxy_settings
        from .limits import connection_settings

        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        limits = connection_settings(header_timeout_s, max_connections, keep_alive_s) if guarded else {}
        self.server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=self.port, log_level="warning",
                                                    access_log=False, lifespan="off",
                                                    **uvicorn_proxy_settings(trusted_proxies), **limits))
        self.timeout = timeout
        self.thread = None
        self.metrics_server = None

    def __enter__(self):
        import threading

        service = getattr(getattr(getattr(self.server.config, "app", None), "state", None), "service", None)
        if service is not None:  # the operator's metrics port, as the CLI's --metrics-port
            from .metrics import serve_metrics

            port = free_port()
            self.metrics_server = serve_metrics(service.metrics.registry, port)
            register_operator_url(self.url, f"http://{HOST}:{port}/metrics")
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + self.timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self.url

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(self.timeout)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
            register_operator_url(self.url, None)
