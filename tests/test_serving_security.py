"""The p4 image API under hostile clients (issue 17): each test reproduces one attack or fault.

Disk fill by a chunked upload, decoding on the event loop, stalled bodies, Sybil identities and
forwarded headers, 16-bit and EXIF-rotated images, unvalidated sidecars and CLI values, what
``/health`` and the answers reveal, and the memory of the stateful layers. Servers bind 127.0.0.1.
"""
import io
import json
import math
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from course_utils import data, models, training
from course_utils.config import seed_everything
from course_utils.serving import ModelFileError, Service, ServiceConfig, create_app, export_model, load_service_model
from course_utils.serving import app as app_module
from course_utils.serving.__main__ import main as serving_main
from course_utils.serving.client import (ApiClient, ServiceProcess, ThreadedServer, chunked_upload, heaviest_png,
                                         stalled_upload)
from course_utils.serving.identity import ApiKeys, peer_identity
from course_utils.serving.layers import QueryPatternDetector
from course_utils.serving.store import read_flags
from course_utils.serving.uploads import PIXEL_FACTOR, UploadError, UploadLimits, decode_upload, encode_png


@pytest.fixture(scope="module")
def images():
    return data.subset_tensors(data.load_dataset("mnist", "test"), 64, seed=1)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, images):
    seed_everything(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    export_model(models.mnist_small_cnn().eval(), path, "mnist_small_cnn", x_calib=images[0][:32], fpr=0.25)
    return path


def make_service(model_file, db, **kw):
    model, meta = load_service_model(model_file)
    cfg = dict(db_path=db, threshold=meta["detector_threshold"], rate=1000.0, burst=1000)
    return Service(model, ServiceConfig(**{**cfg, **kw}))


class CountingApp:
    """ASGI wrapper that counts the request-body bytes the app pulls from the server."""

    def __init__(self, app):
        self.app, self.body_bytes = app, 0

    async def __call__(self, scope, receive, send):
        async def counted():
            message = await receive()
            self.body_bytes += len(message.get("body", b""))
            return message
        await self.app(scope, counted, send)


def png_bytes(img: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **save)
    return buf.getvalue()


# ----------------------------------------------------------------------------- 1. disk fill
@pytest.mark.parametrize("multipart", [True, False])
def test_chunked_upload_is_capped_while_streaming(model_file, tmp_path, multipart):
    service = make_service(model_file, tmp_path / "f.sqlite")
    counting = CountingApp(create_app(service))
    cap = service.config.limits.max_bytes + app_module.MULTIPART_OVERHEAD
    with ThreadedServer(counting) as url:
        status, sent = chunked_upload(url, 20 * cap, multipart=multipart)
        assert status == 413, (status, sent)
        # the old code read all 20 MB; now at most one message beyond the cap (uvicorn buffers up to 64 KiB
        # before it pauses reading, and asyncio reads up to 256 KiB at a time)
        assert counting.body_bytes <= cap + 384 * 1024, counting.body_bytes
        status, _, closed = stalled_upload(url, declared_bytes=20 * cap, timeout=10)  # declares too much: not read
        assert status == 413 and closed


# ----------------------------------------------------------------------------- 2. decoding off the loop, pixel cap, body timeout
def test_pixel_cap_is_sized_to_the_model():
    limits = UploadLimits((1, 28, 28))
    assert limits.max_pixels == PIXEL_FACTOR * 28 * 28
    big = png_bytes(Image.fromarray(np.zeros((1000, 1000), np.uint8)))  # 1 Mpx: allowed by the old 16 Mpx limit
    with pytest.raises(UploadError) as e:
        decode_upload(big, "image/png", limits)
    assert e.value.status == 413
    side = int(math.sqrt(limits.max_pixels))
    ok = decode_upload(png_bytes(Image.fromarray(np.zeros((side, side), np.uint8))), "image/png", limits)
    assert ok.shape == (1, 1, 28, 28)


def test_health_answers_while_a_decode_is_running(model_file, tmp_path, images, monkeypatch):
    real = app_module.decode_upload

    def slow_decode(*args, **kwargs):  # a decode that holds its thread for 2 s (time.sleep releases the GIL)
        time.sleep(2.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(app_module, "decode_upload", slow_decode)
    service = make_service(model_file, tmp_path / "f.sqlite")
    with ThreadedServer(create_app(service)) as url:
        box = {}
        t = threading.Thread(target=lambda: box.update(r=ApiClient(url).predict(images[0][0])))
        t.start()
        time.sleep(0.3)  # the upload is now being decoded
        t0 = time.perf_counter()
        assert httpx.get(url + "/health", timeout=10).status_code == 200
        waited = time.perf_counter() - t0
        t.join()
    assert box["r"][0] == 200
    assert waited < 1.0, f"/health waited {waited:.2f} s for a decode: decoding blocks the event loop"


def test_stalled_body_times_out_with_408_and_a_closed_connection(model_file, tmp_path):
    service = make_service(model_file, tmp_path / "f.sqlite", body_timeout_s=1.0)
    with ThreadedServer(create_app(service)) as url:
        status, elapsed, closed = stalled_upload(url, declared_bytes=10_000, sent_bytes=100, timeout=8)
        assert status == 408 and closed and elapsed < 6, (status, elapsed, closed)
        assert httpx.get(url + "/health").status_code == 200


# ----------------------------------------------------------------------------- 3. identity
def test_rotating_client_ids_are_rate_limited_like_one_client(model_file, tmp_path, images):
    service = make_service(model_file, tmp_path / "f.sqlite", rate=0.001, burst=5)
    png = encode_png(images[0][0])
    with ThreadedServer(create_app(service)) as url, httpx.Client(base_url=url) as http:
        codes = [http.post("/predict", files={"file": ("a.png", png, "image/png")},
                           headers={"X-Client-ID": f"sybil-{i}", "X-Forwarded-For": f"10.0.{i}.1"}).status_code
                 for i in range(20)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429] * 15, codes  # the old code answered 20 of 20


def test_forwarded_for_is_honoured_only_from_trusted_proxies(model_file, tmp_path, images):
    service = make_service(model_file, tmp_path / "f.sqlite", rate=0.001, burst=1)
    png = encode_png(images[0][1])
    with ThreadedServer(create_app(service), trusted_proxies=["127.0.0.1"]) as url, httpx.Client(base_url=url) as http:
        codes = [http.post("/predict", files={"file": ("a.png", png, "image/png")},
                           headers={"X-Forwarded-For": f"10.0.{i}.1"}).status_code for i in range(4)]
    assert codes == [200] * 4  # a trusted proxy names four different clients
    assert peer_identity("x" * 5000).startswith("host:") and len(peer_identity("x" * 5000)) < 32
    assert peer_identity("::ffff:10.0.0.1") == "::ffff:a00:1" and peer_identity("10.0.0.1") == "10.0.0.1"


def test_the_cli_trusts_no_forwarded_header_by_default(model_file, tmp_path, images):
    db = tmp_path / "flags.sqlite"
    png = encode_png(images[0][2])
    with ServiceProcess(model_file, db, args=["--rate", "0.001", "--burst", "3", "--query-k", "1",
                                              "--query-delta", "1", "--monitor"]) as svc, httpx.Client(base_url=svc.url) as http:
        codes = [http.post("/predict", files={"file": ("a.png", png, "image/png")},
                           headers={"X-Forwarded-For": ("10.1.2.3" if i else "y" * 5000) + f", 10.0.{i}.1"}).status_code
                 for i in range(6)]
    assert codes[:3] == [200] * 3 and codes[3:] == [429] * 3, codes  # limited like one client
    clients = set(read_flags(db)["client"])
    assert clients == {"127.0.0.1"}, clients  # neither the forwarded values nor a 5,000-character one


def test_api_keys_identify_clients(model_file, tmp_path, images):
    keys = ApiKeys({"app-1": "k" * 32, "app-2": "z" * 32})
    assert keys.client("k" * 32) == "app-1" and keys.client("k" * 31) is None and keys.client(None) is None
    with pytest.raises(ValueError, match="at least"):
        ApiKeys({"app-1": "short"})
    with pytest.raises(ValueError, match="client id"):
        ApiKeys({"x" * 100: "k" * 32})
    service = make_service(model_file, tmp_path / "f.sqlite", api_keys=keys, rate=0.001, burst=2)
    png = encode_png(images[0][3])
    with ThreadedServer(create_app(service)) as url, httpx.Client(base_url=url) as http:
        def post(**headers):
            return http.post("/predict", files={"file": ("a.png", png, "image/png")}, headers=headers).status_code
        assert post() == 401 and post(**{"X-API-Key": "n" * 32}) == 401  # no key, unknown key
        # one key, rotating client ids: one client (burst 2)
        assert [post(**{"X-API-Key": "k" * 32, "X-Client-ID": f"c{i}"}) for i in range(3)] == [200, 200, 429]
        assert post(**{"X-API-Key": "z" * 32}) == 200  # another key: another client


# ----------------------------------------------------------------------------- 4. decoding correctness
def test_16_bit_png_is_scaled_by_its_bit_depth():
    grey = png_bytes(Image.fromarray(np.full((28, 28), 30000, np.uint16)))
    x = decode_upload(grey, "image/png")
    assert x.shape == (1, 1, 28, 28) and torch.allclose(x, torch.full_like(x, 30000 / 65535), atol=1e-4), float(x.mean())
    rgb = decode_upload(grey, "image/png", UploadLimits((3, 28, 28)))
    assert rgb.shape == (1, 3, 28, 28) and abs(float(rgb.mean()) - 30000 / 65535) < 1e-3
    ramp = np.tile(np.linspace(0, 65535, 56).astype(np.uint16), (56, 1))  # resized too
    y = decode_upload(png_bytes(Image.fromarray(ramp)), "image/png")
    assert 0.0 <= float(y.min()) < 0.05 and 0.95 < float(y.max()) <= 1.0


def test_exif_orientation_is_applied():
    arr = np.zeros((28, 28), np.uint8)
    arr[:14, :14] = 255  # top-left quadrant white
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: rotate 180 degrees to display
    x = decode_upload(png_bytes(Image.fromarray(arr), exif=exif.tobytes()), "image/png")[0, 0]
    assert float(x[14:, 14:].mean()) > 0.99 and float(x[:14, :14].mean()) < 0.01  # shown as the camera meant


# ----------------------------------------------------------------------------- 5. sidecar schema and CLI values
def write_sidecar(model_file, tmp_path, **changes):
    """A copy of model_file whose sidecar has ``changes`` (None deletes a key)."""
    path = tmp_path / "m.pt"
    path.write_bytes(model_file.read_bytes())
    side = json.loads((model_file.parent / "model.pt.json").read_text())
    for k, v in changes.items():
        side.pop(k, None) if v is None else side.__setitem__(k, v)
    (tmp_path / "m.pt.json").write_text(json.dumps(side))
    return path


BAD_SIDECARS = {
    "rgb input for a grey model": dict(input_shape=[3, 28, 28]),
    "empty input": dict(input_shape=[1, 0, 0]),
    "input shape not a list": dict(input_shape="28x28"),
    "NaN threshold": dict(detector_threshold=float("nan")),
    "infinite threshold": dict(detector_threshold=float("inf")),
    "threshold as text": dict(detector_threshold="0.1"),
    "fpr out of range": dict(detector_fpr=2.0),
    "unknown dataset": dict(dataset="imagenet"),
    "too many parameters": dict(architecture_kwargs={"width": 20}),  # 63 M parameters: refused before allocating
    "unknown kwarg": dict(architecture_kwargs={"depth": 3}),
    "no sha256": dict(sha256=None),
    "sha256 not hex": dict(sha256="z" * 64),
}


@pytest.mark.parametrize("name", list(BAD_SIDECARS))
def test_bad_sidecars_are_refused(model_file, tmp_path, name):
    path = write_sidecar(model_file, tmp_path, **BAD_SIDECARS[name])
    with pytest.raises(ModelFileError):
        load_service_model(path)


def test_parameter_bound_is_checked_before_allocating(model_file, tmp_path, monkeypatch):
    path = write_sidecar(model_file, tmp_path, architecture_kwargs={"width": 20})
    built = []
    real = models.build_model
    monkeypatch.setattr(models, "build_model", lambda *a, **k: built.append(torch.empty(0).device) or real(*a, **k))
    with pytest.raises(ModelFileError, match="parameters"):
        load_service_model(path)
    assert all(d.type == "meta" for d in built), built  # only ever built on the meta device


def test_cli_refuses_a_sidecar_without_sha256_in_one_line(model_file, tmp_path):
    path = write_sidecar(model_file, tmp_path, sha256=None)
    r = subprocess.run([sys.executable, "-m", "course_utils.serving", "--model", str(path), "--db", str(tmp_path / "f.db")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "SHA-256" in r.stderr


BAD_OPTIONS = [["--smooth-n", "0"], ["--smooth-alpha", "5"], ["--smooth-alpha", "0"], ["--threshold", "nan"],
               ["--threshold", "inf"], ["--max-bytes", "0"], ["--port", "70000"], ["--port", "0"], ["--rate", "-1"],
               ["--rate", "inf"], ["--burst", "0"], ["--query-k", "0"], ["--query-delta", "nan"], ["--block-s", "-1"],
               ["--body-timeout", "0"], ["--threads", "0"], ["--sigma", "-0.5"], ["--sigma", "nan"],
               ["--trusted-proxies", "not-an-ip"], ["--query-window", "0"]]


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=lambda b: " ".join(b))
def test_cli_range_checks_every_option(model_file, tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as e:
        serving_main(["--model", str(model_file), "--db", str(tmp_path / "f.db"), *bad])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and bad[0] in err, err


def test_cli_refuses_bad_api_key_files(model_file, tmp_path, capsys):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"app": "short"}))
    with pytest.raises(SystemExit) as e:
        serving_main(["--model", str(model_file), "--db", str(tmp_path / "f.db"), "--api-keys", str(keys)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "at least" in err, err


def test_service_config_refuses_non_finite_values(tmp_path):
    for bad in (dict(threshold=float("nan")), dict(threshold=float("inf")), dict(smooth_n=0), dict(smooth_alpha=1.5),
                dict(sigma=float("inf")), dict(query_history=2, query_k=5), dict(body_timeout_s=float("nan"))):
        with pytest.raises(ValueError):
            ServiceConfig(db_path=tmp_path / "f.db", **bad)


# ----------------------------------------------------------------------------- 6. what clients are told
def test_health_and_answers_reveal_no_detector_verdicts(model_file, tmp_path, images):
    enforce = make_service(model_file, tmp_path / "e.sqlite", query_k=1, query_delta=1.0, block_s=0.0)
    png = encode_png(images[0][4])
    with ThreadedServer(create_app(enforce)) as url, httpx.Client(base_url=url, headers={"X-Client-ID": "a"}) as http:
        assert http.get("/health").json() == {"status": "ok"}
        answers = [http.post("/predict", files={"file": ("a.png", png, "image/png")}) for _ in range(3)]
    assert enforce.store.count() >= 2  # the repeats were flagged and logged ...
    assert all("x-flagged" not in r.headers and "flagged" not in r.json() for r in answers)  # ... but not announced
    monitor = make_service(model_file, tmp_path / "m.sqlite", query_k=1, query_delta=1.0, enforce=False,
                           health_details=True)
    with ThreadedServer(create_app(monitor)) as url, httpx.Client(base_url=url) as http:
        health = http.get("/health").json()
        answers = [http.post("/predict", files={"file": ("a.png", png, "image/png")}) for _ in range(3)]
    assert health["status"] == "ok" and health["enforce"] is False  # details only when the operator asks
    assert answers[-1].headers["x-flagged"] == "1" and answers[-1].json()["flagged"] is True


# ----------------------------------------------------------------------------- 7. memory of the stateful layers
def test_query_detector_memory_is_bounded_and_idle_clients_pruned(images):
    det = QueryPatternDetector(k=2, history=10, window_s=60.0, max_clients=3)
    assert det.memory_bound_bytes == 3 * 10 * (49 + 1) * 4  # clients x history x (signature + time) x float32
    x = images[0][:1]
    for i in range(5):
        det.observe(f"c{i}", x, now=0.0)
    assert len(det) == 3  # least recently seen dropped
    det.observe("late", x, now=120.0)  # every other client idle for longer than the window
    assert len(det) == 1


def test_quarantine_is_pruned(model_file, tmp_path, images):
    service = make_service(model_file, tmp_path / "f.sqlite", query_k=1, query_delta=1.0, block_s=0.05)
    x = images[0][:1]
    for _ in range(2):
        service.decide("attacker", x, b"png")
    assert "attacker" in service.state.blocks
    time.sleep(0.1)
    service.decide("someone-else", images[0][1:2], b"png")
    assert "attacker" not in service.state.blocks
