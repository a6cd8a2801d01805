"""The FastAPI app of project p4: ``POST /predict`` and ``GET /health`` (metrics: the operator's port).

``Service(model, config)`` holds the layers (see ``layers``) and decides one request;
``create_app(service)`` wires it to HTTP. Order of the layers for one ``POST /predict``:

1. identity (``identity``): the peer address, or with ``api_keys`` the client id of the
   ``X-API-Key`` sent (401 without a valid one); ``X-Client-ID`` and untrusted ``X-Forwarded-For``
   are ignored, so rotating them does not make a new client (a Sybil attack);
2. rate limit per client (429 + Retry-After), before the body is read;
3. the body, read with a hard byte cap while it streams (``max_bytes``, plus ``MULTIPART_OVERHEAD``
   for a multipart body; chunked or not): 413 as soon as it is exceeded, and never written to disk
   beyond the cap; a body that does not arrive within ``body_timeout_s`` gets 408. Both answers
   close the connection;
4. upload checks and decoding (``uploads.decode_upload``) in a worker thread, off the event loop,
   so a costly image never stalls ``/health`` or other clients: 4xx with a message, never a 500;
5. quarantine: a client caught by the query-pattern layer gets 403 for ``block_s`` seconds;
6. query-pattern detector (near-duplicate bursts), the classifier (plain or smoothed with
   abstention), the feature-squeezing detector;
7. decision; a flagged request is written to SQLite (committed) *before* the response is sent.

State. The rate limit, the query histories and the quarantine live in ``service.state``
(``state.LocalState`` in this process, or ``state.RedisState`` shared by several workers). When
that state cannot be reached the service **fails closed**: ``POST /predict`` answers 503 with
``Retry-After`` (and logs one line at most every ``STATE_LOG_EVERY_S`` seconds), and ``GET /health``
answers 503, so a load balancer stops sending. Failing open would let an attacker who can slow or
crash Redis switch off the rate limit, the query-pattern detector and the quarantine at once.

Metrics are for the operator only: this app serves no ``/metrics``; ``python -m
course_utils.serving --metrics-port P`` serves them on 127.0.0.1:P (``metrics.serve_metrics``).

What clients are told. The answer carries the request id, the label and the decision (accept,
abstain, rejected, blocked), never probabilities, detector scores or which layer fired: scores
would help an attacker (score-based and adaptive attacks), and knowing *when* the detector fires
lets an attacker tune against it. A refusal cannot hide that something refused; it never says
what. Only in monitor mode (``enforce=False``, ``--monitor``: an operator's debugging mode, not for
untrusted clients) flags are logged but the label is still returned, with ``"flagged"`` in the body
and an ``X-Flagged: 1`` header. ``/health`` answers ``{"status": "ok"}`` only, unless the operator
asks for details (``health_details``, ``--health-details``: model hash and settings).
Upload: ``multipart/form-data`` with the image in the field ``file``, or a raw ``image/png`` /
``image/jpeg`` body.
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ..sanitization import paper_squeezers
from .identity import ApiKeys, peer_identity
from .layers import SIGNATURE_SIZE, Classifier, QueryPatternDetector, squeeze_detector
from .metrics import Metrics
from .state import LocalState, StateUnavailable
from .store import FlagStore
from .uploads import UploadError, UploadLimits, decode_upload

log = logging.getLogger(__name__)
MULTIPART_OVERHEAD = 64 * 1024  # bytes allowed on top of max_bytes for a multipart body's boundaries and headers
MAX_CLIENTS = 2_000  # clients remembered by the rate limit, the query-pattern detector and the quarantine
STATE_LOG_EVERY_S = 10.0  # while the state store is unreachable, one log line per this many seconds


def _finite(name, v, low=None, high=None, low_open=False, high_open=False, optional=False):
    """``ValueError`` naming ``name`` unless v is a finite number in the range (None allowed if optional)."""
    if v is None and optional:
        return
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (low is None or (v > low if low_open else v >= low)) and (high is None or (v < high if high_open else v <= high))
    if not ok:
        rng = f"{'(' if low_open else '['}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {rng}, got {v!r}")


def _integer(name, v, low):
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")


@dataclass
class ServiceConfig:
    """Everything the service is started with (``python -m course_utils.serving --help`` sets it);
    every value is range-checked here, so a bad one fails at start, never as a 500 per request."""

    db_path: str | Path
    limits: UploadLimits = field(default_factory=UploadLimits)
    defended: bool = True  # False: validation + model only (the benchmark's baseline)
    enforce: bool = True  # False: monitor mode (flag and log, but answer, and say so)
    dataset: str = "mnist"  # picks the paper's squeezers
    threshold: float | None = None  # squeeze-detector tau (from the checkpoint's sidecar)
    sigma: float | None = None  # > 0: answer with the smoothed classifier (Cohen et al. 2019)
    smooth_n: int = 100  # Monte-Carlo samples per request
    smooth_alpha: float = 0.001  # abstain unless the top class wins a binomial test at this level
    rate: float = 20.0  # requests per second per client (token refill)
    burst: int = 40  # token-bucket size
    query_k: int = 5  # neighbours in the query-pattern score
    query_delta: float = 0.02  # flag when the k-NN RMS distance is below this (pixels)
    query_history: int = 100  # signatures kept per client
    query_window_s: float = 60.0  # and for at most this long
    block_s: float = 300.0  # quarantine after a query-pattern flag (enforce mode)
    body_timeout_s: float = 10.0  # the whole request body must arrive within this (else 408)
    store_images: bool = True  # keep flagged uploads in the log for analysis
    model_sha256: str | None = None
    api_keys: ApiKeys | None = None  # None: clients are known by peer address
    health_details: bool = False  # /health shows the model hash and settings (operators only)
    worker: int | None = None  # index of this worker process (--workers), written with each flag

    def __post_init__(self):
        if not isinstance(self.limits, UploadLimits):
            raise ValueError(f"limits must be an UploadLimits, got {type(self.limits).__name__}")
        paper_squeezers(self.dataset)  # ValueError naming the dataset
        _finite("threshold", self.threshold, optional=True)
        _finite("sigma", self.sigma, low=0, low_open=True, optional=True)
        _integer("smooth_n", self.smooth_n, 1)
        _finite("smooth_alpha", self.smooth_alpha, 0, 1, low_open=True, high_open=True)
        _finite("rate", self.rate, low=0, low_open=True)
        _integer("burst", self.burst, 1)
        _integer("query_k", self.query_k, 1)
        _integer("query_history", self.query_history, self.query_k)
        _finite("query_delta", self.query_delta, low=0, low_open=True)
        _finite("query_window_s", self.query_window_s, low=0, low_open=True)
        _finite("block_s", self.block_s, low=0)
        _finite("body_timeout_s", self.body_timeout_s, low=0, low_open=True)
        if self.api_keys is not None and not isinstance(self.api_keys, ApiKeys):
            raise ValueError(f"api_keys must be an identity.ApiKeys or None, got {type(self.api_keys).__name__}")


class Service:
    """The layers around ``model`` (x: (B, C, H, W) in [0, 1] -> logits) and the flag log.

    state: where the rate limit, query histories and quarantine live (``state.LocalState`` or
    ``state.RedisState``); None: a ``LocalState`` of this process, sized by ``config``."""

    def __init__(self, model: torch.nn.Module, config: ServiceConfig, state=None):
        self.model, self.config = model.eval(), config
        c = config
        dim = c.limits.input_shape[0] * SIGNATURE_SIZE ** 2
        self.state = state if state is not None else LocalState(c.rate, c.burst, c.query_history, c.query_window_s,
                                                                dim, MAX_CLIENTS)
        self.classifier = Classifier(model, sigma=c.sigma if c.defended else None, n=c.smooth_n, alpha=c.smooth_alpha)
        if c.defended and c.threshold is None:
            raise ValueError("the squeeze detector needs a threshold: export the model with serving.export_model "
                             "(calibrated on clean images) or pass --threshold")
        self.detector = squeeze_detector(model, c.dataset, c.threshold) if c.defended else None
        self.query = (QueryPatternDetector(c.query_k, c.query_delta, c.query_history, c.query_window_s,
                                           max_clients=MAX_CLIENTS, channels=c.limits.input_shape[0],
                                           histories=self.state.histories)
                      if c.defended else None)
        self.store = FlagStore(c.db_path, store_images=c.store_images, worker=c.worker)
        self.metrics = Metrics()
        self.started = time.time()
        self._state_log = [0.0, 0]  # last time an unreachable state store was logged, failures since
        self._state_lock = threading.Lock()

    def state_failed(self, error: StateUnavailable):
        """One log line per ``STATE_LOG_EVERY_S`` seconds while the state store is unreachable."""
        with self._state_lock:
            now, (last, missed) = time.monotonic(), self._state_log
            if now - last < STATE_LOG_EVERY_S:
                self._state_log[1] = missed + 1
                return
            self._state_log[:] = [now, 0]
        log.error("%s; answering 503 (fail closed)%s", error, f", {missed} more since the last line" if missed else "")

    def identify(self, request) -> str:
        """The client's identity (see ``identity``); ``UploadError(401)`` for a missing or unknown API key."""
        if self.config.api_keys is None:
            return peer_identity(request.client.host if request.client else None)
        key = request.headers.get("x-api-key")
        client = self.config.api_keys.client(key)
        if client is None:
            raise UploadError(401, "this service needs an API key issued to you, sent as X-API-Key"
                              if not key else "unknown API key")
        return client

    def decide(self, client: str, x: torch.Tensor, data: bytes) -> tuple[int, dict]:
        """(HTTP status, JSON body) for one validated image x: (1, C, H, W) in [0, 1]."""
        request_id, reasons, q_score, s_score, label, abstained = uuid.uuid4().hex, [], None, None, None, False
        blocked = self.config.defended and self.state.blocked(client)
        if blocked:
            reasons.append("quarantine")
        else:
            with torch.no_grad():
                if self.query is not None:
                    q_score, q_flag = self.query.observe(client, x)
                    if q_flag:
                        reasons.append("query_pattern")
                label, abstained = self.classifier.predict(x)
                if self.detector is not None:
                    s_score = float(self.detector.score(x)[0])
                    if s_score > self.detector.threshold:
                        reasons.append("squeeze")
        enforce = self.config.enforce
        if blocked or ("query_pattern" in reasons and enforce):
            decision, status = "blocked", 403
            if not blocked and self.config.block_s > 0:
                self.state.block(client, self.config.block_s)
        elif reasons:
            decision, status = ("rejected" if enforce else "flagged"), 200
        else:
            decision, status = ("abstain" if abstained else "accept"), 200
        if reasons:  # durable first, then the answer
            self.store.record(client, decision, reasons, s_score, q_score, label, data, request_id)
            self.metrics.flagged.inc()
            for r in reasons:
                self.metrics.flags.labels(r).inc()
        if abstained:
            self.metrics.abstentions.inc()
        shown = label if decision in ("accept", "flagged") and not abstained else None
        body = {"request_id": request_id, "label": shown, "decision": decision}
        if not enforce:  # monitor mode (debugging): say whether a layer fired
            body["flagged"] = bool(reasons)
        if status == 403:
            body["detail"] = (f"this client is blocked for {self.config.block_s:g} s after a run of requests that look "
                              "automated; quote the request id to support if this is a mistake")
        return status, body


