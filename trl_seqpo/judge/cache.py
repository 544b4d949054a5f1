"""On-disk cache of validated LLM-judge answers (sqlite, WAL mode), so a resumed or repeated run never pays twice.

A row maps the hash of one vote's request (endpoint, model, every sampling setting that changes the answer, the
vote's messages and seed) to the answer text that passed validation. Rejected answers and transport failures store
nothing, so a resumed run asks again exactly the votes that had no valid answer. Each answer is committed as it
arrives, so a killed run loses at most the answers in flight.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from trl_seqpo.errors import UserInputError

__all__ = ["JudgeCache", "request_key"]


def request_key(settings: Mapping[str, Any], messages: Sequence[Mapping[str, str]], seed: int) -> str:
    """Stable hash of one vote's request.

    Args:
        settings: Everything besides the messages that changes the answer: endpoint URL (without credentials),
            model, temperature, ``max_tokens``, ``extra_body``, whether a seed is sent.
        messages: The vote's chat messages (without any format-repair turn).
        seed: Seed of the vote (it also fixes the candidate order).

    Returns:
        A hex sha256 digest.

    Examples:
        >>> a = request_key({"model": "m", "max_tokens": 10}, [{"role": "user", "content": "x"}], 0)
        >>> a == request_key({"model": "m", "max_tokens": 20}, [{"role": "user", "content": "x"}], 0)
        False
    """
    payload = json.dumps(
        {"settings": dict(settings), "messages": list(messages), "seed": seed},
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
        try:
            self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            with self._lock:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS answers ("
                    "key TEXT PRIMARY KEY, model TEXT NOT NULL, answer TEXT NOT NULL, created REAL NOT NULL)"
                )
                self._conn.execute("SELECT key, answer FROM answers LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise UserInputError(
                f"not a usable judge cache ({exc}); give another --cache file or delete this one", path=self.path
            ) from None

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
