"""The p4 image API scaled out (issue 35): workers, their state in Redis, failure behaviour, connection limits.

The Redis tests run a real ``redis-server`` (Debian's, as ``.ci/run`` installs it) on a free
loopback port, without persistence; they are skipped, saying why, where it is not installed.
Every server binds 127.0.0.1; traffic is bounded (about 300 requests in all).
"""
import json
import os
import signal
import threading
import time

import httpx
import pytest
import torch

from course_utils import data, models
from course_utils.config import seed_everything
from course_utils.serving import Service, ServiceConfig, create_app, export_model, load_service_model
from course_utils.serving.__main__ import main as serving_main
from course_utils.serving.client import (ApiClient, RedisServer, ServiceProcess, ThreadedServer, free_port,
                                         redis_server_binary, slow_header_clients)
from course_utils.serving.layers import QueryPatternDetector
from course_utils.serving.metrics import operator_metrics_url
from course_utils.serving.state import LocalState, RedisState, StateUnavailable, redact
from course_utils.serving.store import read_flags
from course_utils.serving.uploads import encode_png

NO_REDIS = "redis-server is not installed: the shared-state tests need a real Redis (apt-get install redis-server, as .ci/run does)"
needs_redis = pytest.mark.skipif(redis_server_binary() is None, reason=NO_REDIS)
WORKERS = 4
BURST = 50  # one client's bucket in the multi-worker service (the refill, 1 token per 1,000 s, never adds one)
KEYS = {name: f"{name}-key-" + "k" * 16 for name in ("rotator", "scanner", "victim")}


@pytest.fixture(scope="module")
def images():
    return data.subset_tensors(data.load_dataset("mnist", "test"), 96, seed=2)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, images):
    seed_everything(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    export_model(models.mnist_small_cnn().eval(), path, "mnist_small_cnn", x_calib=images[0][:32], fpr=0.25)
    return path


@pytest.fixture(scope="module")
def redis_server():
    if redis_server_binary() is None:
        pytest.skip(NO_REDIS)
    with RedisServer() as server:
        yield server


def workers_service(model_file, tmp_path, state):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(KEYS))
    return ServiceProcess(model_file, tmp_path / "flags.sqlite", args=[
        "--workers", WORKERS, "--state", state, "--rate", "0.001", "--burst", BURST, "--query-k", "3",
        "--query-delta", "0.02", "--block-s", "300", "--api-keys", keys])


@pytest.fixture(scope="module")
def shared(model_file, tmp_path_factory, redis_server):
    """4 workers sharing their state in Redis; clients are API keys (rotator, scanner, victim)."""
    with workers_service(model_file, tmp_path_factory.mktemp("shared"), redis_server.url) as svc:
        yield svc


def fresh_connection_posts(url, key, pngs):
    """One new connection per request (so the kernel picks a worker each time): statuses and bodies."""
    out = []
    for png in pngs:
        with httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": key}) as http:
            r = http.post("/predict", files={"file": ("a.png", png, "image/png")})
            out.append((r.status_code, r.json()))
    return out


def jittered(x, n, seed=0):
    """n near-copies of x (1, C, H, W): what a query attack sends (noise of +-0.01 per pixel)."""
    g = torch.Generator().manual_seed(seed)
    return [encode_png((x[0] + 0.01 * (2 * torch.rand(x.shape[1:], generator=g) - 1)).clamp(0, 1)) for _ in range(n)]


# ----------------------------------------------------------------------------- the state backends
@needs_redis
def test_redis_token_bucket_admits_exactly_the_burst_under_concurrency(redis_server):
    state = RedisState(redis_server.url, rate=0.001, burst=50, history=10, window_s=60, dim=49, prefix="t-atomic")
    allowed = []

    def hammer():
        allowed.extend(state.allow("one-client")[0] for _ in range(10))

    threads = [threading.Thread(target=hammer) for _ in range(16)]  # 160 concurrent requests, one bucket
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 50, sum(allowed)  # no lost update: never more than the burst

    class ReadThenWrite(RedisState):  # the mutant: read the tokens, decide, write back (two round trips)
        def allow(self, client):
            key = self._key("bucket", client)
            tokens = float(self.client.get(key) or self.burst)
            time.sleep(0.002)  # another worker's request arrives in between
            if tokens >= 1:
                self.client.set(key, tokens - 1)
            return tokens >= 1, 0.0

    naive, allowed = ReadThenWrite(redis_server.url, 0.001, 50, 10, 60, 49, prefix="t-naive"), []
    state = naive
    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) > 50, sum(allowed)  # the test above catches lost updates