async def read_body(request, cap: int, timeout_s: float) -> bytes:
    """At most ``cap`` bytes of the request body, as they stream in (chunked or with Content-Length).

    ``UploadError(413)`` as soon as more arrive (or are declared), ``UploadError(408)`` when the
    whole body has not arrived within ``timeout_s`` seconds. Nothing is written to disk.
    """
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > cap):
        raise UploadError(413, f"request body too large ({length[:20]} bytes declared); at most {cap:,} are accepted")
    chunks, size = [], 0

    async def collect():
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise UploadError(413, f"the request body has more than {cap:,} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(collect(), timeout_s)
    except asyncio.TimeoutError:
        raise UploadError(408, f"the request body did not arrive within {timeout_s:g} s") from None
    except ClientDisconnect:
        raise UploadError(400, "the client disconnected before sending the whole body") from None
    return b"".join(chunks)


async def read_upload(request, limits: UploadLimits, timeout_s: float = 10.0) -> tuple[bytes, str | None]:
    """The image bytes and their declared content type, from multipart field ``file`` or a raw body.

    The body is read first with a hard cap (``read_body``: ``max_bytes`` for a raw image, plus
    ``MULTIPART_OVERHEAD`` for multipart), then the multipart form is parsed from memory.
    """
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException

    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        body = await read_body(request, limits.max_bytes + MULTIPART_OVERHEAD, timeout_s)

        async def replay():  # the capped body, for Starlette's multipart parser
            return {"type": "http.request", "body": body, "more_body": False}
        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=8, max_part_size=64 * 1024)
        except HTTPException as e:
            raise UploadError(400, f"malformed multipart body: {e.detail}") from None
        except Exception as e:  # noqa: BLE001 - any parser failure is the client's malformed body
            raise UploadError(400, f"malformed multipart body ({type(e).__name__})") from None
        try:
            upload = form.get("file")
            if upload is None:
                raise UploadError(422, f"multipart field 'file' is missing (got fields {sorted(form.keys())[:8]}); "
                                       "send the image as file=@image.png")
            if not isinstance(upload, UploadFile):
                raise UploadError(422, "multipart field 'file' must be a file upload, not a text field")
            data = await upload.read(limits.max_bytes + 1)
            return data, upload.content_type
        finally:
            await form.close()
    if ctype.startswith("image/"):
        return await read_body(request, limits.max_bytes, timeout_s), ctype
    raise UploadError(415, "send multipart/form-data with the image in the field 'file', or a raw image/png or "
                           f"image/jpeg body (got content type {ctype[:40] or 'none'!r})")


