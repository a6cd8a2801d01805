"""Where the defenses keep their state (project p4): in the process, or in Redis shared by every worker.

Three pieces of state decide a request: the client's **token bucket** (``ratelimit``), its recent
**query history** that the query-pattern detector searches (``layers.QueryPatternDetector``), and
the **quarantine** of clients the detector caught. Kept in process memory, each of N workers holds
its own copy: a client whose connections land on N workers gets N buckets, N partial histories and
N - 1 ways out of quarantine (notebook p4, section 9). Two backends with one interface:

- ``LocalState`` (``--state local``, the default for one worker): ``ratelimit.TokenBucketLimiter``,
  ``LocalHistories`` (one preallocated ring per client) and a dict of quarantine ends.
- ``RedisState`` (``--state redis://HOST:PORT/DB``): the token bucket is a Lua script that reads
  the server's clock (``TIME``), refills, spends and writes back atomically, so concurrent workers
  never lose an update; each client's history is a Redis list, pushed and read by one script,
  trimmed to ``history`` entries and expiring ``window_s`` after the client's last query; a
  quarantine is a key with a ``PX`` expiry. Every key expires, so idle clients cost nothing.

The interface: ``allow(client) -> (allowed, retry_after_s)``; ``histories.push(client, s, now)
-> (N, D)``, the client's earlier signatures within the window (before s was added), which
``layers.QueryPatternDetector`` searches; ``block(client, seconds)``, ``blocked(client) -> bool``,
``ping()``. A backend that cannot answer raises ``StateUnavailable``;
the app then fails closed (HTTP 503, see ``app``): without its state no layer can decide.

Redis is not the store of record: the flag log stays in SQLite (``store``), written by every worker
of one host. Lost Redis state costs buckets, histories and quarantines, never an acknowledged flag.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from urllib.parse import urlsplit

import numpy as np
import torch

from .ratelimit import TokenBucketLimiter


class StateUnavailable(RuntimeError):
    """The state store did not answer (Redis down or unreachable): the request cannot be decided."""


class LocalHistories:
    """Per-client ring of the last ``history`` signatures (D,) seen within ``window_s`` seconds.

    ``push(client, s, now)`` -> the client's earlier signatures still in the window, (N, D), then
    stores s. Memory: at most ``memory_bound_bytes`` = max_clients x history x (D + 1) x 4 bytes;
    clients idle for longer than ``window_s`` are dropped, and beyond ``max_clients`` the least
    recently seen go first.
    """

    def __init__(self, history: int, window_s: float, max_clients: int, dim: int):
        if history < 1 or not window_s > 0 or max_clients < 1:
            raise ValueError(f"need history >= 1, window_s > 0, max_clients >= 1, got {history!r}, {window_s!r}, {max_clients!r}")
        self.history, self.window_s, self.max_clients, self.dim = history, float(window_s), max_clients, dim
        self._rings: OrderedDict[str, dict] = OrderedDict()  # client -> ring; least recently seen first
        self._lock = threading.Lock()

    @property
    def memory_bound_bytes(self) -> int:
        return self.max_clients * self.history * (self.dim + 1) * 4

    def __len__(self):
        return len(self._rings)

    def _prune(self, now: float):
        while self._rings:  # idle clients: their last query is older than the window
            last = next(iter(self._rings.values()))["last"]
            if now - last <= self.window_s and len(self._rings) <= self.max_clients:
                break
            self._rings.popitem(last=False)

    def push(self, client: str, s: torch.Tensor, now: float | None = None) -> torch.Tensor:
        now = time.monotonic() if now is None else now
        with self._lock:
            ring = self._rings.pop(client, None) or {
                "sig": torch.zeros(self.history, self.dim), "time": torch.full((self.history,), -float("inf")),
                "pos": 0, "last": now}
            past = ring["sig"][ring["time"] >= now - self.window_s].clone()
            ring["sig"][ring["pos"]], ring["time"][ring["pos"]] = s, now
            ring["pos"], ring["last"] = (ring["pos"] + 1) % self.history, now
            self._rings[client] = ring  # most recently seen last
            self._prune(now)
        return past

    def forget(self, client: str):
        with self._lock:
            self._rings.pop(client, None)


class LocalState:
    """In-process state (one worker): a token bucket, query histories and the quarantine per client.

    rate / burst: the token bucket; history / window_s: signatures kept per client (``dim`` values
    each); max_clients: the LRU bound of each of the three.
    """

    kind = "local"

    def __init__(self, rate: float, burst: int, history: int, window_s: float, dim: int, max_clients: int = 2_000):
        self.limiter = TokenBucketLimiter(rate, burst, max_clients=max_clients)
        self.histories = LocalHistories(history, window_s, max_clients, dim)
        self.max_clients = max_clients
        self.blocks: OrderedDict[str, float] = OrderedDict()  # client -> end of its block (monotonic), earliest first
        self._lock = threading.Lock()

    def allow(self, client: str) -> tuple[bool, float]:
        return self.limiter.allow(client)

    def _prune(self, now: float):
        """Drop ended blocks (same block_s: they end in the order they began) and the oldest beyond max_clients."""
        while self.blocks and (next(iter(self.blocks.values())) <= now or len(self.blocks) > self.max_clients):
            self.blocks.popitem(last=False)

    def block(self, client: str, seconds: float):
        with self._lock:
            self.blocks.pop(client, None)
            self.blocks[client] = time.monotonic() + seconds
            self._prune(time.monotonic())

    def blocked(self, client: str) -> bool:
        with self._lock:
            now = time.monotonic()
            self._prune(now)
            return self.blocks.get(client, 0.0) > now

    def ping(self):
        pass

    def __str__(self):
        return "local (this process only)"


# KEYS[1]: the client's bucket (a hash); ARGV: rate (tokens/s), burst. Server time, one atomic step.
TOKEN_BUCKET_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]), tonumber(b[2])
if tokens == nil or ts == nil then tokens, ts = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local retry = 0
if allowed == 0 then retry = (1 - tokens) / rate end
return {allowed, string.format('%.17g', retry)}
"""

