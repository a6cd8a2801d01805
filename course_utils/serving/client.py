"""Run the service in a subprocess on loopback and talk to it (notebook p4, tests, benchmark).

``ServiceProcess(model_path, db_path, args)`` starts ``python -m course_utils.serving`` on
127.0.0.1 and a free port, waits for ``GET /health`` and stops it (``stop``: SIGTERM then
SIGKILL; ``kill``: SIGKILL at once, to test durability). Use it as a context manager so the
service stops on error too. ``ApiClient(url, client_id)`` sends images: ``predict(x)`` encodes x
(C, H, W) in [0, 1] as PNG and returns ``(status, json)``.
"""
from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from .metrics import scrape
from .uploads import encode_png

HOST = "127.0.0.1"


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
    def __init__(self, model_path, db_path, args=(), port: int | None = None, startup_timeout: float = 120.0):
        self.model_path, self.db_path, self.args = str(model_path), str(db_path), [str(a) for a in args]
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.startup_timeout = startup_timeout
        self.proc = None
        self.log = Path(tempfile.mkstemp(prefix="p4_service_", suffix=".log")[1])

    def command(self):
        return [sys.executable, "-m", "course_utils.serving", "--model", self.model_path, "--db", self.db_path,
                "--host", HOST, "--port", str(self.port), *self.args]

    def start(self):
        """Start and wait for /health. The service also stops when this Python process exits (atexit,
        and on Linux a parent-death signal), so a failing notebook does not leave it running."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
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

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class ApiClient:
    """A client of one service. client_id: sent as X-Client-ID (None: identified by address)."""

    def __init__(self, url: str, client_id: str | None = None, timeout: float = 30.0):
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=timeout,
                                 headers={"X-Client-ID": client_id} if client_id else {})

    def predict(self, x=None, data: bytes | None = None, content_type: str = "image/png"):
        """POST one image (tensor x, or raw ``data`` bytes) as multipart field ``file``: (status, json)."""
        data = encode_png(x) if data is None else data
        r = self.http.post("/predict", files={"file": ("image.png", data, content_type)})
        return r.status_code, r.json()

    def labels_one(self, x):
        """The label for one image x: (C, H, W), or None where the service gave none."""
        return self.predict(x)[1].get("label")

    def labels(self, x):
        """Labels for a batch x: (B, C, H, W); None where the service gave none (rejected, abstained, blocked)."""
        return [self.predict(xi)[1].get("label") for xi in x]

    def metrics(self) -> dict:
        return scrape(self.http.get("/metrics").text)

    def close(self):
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ThreadedServer:
    """Serve a FastAPI ``app`` with uvicorn in a background thread on loopback (tests: no subprocess).

    ``with ThreadedServer(app) as url: ...`` starts it, waits until it accepts connections, stops it.
    """

    def __init__(self, app, port: int | None = None, timeout: float = 30.0):
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=self.port, log_level="warning",
                                                    access_log=False, lifespan="off"))
        self.timeout = timeout
        self.thread = None

    def __enter__(self):
        import threading

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