def create_app(service: Service):
    """The FastAPI app around ``service``."""
    app = FastAPI(title="Secure image classifier (course project p4)", docs_url=None, redoc_url=None,
                  openapi_url=None)  # no schema browsing in production
    app.state.service = service
    m = service.metrics

    @app.post("/predict")
    async def predict(request: Request):
        t0 = time.perf_counter()
        headers, status, body_read = {}, 500, False
        try:
            client = service.identify(request)
            if service.config.defended:
                allowed, retry = service.state.allow(client)
                if not allowed:
                    m.rate_limited.inc()
                    headers["Retry-After"] = str(max(1, round(retry)))
                    raise UploadError(429, f"rate limit: at most {service.config.rate:g} requests per second "
                                           f"(burst {service.config.burst}); retry in {retry:.2f} s")
            data, ctype = await read_upload(request, service.config.limits, service.config.body_timeout_s)
            body_read = True
            x = await run_in_threadpool(decode_upload, data, ctype, service.config.limits)
            status, body = await run_in_threadpool(service.decide, client, x, data)
        except UploadError as e:
            status, body = e.status, {"detail": e.message}
        except StateUnavailable as e:  # fail closed: without its state no layer can decide
            service.state_failed(e)
            headers["Retry-After"] = "1"
            status, body = 503, {"detail": "the service cannot decide requests right now; retry in a few seconds"}
        except Exception as e:  # noqa: BLE001 - a bug: answer 500 without internals, count it, log the traceback
            log.exception("POST /predict failed")
            status, body = 500, {"detail": f"internal error ({type(e).__name__}); the incident was logged"}
        finally:
            m.requests.labels(str(status)).inc()
            m.latency.observe(time.perf_counter() - t0)
        if not body_read:  # the rest of the body was never read (too large, too slow, refused first)
            headers["Connection"] = "close"
        if body.get("flagged"):  # monitor mode only
            headers["X-Flagged"] = "1"
        return JSONResponse(body, status_code=status, headers=headers)

    @app.get("/health")
    def health():
        c = service.config
        try:
            service.state.ping()
        except StateUnavailable as e:
            service.state_failed(e)
            return JSONResponse({"status": "unavailable"}, 503, headers={"Retry-After": "1"})
        if not c.health_details:
            return {"status": "ok"}
        return {"status": "ok", "worker": c.worker, "state": str(service.state), "model_sha256": c.model_sha256, "defended": c.defended, "enforce": c.enforce,
                "smoothing_sigma": c.sigma if c.defended else None, "api_keys": c.api_keys is not None,
                "uptime_s": round(time.time() - service.started, 1)}

    @app.exception_handler(404)
    async def not_found(request, exc):
        return JSONResponse({"detail": "not found: the API has POST /predict and GET /health"}, 404)

    return app
