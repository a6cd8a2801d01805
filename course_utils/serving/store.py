"""Durable log of flagged requests in SQLite (project p4): written and committed before the reply.

One row per flagged request: request id, wall-clock time, client, decision, the reasons (which
layers fired), the detector scores, the label the model gave, the SHA-256 of the upload and
(optionally) the image bytes, so an analyst can replay the incident. The database runs in WAL mode
with ``synchronous=FULL``: a committed row survives a killed process (and a power cut once the
OS has flushed). One connection guarded by a lock serves the service's worker threads; several
worker processes (``--workers``) share the file through SQLite's own locking, and each row names
the worker that wrote it (``worker``, NULL for a single process).
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

MAX_CLIENT_CHARS = 128  # identities are short (identity.peer_identity, API-key client ids); a bound all the same
SCHEMA = """
CREATE TABLE IF NOT EXISTS flags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    ts REAL NOT NULL,              -- seconds since the epoch (UTC)
    client TEXT NOT NULL,
    decision TEXT NOT NULL,        -- rejected | blocked | flagged (monitor mode)
    reasons TEXT NOT NULL,         -- JSON list: squeeze, query_pattern, quarantine
    squeeze_score REAL,
    query_score REAL,
    label INTEGER,                 -- the model's answer, -1 = abstained, NULL = not computed
    sha256 TEXT,
    image BLOB,
    worker INTEGER                 -- index of the worker process (--workers), NULL for one process
);
CREATE INDEX IF NOT EXISTS flags_client_ts ON flags (client, ts);
"""


class FlagStore:
    """``record(...)`` commits one row and returns its request id; ``count()``, ``rows()`` read back."""

    def __init__(self, path, store_images: bool = True, worker: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.store_images, self.worker = store_images, worker
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(flags)")}
        if "worker" not in columns:  # a log written before --workers existed
            try:
                self._conn.execute("ALTER TABLE flags ADD COLUMN worker INTEGER")
            except sqlite3.OperationalError as e:  # another worker added it first
                if "duplicate column" not in str(e):
                    raise
        self._conn.commit()

    def record(self, client: str, decision: str, reasons, squeeze_score=None, query_score=None, label=None,
               data: bytes | None = None, request_id: str | None = None, ts: float | None = None) -> str:
        request_id = request_id or uuid.uuid4().hex
        row = (request_id, time.time() if ts is None else ts, str(client)[:MAX_CLIENT_CHARS], decision, json.dumps(list(reasons)),
               _num(squeeze_score), _num(query_score), None if label is None else int(label),
               hashlib.sha256(data).hexdigest() if data else None,
               sqlite3.Binary(data) if data and self.store_images else None, self.worker)
        with self._lock:
            self._conn.execute("INSERT INTO flags (request_id, ts, client, decision, reasons, squeeze_score, "
                               "query_score, label, sha256, image, worker) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            self._conn.commit()
        return request_id

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM flags").fetchone()[0]

    def close(self):
        with self._lock:
            self._conn.close()


def _num(v):
    return None if v is None else float(v)


def read_flags(path, with_images: bool = False):
    """All rows of the log at ``path`` as a pandas DataFrame (read-only; safe while the service runs)."""
    import pandas as pd

    cols = "id, request_id, ts, client, decision, reasons, squeeze_score, query_score, label, sha256, worker"
    cols += ", image" if with_images else ""
    with sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=30) as conn:
        df = pd.read_sql_query(f"SELECT {cols} FROM flags ORDER BY id", conn)
    df["reasons"] = df["reasons"].map(json.loads)
    df["time"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    return df
