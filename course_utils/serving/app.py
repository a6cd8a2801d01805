"""The FastAPI app of project p4: ``POST /predict``, ``GET /health``, ``GET /metrics``.

``Service(model, config)`` holds the layers (see ``layers``) and decides one request;
``create_app(service)`` wires it to HTTP. Order of the layers for one ``POST /predict``:

1. rate limit per client (429 + Retry-After), before the body is read;
2. upload checks (``validation.decode_upload``): 4xx with a message, never a 500;
3. quarantine: a client caught by the query-pattern layer gets 403 for ``block_s`` seconds;
4. query-pattern detector (near-duplicate bursts), the classifier (plain or smoothed with
   abstention), the feature-squeezing detector;
5. decision; a flagged request is written to SQLite (committed) *before* the response is sent.

The response carries only the label and the decision, never probabilities or detector scores:
scores would help an attacker (score-based attacks, adaptive attacks against the detector). With
``enforce=False`` (monitor mode) flags are logged but the label is still returned.
Upload: ``multipart/form-data`` with the image in the field ``file``, or a raw ``image/png`` /
``image/jpeg`` body. The client id is the ``X-Client-ID`` header (an API key in production), else
the peer address.
"""
from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .layers import Classifier, QueryPatternDetector, squeeze_detector
from .metrics import CONTENT_TYPE, Metrics
from .ratelimit import TokenBucketLimiter
from .store import FlagStore
from .uploads import UploadError, UploadLimits, decode_upload

_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MULTIPART_OVERHEAD = 64 * 1024  # bytes allowed on top of the image for multipart headers


@dataclass
class ServiceConfig:
    """Everything the service is started with (``python -m course_utils.serving --help`` sets it)."""

    db_path: str | Path
    limits: UploadLimits = field(default_factory=UploadLimits)
    defended: bool = True  # False: validation + model only (the benchmark's baseline)
    enforce: bool = True  # False: monitor mode (flag and log, but answer)
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
    store_images: bool = True  # keep flagged uploads in the log for analysis
    model_sha256: str | None = None


class Service:
    """The layers around ``model`` (x: (B, C, H, W) in [0, 1] -> logits) and the flag log."""

    def __init__(self, model: torch.nn.Module, config: ServiceConfig):
        self.model, self.config = model.eval(), config
        c = config
        self.classifier = Classifier(model, sigma=c.sigma if c.defended else None, n=c.smooth_n, alpha=c.smooth_alpha)
        if c.defended and c.threshold is None:
            raise ValueError("the squeeze detector needs a threshold: export the model with serving.export_model "
                             "(calibrated on clean images) or pass --threshold")
        self.detector = squeeze_detector(model, c.dataset, c.threshold) if c.defended else None
        self.query = (QueryPatternDetector(c.query_k, c.query_delta, c.query_history, c.query_window_s)
                      if c.defended else None)
        self.limiter = TokenBucketLimiter(c.rate, c.burst) if c.defended else None
        self.store = FlagStore(c.db_path, store_images=c.store_images)
        self.metrics = Metrics()
        self.quarantine: dict[str, float] = {}
        self._lock = threading.Lock()
        self.started = time.time()

    def decide(self, client: str, x: torch.Tensor, data: bytes) -> tuple[int, dict]:
        """(HTTP status, JSON body) for one validated image x: (1, C, H, W) in [0, 1]."""
        request_id, reasons, q_score, s_score, label, abstained = uuid.uuid4().hex, [], None, None, None, False
        with self._lock:
            blocked = self.quarantine.get(client, 0.0) > time.monotonic()
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
            if not blocked:
                with self._lock:
                    self.quarantine[client] = time.monotonic() + self.config.block_s
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
        body = {"request_id": request_id, "label": shown, "decision": decision, "flagged": bool(reasons)}
        if status == 403:
            body["detail"] = ("too many near-duplicate queries from this client: blocked as a suspected query-based "
                              f"attack for {self.config.block_s:g} s")
        return status, body


