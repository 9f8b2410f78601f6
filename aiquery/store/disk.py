"""The default answer store: one SQLite file on the driver's disk, under the usage folder.

SQLite because it is in the standard library, survives the death of the process that wrote it (each write is
a committed transaction in write-ahead-log mode), and lets two drivers sharing a usage folder use one store
safely. The folder is made readable by its owner only (0700), the file too (0600; SQLite gives its log files
the database file's mode).

Entries older than the time-to-live are not answered and are deleted from time to time. The file is bounded:
when the answers in it pass ``max_bytes``, the least recently used go until it is at 90 % of the bound.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["DiskStore"]

FILE_NAME = "answers.sqlite3"
_BATCH = 500
"""Fingerprints per statement (SQLite limits the number of parameters)."""
EXPIRE_EVERY_S = 60.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    fingerprint TEXT PRIMARY KEY,
    answer TEXT NOT NULL,
    stored REAL NOT NULL,
    used REAL NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_use ON answers (used)
"""


class DiskStore:
    """Answers in a SQLite file. Thread-safe (one connection behind a lock).

    Args:
        folder: where the file goes (created, mode 0700).
        ttl: seconds an answer stays fresh.
        max_bytes: the bound on the answers' total size.
        clock: epoch seconds.
        prepared: set the file up now; False leaves it to :meth:`prepare` (which waits while another process holds
            the file locked: a :class:`~aiquery.store.guarded.GuardedStore` calls it where a wait costs no lookup).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        ttl: float,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
        prepared: bool = True,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.folder, 0o700)
        self.path = self.folder / FILE_NAME
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._size = 0
        self._expired_at = 0.0
        if prepared:
            self.prepare()

    def prepare(self) -> None:
        """Set the file up: its journal mode, its table, the size of what it holds; expired answers go."""
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._size = int(self._db.execute("SELECT coalesce(sum(size), 0) FROM answers").fetchone()[0])
        self._expire()

    def get_many(self, fingerprints: Sequence[str]) -> dict[str, str]:
        now = self._clock()
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(fingerprints), _BATCH):
                part = list(fingerprints[start : start + _BATCH])
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT fingerprint, answer FROM answers WHERE fingerprint IN ({marks}) AND stored >= ?",
                    [*part, now - self.ttl],
                ).fetchall()
                for key, text in rows:
                    found[key] = text
                if rows:
                    hits = [key for key, _ in rows]
                    self._db.execute(
                        f"UPDATE answers SET used = ? WHERE fingerprint IN ({','.join('?' * len(hits))})", [now, *hits]
                    )
            if now - self._expired_at > EXPIRE_EVERY_S:
                self._expire()
        return found

    def put_many(self, answers: Mapping[str, str]) -> None:
        now = self._clock()
        rows = [(key, text, now, now, len(text)) for key, text in answers.items()]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            # An upper bound (a replaced answer is counted twice): recounted before anything is evicted. Looking
            # the replaced sizes up on every write cost a quarter of the write's time.
            self._size += sum(row[4] for row in rows)
            if self._size > self.max_bytes:
                self._size = int(self._db.execute("SELECT coalesce(sum(size), 0) FROM answers").fetchone()[0])
                if self._size > self.max_bytes:
                    self._evict()

    def delete_many(self, fingerprints: Sequence[str]) -> None:
        with self._lock:
            for start in range(0, len(fingerprints), _BATCH):
                part = list(fingerprints[start : start + _BATCH])
                marks = ",".join("?" * len(part))
                sizes = f"SELECT coalesce(sum(size), 0) FROM answers WHERE fingerprint IN ({marks})"
                freed = int(self._db.execute(sizes, part).fetchone()[0])
                self._db.execute(f"DELETE FROM answers WHERE fingerprint IN ({marks})", part)
                self._size -= freed

    def _evict(self) -> None:
        # Least recently used first, in slices, until the store is at 90 % of its bound.
        target = int(self.max_bytes * 0.9)
        while self._size > target:
            rows = self._db.execute("SELECT fingerprint, size FROM answers ORDER BY used LIMIT 1000").fetchall()
            if not rows:
                self._size = 0
                return
            dropped: list[str] = []
            for key, size in rows:
                dropped.append(key)
                self._size -= size
                if self._size <= target:
                    break
            marks = ",".join("?" * len(dropped))
            self._db.execute(f"DELETE FROM answers WHERE fingerprint IN ({marks})", dropped)

    def _expire(self) -> None:
        now = self._clock()
        self._expired_at = now
        gone = self._db.execute("SELECT coalesce(sum(size), 0) FROM answers WHERE stored < ?", [now - self.ttl])
        freed = int(gone.fetchone()[0])
        if freed:
            self._db.execute("DELETE FROM answers WHERE stored < ?", [now - self.ttl])
            self._size -= freed

    def count(self) -> int:
        """Answers in the store (fresh or not yet deleted)."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM answers").fetchone()[0])

    @property
    def size(self) -> int:
        """The answers' total size in bytes."""
        return self._size

    def close(self) -> None:
        with self._lock:
            self._db.close()