# KEYS[1]: the client's history (a list, newest first); ARGV: signature bytes, history, window (ms).
# Returns the server time (ms) and the entries before this push ("<ms>:<float32 bytes>").
HISTORY_LUA = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local past = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('LPUSH', KEYS[1], string.format('%d', now_ms) .. ':' .. ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {string.format('%d', now_ms), past}
"""


def redact(url: str) -> str:
    """A Redis URL without its password, for logs and the start line."""
    u = urlsplit(url)
    if u.password is None:
        return url
    user = f"{u.username}:***@" if u.username else ":***@"
    return u._replace(netloc=user + u.netloc.rsplit("@", 1)[1]).geturl()


class RedisState:
    """State shared by every worker through Redis at ``url`` (``redis://[:password@]HOST:PORT/DB``,
    ``rediss://`` for TLS). Same interface and parameters as ``LocalState``; ``prefix`` namespaces
    the keys (``PREFIX:bucket:CLIENT``, ``PREFIX:history:CLIENT``, ``PREFIX:quarantine:CLIENT``).

    Every call is one round trip with a short timeout (``timeout_s``) and no retry: a Redis that
    does not answer raises ``StateUnavailable`` within about ``timeout_s``, and the app answers 503.
    ``connect`` checks the server at start (``PING``) and loads the two scripts.
    """

    kind = "redis"

    def __init__(self, url: str, rate: float, burst: int, history: int, window_s: float, dim: int,
                 prefix: str = "imageapi", timeout_s: float = 1.0):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if urlsplit(url).scheme not in ("redis", "rediss"):
            raise ValueError(f"the state store must be a redis:// or rediss:// URL, got {redact(url)!r}")
        TokenBucketLimiter(rate, burst)  # the same range checks as the local bucket
        self.url, self.rate, self.burst, self.history, self.window_s, self.dim = url, float(rate), burst, history, float(window_s), dim
        self.prefix = prefix
        self._errors = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                           retry=Retry(NoBackoff(), 0), decode_responses=False)
        self._bucket = self.client.register_script(TOKEN_BUCKET_LUA)
        self.histories = RedisHistories(self)

    def _key(self, kind: str, client: str) -> str:
        return f"{self.prefix}:{kind}:{client}"

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except self._errors as e:
            raise StateUnavailable(f"the state store {redact(self.url)} did not answer ({what}: "
                                   f"{type(e).__name__}: {' '.join(str(e).split())[:160]})") from None

    def connect(self) -> "RedisState":
        """PING the server; ``StateUnavailable`` with the reason when it does not answer."""
        self.ping()
        return self

    def ping(self):
        self._call("PING", self.client.ping)

    def allow(self, client: str) -> tuple[bool, float]:
        allowed, retry = self._call("token bucket", self._bucket, keys=[self._key("bucket", client)],
                                    args=[repr(self.rate), self.burst])
        return bool(int(allowed)), float(retry)

    def block(self, client: str, seconds: float):
        self._call("quarantine", self.client.set, self._key("quarantine", client), b"1",
                   px=max(1, int(round(seconds * 1000))))

    def blocked(self, client: str) -> bool:
        return bool(self._call("quarantine", self.client.exists, self._key("quarantine", client)))

    def __str__(self):
        return f"redis {redact(self.url)} (shared by every worker)"


class RedisHistories:
    """The query histories of a ``RedisState``: ``push(client, s, now)`` as ``LocalHistories.push``,
    one atomic script per query (read the list, push s, trim to ``history``, expire after the
    window). ``now`` is ignored: the window is measured on the Redis server's clock."""

    def __init__(self, state: RedisState):
        self.state = state
        self._script = state.client.register_script(HISTORY_LUA)

    def push(self, client: str, s: torch.Tensor, now: float | None = None) -> torch.Tensor:
        st = self.state
        sig = np.ascontiguousarray(s.detach().cpu().numpy(), dtype=np.float32)
        if sig.shape != (st.dim,):
            raise ValueError(f"signature must have shape ({st.dim},), got {sig.shape}")
        window_ms = max(1, int(round(st.window_s * 1000)))
        now_ms, past = st._call("query history", self._script, keys=[st._key("history", client)],
                                args=[sig.tobytes(), st.history, window_ms])
        oldest = int(now_ms) - window_ms
        rows = []
        for entry in past:
            ts, _, raw = entry.partition(b":")
            if int(ts) >= oldest and len(raw) == 4 * st.dim:
                rows.append(np.frombuffer(raw, dtype=np.float32))
        return torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, st.dim)

    def forget(self, client: str):
        self.state._call("query history", self.state.client.delete, self.state._key("history", client))


def make_state(spec: str | None, rate: float, burst: int, history: int, window_s: float, dim: int,
               max_clients: int = 2_000, check: bool = True):
    """``LocalState`` for ``spec`` None or "local", else ``RedisState(spec)``, checked with PING unless
    ``check`` is False (``StateUnavailable`` when it does not answer, ``ValueError`` for a malformed spec).
    A restarted worker does not check: while Redis is down it starts and answers 503, as the others do."""
    if spec in (None, "local"):
        return LocalState(rate, burst, history, window_s, dim, max_clients)
    state = RedisState(spec, rate, burst, history, window_s, dim)
    return state.connect() if check else state