def client_id(request) -> str:
    given = request.headers.get("x-client-id")
    if given is None:
        return request.client.host if request.client else "unknown"
    if not _CLIENT_ID.match(given):
        raise UploadError(400, "X-Client-ID must be 1-64 characters from A-Z a-z 0-9 _ . : -")
    return given


async def read_upload(request, limits: UploadLimits) -> tuple[bytes, str | None]:
    """The image bytes and their declared content type, from multipart field ``file`` or a raw body."""
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException

    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limits.max_bytes + MULTIPART_OVERHEAD):
        raise UploadError(413, f"request body too large ({length} bytes); images of at most {limits.max_bytes:,} bytes are accepted")
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=8, max_part_size=64 * 1024)
        except HTTPException as e:
            raise UploadError(400, f"malformed multipart body: {e.detail}") from None
        except Exception as e:  # noqa: BLE001 - any parser failure is the client's malformed body
            raise UploadError(400, f"malformed multipart body ({type(e).__name__})") from None
        try:
            upload = form.get("file")
            if upload is None:
                raise UploadError(422, f"multipart field 'file' is missing (got fields {sorted(form.keys())}); "
                                       "send the image as file=@image.png")
            if not isinstance(upload, UploadFile):
                raise UploadError(422, "multipart field 'file' must be a file upload, not a text field")
            data = await upload.read(limits.max_bytes + 1)
            return data, upload.content_type
        finally:
            await form.close()
    if ctype.startswith("image/"):
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_bytes:
                raise UploadError(413, f"the upload has more than {limits.max_bytes:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks), ctype
    raise UploadError(415, "send multipart/form-data with the image in the field 'file', or a raw image/png or "
                           f"image/jpeg body (got content type {ctype or 'none'!r})")


def create_app(service: Service):
    """The FastAPI app around ``service``."""
    app = FastAPI(title="Secure image classifier (course project p4)", docs_url=None, redoc_url=None,
                  openapi_url=None)  # no schema browsing in production
    app.state.service = service
    m = service.metrics

    @app.post("/predict")
    async def predict(request: Request):
        t0 = time.perf_counter()
        headers, status = {}, 500
        try:
            client = client_id(request)
            if service.limiter is not None:
                allowed, retry = service.limiter.allow(client)
                if not allowed:
                    m.rate_limited.inc()
                    headers["Retry-After"] = str(max(1, round(retry)))
                    raise UploadError(429, f"rate limit: at most {service.config.rate:g} requests per second "
                                           f"(burst {service.config.burst}); retry in {retry:.2f} s")
            data, ctype = await read_upload(request, service.config.limits)
            x = decode_upload(data, ctype, service.config.limits)
            status, body = await run_in_threadpool(service.decide, client, x, data)
        except UploadError as e:
            status, body = e.status, {"detail": e.message}
        except Exception as e:  # noqa: BLE001 - a bug: answer 500 without internals, count it
            status, body = 500, {"detail": f"internal error ({type(e).__name__}); the incident was logged"}
        finally:
            m.requests.labels(str(status)).inc()
            m.latency.observe(time.perf_counter() - t0)
        if body.get("flagged"):
            headers["X-Flagged"] = "1"
        return JSONResponse(body, status_code=status, headers=headers)

    @app.get("/health")
    def health():
        c = service.config
        return {"status": "ok", "model_sha256": c.model_sha256, "defended": c.defended, "enforce": c.enforce,
                "smoothing_sigma": c.sigma if c.defended else None, "uptime_s": round(time.time() - service.started, 1)}

    @app.get("/metrics")
    def metrics():
        return Response(m.render(), media_type=CONTENT_TYPE)

    @app.exception_handler(404)
    async def not_found(request, exc):
        return JSONResponse({"detail": "not found: the API has POST /predict, GET /health and GET /metrics"}, 404)

    return app
