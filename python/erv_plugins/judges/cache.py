"""An on-disk cache of judge replies, so that a rerun of an evaluation costs nothing.

SQLite: one file, safe for the judge's worker threads (one connection behind a lock) and
for two processes sharing it (SQLite's own file locking). Keys are digests of what
determines a reply: the model, the decoding parameters and the prompt.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path

from erv_plugins.errors import ErvError
from erv_plugins.fifo import FifoSlots

CACHE_ENV = "ERV_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$ERV_CACHE_DIR``, else ``$XDG_CACHE_HOME/erv``, else ``~/.cache/erv``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "erv"


def cache_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class ReplyCache:
    """key -> reply text, persisted in ``path`` (created on first use). The last
    ``memory_size`` replies read or written are also held in memory (FIFO), so a reply
    asked for again in this process costs no database query."""

    def __init__(self, path: str | os.PathLike[str], *, memory_size: int = 4096) -> None:
        self.path = Path(path)
        self._memory: FifoSlots[str] = FifoSlots(memory_size)
        self._replies: list[str] = []  # the reply of each memory slot
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, "
                             "reply TEXT NOT NULL)")
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise ErvError(f"judge cache {self.path}: cannot open: {exc}") from None
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            slot = self._memory.get(key)
            if slot is not None:
                return self._replies[slot]
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            self._hold(key, str(row[0]))
            return str(row[0])

    def put(self, key: str, reply: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies (key, reply) VALUES (?, ?)",
                             (key, reply))
            self._db.commit()
            self._hold(key, reply)

    def _hold(self, key: str, reply: str) -> None:
        """Keep ``reply`` in memory (the caller holds the lock)."""
        slot = self._memory.get(key)
        if slot is None:
            slots = self._memory.add([key])
            if not slots:  # memory_size 0
                return
            slot = slots[0]
        if slot == len(self._replies):
            self._replies.append(reply)
        else:
            self._replies[slot] = reply

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
