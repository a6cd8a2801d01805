"""The image API of project p4 (course_utils.serving): real HTTP on loopback, bad inputs, load, restart.

Servers bind 127.0.0.1 on a free port; traffic is bounded (about 200 requests in all). The model
is an untrained seeded CNN with the squeeze threshold calibrated for a 25% false-positive rate,
so that ordinary traffic produces flags to count.
"""
import io
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from course_utils import data, models
from course_utils.config import seed_everything
from course_utils.serving import ModelFileError, Service, ServiceConfig, create_app, export_model, load_service_model
from course_utils.serving.client import (ApiClient, Blocked, bomb_png, flagged, LabelOracle, ServiceProcess, ThreadedServer,
                                         Traffic, hop_skip_jump, hostile_uploads, start_image, with_retries)
from course_utils.serving.identity import ApiKeys
from course_utils.serving.layers import Classifier, QueryPatternDetector, knn_distance
from course_utils.serving.metrics import operator_metrics_url
from course_utils.serving.ratelimit import TokenBucketLimiter
from course_utils.serving.store import FlagStore, read_flags
from course_utils.serving.uploads import UploadError, decode_upload, encode_png


@pytest.fixture(scope="module")
def images():
    return data.subset_tensors(data.load_dataset("mnist", "test"), 128, seed=0)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, images):
    seed_everything(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    export_model(models.mnist_small_cnn().eval(), path, "mnist_small_cnn", x_calib=images[0][:64], fpr=0.25)
    return path


def make_service(model_file, db, **kw):
    model, meta = load_service_model(model_file)
    cfg = dict(db_path=db, threshold=meta["detector_threshold"], rate=1000.0, burst=1000, model_sha256=meta["sha256"])
    return Service(model, ServiceConfig(**{**cfg, **kw}))


@pytest.fixture(scope="module")
def server(model_file, tmp_path_factory):
    service = make_service(model_file, tmp_path_factory.mktemp("db") / "flags.sqlite")
    with ThreadedServer(create_app(service)) as url:
        yield url, service


def png(arr, mode="L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- unit tests of the layers
def test_decode_upload_round_trip(images):
    x = images[0][:1]
    got = decode_upload(encode_png(x), "image/png")
    assert got.shape == (1, 1, 28, 28) and torch.allclose(got, (x * 255).round() / 255, atol=1e-6)
    rgb = decode_upload(jpeg(np.full((56, 40, 3), 200, np.uint8)), "image/jpeg")  # resized and made grey
    assert rgb.shape == (1, 1, 28, 28) and 0.7 < rgb.mean() < 0.85
    with pytest.raises(UploadError) as e:
        decode_upload(bomb_png(), "image/png")
    assert e.value.status == 413


def test_token_bucket_refills():
    now = [0.0]
    lim = TokenBucketLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [lim.allow("a")[0] for _ in range(4)] == [True, True, True, False]
    assert lim.allow("b")[0]  # per client
    ok, retry = lim.allow("a")
    assert not ok and retry == pytest.approx(0.5)
    now[0] = 0.5
    assert lim.allow("a")[0] and not lim.allow("a")[0]
    with pytest.raises(ValueError):
        TokenBucketLimiter(rate=0, burst=1)


def test_query_pattern_flags_near_duplicates_only(images):
    x = images[0]
    det = QueryPatternDetector(k=3, delta=0.02)
    distinct = [det.observe("honest", x[i:i + 1])[1] for i in range(20)]
    g = torch.Generator().manual_seed(0)
    dupes = [det.observe("attacker", (x[:1] + 0.05 * (2 * torch.rand(1, 1, 28, 28, generator=g) - 1)).clamp(0, 1))[1]
             for _ in range(10)]
    assert not any(distinct)
    assert dupes[:3] == [False] * 3 and all(dupes[3:])  # needs k earlier queries, then flags
    h = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.1, 0.1]])
    assert knn_distance(h, torch.zeros(2), 2) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        knn_distance(h, torch.zeros(2), 4)