@needs_redis
def test_redis_state_behaves_like_local_state(redis_server):
    shared = RedisState(redis_server.url, rate=0.5, burst=3, history=4, window_s=1.0, dim=2, prefix="t-same")
    local = LocalState(rate=0.5, burst=3, history=4, window_s=1.0, dim=2)
    for state in (shared, local):
        assert [state.allow("a")[0] for _ in range(4)] == [True, True, True, False]
        ok, retry = state.allow("a")
        assert not ok and 1.0 < retry <= 2.0, retry  # about 1 / rate for the next token
        assert state.allow("b")[0]  # per client
        sigs = [torch.tensor([float(i), 0.0]) for i in range(6)]
        past = [state.histories.push("h", s) for s in sigs]
        assert [len(p) for p in past] == [0, 1, 2, 3, 4, 4]  # bounded: the last `history` queries
        assert set(past[-1][:, 0].tolist()) == {1.0, 2.0, 3.0, 4.0}  # the newest ones, before this push
        time.sleep(1.1)
        assert len(state.histories.push("h", sigs[0])) == 0  # older than the window: forgotten
        assert not state.blocked("q")
        state.block("q", 0.3)
        assert state.blocked("q") and not state.blocked("other")
        time.sleep(0.4)
        assert not state.blocked("q")
    time.sleep(1.1)
    assert not shared.client.exists("t-same:history:h")  # idle histories expire in Redis: bounded memory
    assert 0 < shared.client.pttl("t-same:bucket:b") <= 3 / 0.5 * 1000 + 1000  # a bucket lives until it is full again


def test_redis_urls_are_checked_and_passwords_redacted():
    assert redact("redis://:s3cret@10.0.0.5:6379/0") == "redis://:***@10.0.0.5:6379/0"
    assert redact("redis://app:s3cret@h:1/2") == "redis://app:***@h:1/2"
    with pytest.raises(ValueError, match="redis://"):
        RedisState("http://127.0.0.1:6379", rate=1.0, burst=1, history=1, window_s=1, dim=1)
    with pytest.raises(StateUnavailable, match="did not answer"):
        RedisState(f"redis://127.0.0.1:{free_port()}/0", 1.0, 1, 1, 1, 1).connect()


# ----------------------------------------------------------------------------- the command line
def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as e:
        serving_main(list(map(str, args)))
    err = capsys.readouterr().err.strip()
    return e.value.code, err


def test_cli_refuses_workers_without_shared_state_and_an_unreachable_redis(model_file, tmp_path, capsys):
    base = ["--model", model_file, "--db", tmp_path / "f.db"]
    code, err = run_cli(capsys, *base, "--workers", "4")
    assert code == 2 and len(err.splitlines()) == 1 and "--workers 4 without --state" in err and "token buckets" in err, err
    code, err = run_cli(capsys, *base, "--state", f"redis://127.0.0.1:{free_port()}/0")
    assert code == 2 and len(err.splitlines()) == 1 and "cannot reach the state store" in err, err
    code, err = run_cli(capsys, *base, "--state", "memcached://127.0.0.1:11211")
    assert code == 2 and len(err.splitlines()) == 1 and "redis://" in err, err
    for bad in (["--workers", "0"], ["--header-timeout", "0"], ["--max-connections", "0"], ["--keep-alive", "nan"],
                ["--metrics-port", "70000"]):
        code, err = run_cli(capsys, *base, *bad)
        assert code == 2 and len(err.splitlines()) == 1 and bad[0] in err, err


