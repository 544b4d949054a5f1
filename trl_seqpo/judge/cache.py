"""On-disk cache of raw LLM-judge answers (sqlite, WAL mode), so a resumed or repeated run never pays twice.

A row maps the hash of the exact request (model, messages, temperature, vote seed, attempt number) to the raw answer
text the endpoint returned, valid or not: replaying a run from the cache goes through the same validation and retry
path and gives the same scores without a single HTTP call. Transport failures (429, 5xx, timeouts) store nothing and
are asked again next time. Each answer is committed as it arrives, so a killed run loses at most the answers in
flight.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence

__all__ = ["JudgeCache", "request_key"]


def request_key(model: str, messages: Sequence[Mapping[str, str]], temperature: float, seed: int, attempt: int) -> str:
    """Stable hash of one judge request.

    Args:
        model: Model name sent to the endpoint.
        messages: The exact chat messages.
        temperature: Sampling temperature.
        seed: Seed of the vote (it also fixes the candidate order).
        attempt: 0 for the first answer of a vote, 1 for the next one, ...

    Returns:
        A hex sha256 digest.
    """
    payload = json.dumps(
        {"model": model, "messages": list(messages), "temperature": temperature, "seed": seed, "attempt": attempt},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class JudgeCache:
    """sqlite cache of judge answers, safe to share between the tasks and threads of one process.

    One connection; reads and writes are serialised by a lock; WAL mode so another process (a second run, a
    viewer) can read while this one writes.

    Args:
        path: File of the database (parent folders are created).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS answers ("
                "key TEXT PRIMARY KEY, model TEXT NOT NULL, answer TEXT NOT NULL, created REAL NOT NULL)"
            )

    def get(self, key: str) -> str | None:
        """The stored answer for ``key``, or ``None``."""
        with self._lock:
            row = self._conn.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, model: str, answer: str) -> None:
        """Store (and commit) one answer; an existing answer for ``key`` is kept."""
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO answers (key, model, answer, created) VALUES (?, ?, ?, ?)",
                (key, model, answer, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]