def test_smoothed_classifier_abstains_on_noise(images):
    class Coin(torch.nn.Module):  # a base classifier that guesses: the smoothed one must abstain
        def forward(self, x):
            return torch.randn(x.shape[0], 10, generator=g)

    g = torch.Generator().manual_seed(0)
    x = images[0][:1]
    assert Classifier(Coin(), sigma=0.25, n=50).predict(x) == (-1, True)
    sure = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    with torch.no_grad():
        sure[1].weight.zero_()
        sure[1].bias.copy_(torch.arange(10.0))
    assert Classifier(sure, sigma=0.25, n=50).predict(x) == (9, False)
    assert Classifier(sure).predict(x) == (9, False)  # no smoothing: argmax


def test_model_file_checks(model_file, tmp_path):
    model, meta = load_service_model(model_file)
    assert meta["architecture"] == "mnist_small_cnn" and meta["detector_threshold"] > 0
    bad = tmp_path / "tampered.pt"
    raw = bytearray(model_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    (tmp_path / "tampered.pt.json").write_text((model_file.parent / "model.pt.json").read_text())
    with pytest.raises(ModelFileError, match="SHA-256"):
        load_service_model(bad)
    (tmp_path / "nosidecar.pt").write_bytes(model_file.read_bytes())
    with pytest.raises(ModelFileError, match="sidecar"):
        load_service_model(tmp_path / "nosidecar.pt")


def test_tampered_model_refused_at_startup(model_file, tmp_path):
    bad = tmp_path / "m.pt"
    raw = bytearray(model_file.read_bytes())
    raw[-100] ^= 0x01
    bad.write_bytes(bytes(raw))
    (tmp_path / "m.pt.json").write_text((model_file.parent / "model.pt.json").read_text())
    r = subprocess.run([sys.executable, "-m", "course_utils.serving", "--model", str(bad), "--db", str(tmp_path / "f.db"),
                        "--port", "9"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "refusing to start" in r.stderr and "SHA-256" in r.stderr, r.stderr


# ----------------------------------------------------------------------------- HTTP: valid and bad inputs
def test_valid_images_png_jpeg_raw(server, images, model_file, tmp_path):
    url, _ = server
    x = images[0]
    with ApiClient(url, "valid") as c:
        status, body = c.predict(x[0])
        assert status == 200 and body["decision"] in ("accept", "rejected") and "request_id" in body
        assert set(body) == {"request_id", "label", "decision"}  # no scores, probabilities or detector verdicts
        arr = (x[1, 0].numpy() * 255).astype(np.uint8)
        assert c.predict(data=jpeg(arr), content_type="image/jpeg")[0] == 200
        raw = c.http.post("/predict", content=encode_png(x[2]), headers={"Content-Type": "image/png"})
        assert raw.status_code == 200
        assert c.http.get("/health").json() == {"status": "ok"}  # details only with --health-details
    details = make_service(model_file, tmp_path / "d.sqlite", health_details=True)
    with ThreadedServer(create_app(details)) as url:
        health = httpx.get(url + "/health").json()
        assert health["status"] == "ok" and len(health["model_sha256"]) == 64 and health["enforce"] is True


BAD_INPUTS = {
    "empty file": dict(files={"file": ("a.png", b"", "image/png")}),
    "empty body, no content type": dict(),
    "empty raw png body": dict(content=b"", headers={"Content-Type": "image/png"}),
    "text body": dict(content=b"hello", headers={"Content-Type": "text/plain"}),
    "json body": dict(json={"file": "x"}),
    "wrong declared type": dict(files={"file": ("a.txt", b"hello", "text/plain")}),
    "gif declared as png": dict(files={"file": ("a.png", b"GIF89a" + b"\0" * 50, "image/png")}),
    "jpeg declared as png": dict(files={"file": ("a.png", jpeg(np.zeros((28, 28), np.uint8)), "image/png")}),
    "truncated png": dict(files={"file": ("a.png", png(np.random.default_rng(0).integers(0, 255, (28, 28), np.uint8))[:60], "image/png")}),
    "corrupt png": dict(files={"file": ("a.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "image/png")}),
    "corrupt jpeg": dict(files={"file": ("a.jpg", b"\xff\xd8\xff\xe0" + b"\x13" * 500, "image/jpeg")}),
    "huge dimensions": dict(files={"file": ("a.png", png(np.zeros((8, 5000), np.uint8)), "image/png")}),
    "decompression bomb": dict(files={"file": ("a.png", bomb_png(), "image/png")}),
    "too many bytes": dict(content=b"\x89PNG\r\n\x1a\n" + b"\0" * 1_100_000, headers={"Content-Type": "image/png"}),
    "wrong field name": dict(files={"image": ("a.png", png(np.zeros((28, 28), np.uint8)), "image/png")}),
    "field is text": dict(data={"file": "not a file"}, files={"other": ("a.txt", b"x", "text/plain")}),
    "multipart without boundary": dict(content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}),
    "garbage multipart": dict(content=b"\x00\xff" * 100, headers={"Content-Type": "multipart/form-data; boundary=zz"}),
    "png declared as jpeg, raw": dict(content=png(np.zeros((28, 28), np.uint8)), headers={"Content-Type": "image/jpeg"}),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_inputs_get_4xx_and_service_keeps_serving(server, images, name):
    url, _ = server
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/predict", **BAD_INPUTS[name])
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        assert isinstance(r.json()["detail"], str) and len(r.json()["detail"]) > 10, r.text
        i = list(BAD_INPUTS).index(name)  # a fresh image: repeats would look like a query attack
        ok = http.post("/predict", files={"file": ("a.png", encode_png(images[0][60 + i]), "image/png")})
        assert ok.status_code == 200, ok.text


def test_wrong_method_and_path(server):
    url, _ = server
    assert httpx.get(url + "/predict").status_code == 405
    r = httpx.get(url + "/admin")
    assert r.status_code == 404 and "POST /predict" in r.json()["detail"]


def test_rate_limit_and_metrics(model_file, tmp_path, images):
    service = make_service(model_file, tmp_path / "f.sqlite", rate=1.0, burst=3)
    with ThreadedServer(create_app(service)) as url, ApiClient(url, "flood") as c:
        codes = [c.predict(images[0][i])[0] for i in range(6)]
        assert codes[:3] == [200] * 3 and codes[3:] == [429] * 3
        r = c.http.post("/predict", files={"file": ("a.png", encode_png(images[0][0]), "image/png")})
        assert r.headers["Retry-After"] == "1" and "rate limit" in r.json()["detail"]
        m = c.metrics()
        assert m["rate_limited"] == 4 and m["requests"]["429"] == 4 and m["total"] == 7
        assert c.http.get("/metrics").status_code == 404  # counters are the operator's, on its own port
        assert "imageapi_request_latency_seconds_bucket" in httpx.get(operator_metrics_url(url)).text


# ----------------------------------------------------------------------------- the client: retries, traffic, oracle
def scripted(statuses, calls):
    """request() for with_retries: answers the given statuses in turn, counting the calls."""
    answers = iter(statuses)

    def request():
        calls.append(1)
        return httpx.Response(next(answers))
    return request


def test_with_retries_retries_429_and_503_up_to_a_limit():
    calls, waits = [], []
    r = with_retries(scripted([429, 503, 200], calls), retries=5, wait=0.1, sleep=waits.append)
    assert r.status_code == 200 and len(calls) == 3 and waits == [0.1, 0.1]
    calls.clear()
    r = with_retries(scripted([429] * 10, calls), retries=3, wait=0.1, sleep=waits.append)
    assert r.status_code == 429 and len(calls) == 4  # gave up: the first try and 3 retries
    for status in (200, 400, 403, 413, 500):  # answered, refused or broken: never asked again
        calls.clear()
        assert with_retries(scripted([status, 200], calls), retries=3, sleep=waits.append).status_code == status
        assert len(calls) == 1
    calls.clear()
    assert with_retries(scripted([429, 200], calls), sleep=waits.append).status_code == 429  # default: no retry
    with pytest.raises(ValueError):
        with_retries(scripted([200], calls), retries=-1)


def test_api_client_retries_a_rate_limit(model_file, tmp_path, images):
    service = make_service(model_file, tmp_path / "f.sqlite", rate=4.0, burst=1)
    with ThreadedServer(create_app(service)) as url:
        with ApiClient(url, "patient", retries=50, wait=0.05) as patient:
            assert [patient.predict(images[0][i])[0] for i in range(3)] == [200] * 3  # waited for tokens
    # a bucket that refills once in 1,000 s: no token can come back while the impatient client retries,
    # however slow the machine (at 4 tokens/s a slow metrics call refilled it, and the test flaked)
    service = make_service(model_file, tmp_path / "g.sqlite", rate=0.001, burst=1)
    with ThreadedServer(create_app(service)) as url:
        with ApiClient(url, "impatient", retries=2, wait=0.01) as impatient:
            assert impatient.predict(images[0][3])[0] == 200
            before = impatient.metrics()["requests"].get("429", 0)
            assert impatient.predict(images[0][4])[0] == 429  # gave up
            assert impatient.metrics()["requests"]["429"] - before == 3  # one try and two retries


def test_traffic_keeps_ground_truth_and_a_timeline(server, images):
    url, _ = server
    x, y = images[0][40:46], images[1][40:46]
    traffic = Traffic(ApiClient(url, "ops"))
    df = traffic.send([ApiClient(url, "traffic-a"), ApiClient(url, "traffic-b")], x, y, "test", every=4)
    assert len(df) == 6 and (df.status == 200).all() and df.y.tolist() == y.tolist()
    assert sorted(traffic.sent.values()) == sorted((int(v), "test") for v in y)
    assert [row["phase"] for row in traffic.timeline] == ["test", "test"]  # after 4 requests, and at the end
    assert traffic.timeline[1]["requests"] - traffic.timeline[0]["requests"] == 2


def test_hostile_uploads_are_refused(server, images):
    url, _ = server
    with ApiClient(url, "prober-test") as c:
        for name, (payload, content_type) in hostile_uploads(encode_png(images[0][50])).items():
            status, body = c.predict(data=payload, content_type=content_type)
            assert 400 <= status < 500 and len(body["detail"]) > 10, (name, status, body)
        assert c.predict(images[0][51])[0] == 200


def test_label_oracle_rotates_identities_and_gives_up_when_blocked():
    ids = []

    def handler(request):  # 3 answers, a rejection, then 403 for ever
        ids.append(request.headers["X-Client-ID"])
        if len(ids) <= 4:
            return httpx.Response(200, json={"label": 7 if len(ids) <= 3 else None, "decision": "accept", "flagged": False})
        return httpx.Response(403, json={"label": None, "decision": "blocked", "flagged": True})

    snaps = []
    oracle = LabelOracle("http://test", "hsj-0", fallback=2, phase="p", rotate=2, give_up=3, monitor=snaps.append, every=2,
                         transport=httpx.MockTransport(handler))
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    out = oracle(x)
    assert out.shape == (4, 10) and out.sum(1).tolist() == [1.0] * 4 and out.argmax(1).tolist() == [7, 7, 7, 2]
    assert ids == ["hsj-0-0", "hsj-0-0", "hsj-0-2", "hsj-0-2"] and snaps == ["p", "p"]
    with pytest.raises(Blocked):
        oracle(x)
    assert [r["status"] for r in oracle.log] == [200] * 4 + [403] * 3 and ids[-1] == "hsj-0-6"


def test_hop_skip_jump_from_a_start_image_stays_adversarial():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 28, 28, generator=g)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    with torch.no_grad():
        y = model(x).argmax(1)
        labels = lambda a: torch.nn.functional.one_hot(model(torch.from_numpy(a)).argmax(1), 10).float().numpy()  # noqa: E731
        start = start_image(x, y, 0, lambda xi: int(model(xi[None]).argmax(1)))
        assert start is not None and int(model(torch.from_numpy(start)).argmax(1)) != y[0]
        x_adv = hop_skip_jump(labels, x[:1], dict(max_iter=2, max_eval=20, init_eval=10, init_size=20), start)
        assert x_adv.shape == (1, 1, 28, 28) and 0 <= x_adv.min() and x_adv.max() <= 1
        assert int(model(x_adv).argmax(1)) != y[0]  # still misclassified, and closer to x than the start
        assert (x_adv - x[:1]).norm() < (torch.from_numpy(start) - x[:1]).norm()
    assert start_image(x, torch.zeros(6, dtype=torch.long), 0, lambda xi: 0) is None  # no other class: no start


# ----------------------------------------------------------------------------- load and durability
KEYS = {f"load-{k}": f"load-key-{k}-" + "x" * 16 for k in range(4)}  # API keys issued to the four load clients


def test_loopback_clients_share_one_identity_by_default(model_file, tmp_path, images):
    """Without --api-keys a client is its peer address: two clients on 127.0.0.1 with different
    X-Client-ID headers share one rate-limit bucket (and one quarantine)."""
    service = make_service(model_file, tmp_path / "f.sqlite", rate=0.001, burst=4)
    with ThreadedServer(create_app(service)) as url, ApiClient(url, "alice") as a, ApiClient(url, "bob") as b:
        codes = [(a if i % 2 else b).predict(images[0][i])[0] for i in range(6)]
    assert codes == [200] * 4 + [429] * 2, codes


def test_bounded_load_no_5xx_no_lost_records(model_file, tmp_path, images):
    """4 concurrent clients x 25 requests, each with its own API key (on loopback they share one
    address); one client sends near-duplicates (query attack pattern) and is blocked alone."""
    service = make_service(model_file, tmp_path / "f.sqlite", api_keys=ApiKeys(KEYS))
    x = images[0]
    g = torch.Generator().manual_seed(1)

    def client(k):
        out = []
        with ApiClient(url, api_key=KEYS[f"load-{k}"]) as c:
            for i in range(25):
                xi = x[(25 * k + i) % len(x)] if k else (x[0] + 0.02 * torch.rand(x[0].shape, generator=g)).clamp(0, 1)
                t0 = time.perf_counter()
                status, body = c.predict(xi)
                out.append((k, status, flagged(body), time.perf_counter() - t0))
        return out

    with ThreadedServer(create_app(service)) as url, ThreadPoolExecutor(4) as pool:
        results = [r for rs in pool.map(client, range(4)) for r in rs]
    statuses = [s for _, s, _, _ in results]
    lat = np.array([t for _, _, _, t in results]) * 1000
    print(f"\nload: {len(results)} requests, statuses {dict(zip(*np.unique(statuses, return_counts=True)))}, "
          f"latency p50 {np.percentile(lat, 50):.1f} ms p95 {np.percentile(lat, 95):.1f} ms p99 {np.percentile(lat, 99):.1f} ms")
    assert len(results) == 100 and max(statuses) < 500
    assert 403 in [s for k, s, _, _ in results if k == 0]  # the near-duplicate client was caught and blocked ...
    assert 403 not in [s for k, s, _, _ in results if k > 0]  # ... and only it
    n_flagged = sum(f for _, _, f, _ in results)
    assert n_flagged > 0 and service.store.count() == n_flagged
    assert set(read_flags(tmp_path / "f.sqlite").client) <= set(KEYS)


def test_records_survive_a_kill(model_file, tmp_path, images):
    db = tmp_path / "flags.sqlite"
    with ServiceProcess(model_file, db, args=["--rate", "1000", "--burst", "1000", "--query-k", "2"]) as svc:
        with ApiClient(svc.url, "victim") as c:
            n_flagged = sum(flagged(c.predict(images[0][0])[1]) for _ in range(6))  # same image: query pattern
        svc.kill()  # SIGKILL right after the responses: no clean shutdown
        assert svc.proc.returncode == -9
    rows = read_flags(db)
    assert n_flagged >= 4 and len(rows) == n_flagged
    assert set(rows["decision"]) <= {"blocked", "rejected"} and (rows["client"] == "127.0.0.1").all()
    store = FlagStore(db)  # a restarted service appends to the same log
    store.record("after-restart", "rejected", ["squeeze"], 0.5)
    assert store.count() == n_flagged + 1
    store.close()