# ----------------------------------------------------------------------------- Redis lost while serving
@needs_redis
def test_redis_lost_while_serving_fails_closed_then_recovers(model_file, images, tmp_path, caplog):
    model, meta = load_service_model(model_file)
    config = ServiceConfig(db_path=tmp_path / "f.sqlite", threshold=meta["detector_threshold"], rate=1000.0, burst=1000)
    with RedisServer() as redis:
        state = RedisState(redis.url, config.rate, config.burst, config.query_history, config.query_window_s, 49,
                           timeout_s=0.5).connect()
        service = Service(model, config, state)
        with ThreadedServer(create_app(service)) as url, ApiClient(url) as c:
            assert c.predict(images[0][0])[0] == 200
            redis.kill()
            caplog.clear()
            t0 = time.monotonic()
            answers = [c.http.post("/predict", files={"file": ("a.png", encode_png(images[0][i]), "image/png")})
                       for i in (1, 2, 3)]
            assert [r.status_code for r in answers] == [503] * 3 and time.monotonic() - t0 < 5
            assert answers[0].headers["Retry-After"] == "1" and "retry" in answers[0].json()["detail"]
            assert c.http.get("/health").status_code == 503  # a load balancer takes the worker out
            lines = [r for r in caplog.records if "fail closed" in r.getMessage()]
            assert len(lines) == 1 and "did not answer" in lines[0].getMessage()  # one line, not one per request
            redis.start()  # back on the same port: the service recovers without a restart
            assert c.http.get("/health").status_code == 200
            assert c.predict(images[0][4])[0] == 200


# ----------------------------------------------------------------------------- 4 workers, shared state
@needs_redis
def test_rotation_across_workers_is_limited_like_one_client(shared, images):
    answers = fresh_connection_posts(shared.url, KEYS["rotator"], [encode_png(x) for x in images[0][:BURST + 10]])
    codes = [s for s, _ in answers]
    assert codes.count(200) == BURST and codes[BURST:] == [429] * 10, codes


@needs_redis
def test_spread_queries_reach_the_detector_and_the_quarantine_holds_on_every_worker(shared, images):
    k = 3
    answers = fresh_connection_posts(shared.url, KEYS["scanner"], jittered(images[0][60:61], k + 1 + 36))
    codes = [s for s, _ in answers]
    assert codes[:k] == [200] * k and codes[k:] == [403] * 37, codes  # flagged at the (k+1)-th near-copy, then held
    rows = read_flags(shared.db_path)
    rows = rows[rows.client == "scanner"]
    assert (rows.reasons.map(lambda r: "query_pattern" in r)).sum() == 1
    held = rows[rows.reasons.map(lambda r: r == ["quarantine"])]
    assert len(held) == 36 and set(held.worker) == set(range(WORKERS)), held.worker.value_counts()  # every worker


@needs_redis
def test_a_worker_killed_with_sigkill_loses_no_acknowledged_flag(shared, images):
    acked, before = [], shared.worker_pids()
    assert sorted(before) == list(range(WORKERS))
    pngs = jittered(images[0][70:71], 16, seed=1)
    for i, png in enumerate(pngs):
        if i == 6:
            os.kill(before[2], signal.SIGKILL)
        (status, body), = fresh_connection_posts(shared.url, KEYS["victim"], [png])  # the others keep serving
        assert status in (200, 403), (i, status, body)
        if body["decision"] in ("rejected", "blocked"):
            acked.append(body["request_id"])
    logged = set(read_flags(shared.db_path).request_id)
    assert len(acked) >= 12 and all(r in logged for r in acked), (len(acked), [r for r in acked if r not in logged])
    deadline = time.monotonic() + 60
    while shared.worker_pids().get(2) == before[2] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert shared.worker_pids()[2] != before[2], shared.log_tail()  # restarted
    assert "worker 2" in shared.log_tail() and "signal 9" in shared.log_tail()
    metrics = ApiClient(shared.url).metrics()  # the operator's sum over every worker, the dead one included
    assert metrics["total"] >= BURST + 10 + 40 + 16 and httpx.get(shared.url + "/metrics").status_code == 404


@needs_redis
def test_per_process_state_is_the_hole_the_tests_above_would_catch(model_file, images, tmp_path):
    """The counterfactual: the same rotation against 4 workers with --state local gets more than one bucket."""
    with workers_service(model_file, tmp_path, "local") as svc:
        answers = fresh_connection_posts(svc.url, KEYS["rotator"], [encode_png(x) for x in images[0][:BURST + 10]])
    assert [s for s, _ in answers].count(200) > BURST


# ----------------------------------------------------------------------------- connection limits
@pytest.fixture(scope="module")
def service(model_file, tmp_path_factory):
    model, meta = load_service_model(model_file)
    return Service(model, ServiceConfig(db_path=tmp_path_factory.mktemp("c") / "f.sqlite",
                                        threshold=meta["detector_threshold"], rate=1000.0, burst=1000))


def health_latencies(url, n=10):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        assert httpx.get(url + "/health", timeout=10).status_code == 200
        out.append(time.perf_counter() - t0)
    return out


def test_slow_headers_are_cut_off_and_an_honest_client_keeps_its_latency(service):
    with ThreadedServer(create_app(service), header_timeout_s=1.0, max_connections=256) as url:
        before = sorted(health_latencies(url))
        box = {}
        attack = threading.Thread(target=lambda: box.update(closed=slow_header_clients(url, 120, 0.3, 4.0)))
        attack.start()
        time.sleep(0.3)
        during = sorted(health_latencies(url))
        attack.join()
    closed = box["closed"]
    assert all(c is not None and c < 2.5 for c in closed), sorted(closed, key=lambda c: c or 99)[-5:]
    assert during[5] < max(0.5, 5 * before[5]), (before, during)  # the median request is not held up
    with ThreadedServer(create_app(service), guarded=False) as url:  # plain uvicorn: they stay
        assert all(c is None for c in slow_header_clients(url, 10, 0.3, 2.5))


def test_connection_cap_answers_503_then_frees_slots(service):
    import socket

    with ThreadedServer(create_app(service), header_timeout_s=1.0, max_connections=10) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
        time.sleep(0.2)
        t0 = time.perf_counter()
        r = httpx.get(url + "/health", timeout=5)
        assert r.status_code == 503 and "too many open connections" in r.text and time.perf_counter() - t0 < 1.0
        time.sleep(1.5)  # the idle connections sent no header within 1 s: closed, slots free
        assert httpx.get(url + "/health", timeout=5).status_code == 200
        assert all(s.recv(16) == b"" for s in idle)
        for s in idle:
            s.close()


def test_metrics_are_served_only_on_the_operators_loopback_port(service, images):
    with ThreadedServer(create_app(service)) as url:
        assert httpx.get(url + "/metrics").status_code == 404
        page = operator_metrics_url(url)
        assert page.startswith("http://127.0.0.1:") and page.split(":")[2].split("/")[0] != url.rsplit(":", 1)[1]
        with ApiClient(url) as c:
            c.predict(images[0][5])
            assert c.metrics()["requests"]["200"] >= 1
    assert operator_metrics_url(url) is None  # forgotten once the server stopped
    with pytest.raises(RuntimeError, match="operator"):
        ApiClient("http://127.0.0.1:9").metrics()


def test_query_detector_uses_the_state_it_is_given(images):
    local = LocalState(rate=1.0, burst=1, history=10, window_s=60, dim=49)
    det = QueryPatternDetector(k=2, delta=0.05, history=10, histories=local.histories)
    x = images[0][:1]
    assert [det.observe("c", x)[1] for _ in range(3)] == [False, False, True]
    assert len(local.histories) == 1


def test_a_flag_log_from_before_workers_gains_the_worker_column(tmp_path):
    import sqlite3

    from course_utils.serving.store import SCHEMA, FlagStore

    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as conn:  # the schema as it was, without the worker column
        conn.executescript(SCHEMA.replace(",\n    worker INTEGER                 -- index of the worker process (--workers), NULL for one process", ""))
        assert "worker" not in {row[1] for row in conn.execute("PRAGMA table_info(flags)")}
    FlagStore(old, worker=None).record("a", "rejected", ["squeeze"])
    FlagStore(old, worker=3).record("b", "blocked", ["quarantine"])
    assert read_flags(old).worker.tolist()[1] == 3
