"""A batch run's state folder: what was collected, what was submitted, what came back; one SQLite file, locked.

The folder holds ``state.sqlite`` (written in transactions, so a run killed at any point leaves either the state
before a step or the state after it) and ``lock``, held with ``flock`` for the life of a run: a second run on the
same folder stops at once, naming the process that holds it. What the tables keep:

- ``requests``: each collected request (endpoint, fingerprint, the request as JSON, the round that found it);
- ``batches``: one row per batch, written as an *intent* (its lines, its tag) **before** the create call and
  given the provider's id right after: a row without an id is a create that may or may not have reached the
  provider, which a resumed run settles by listing the provider's batches by tag;
- ``answers`` / ``failures``: each line's outcome by fingerprint (an encoded stored answer, or the error), kept
  until the run pass is over so that a store that evicted or failed never makes the run pay again;
- ``outbox``: the usage records of stored lines on their way to the ledger (see
  :mod:`aiquery.provider_batches.line_records`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiquery.errors import AIQueryError

__all__ = ["BatchRow", "RunState", "StateLocked"]

_quoted = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]

STATE_FILE = "state.sqlite"
LOCK_FILE = "lock"
CACHE_KIB = 32 * 1024
"""SQLite's page cache: fingerprints are random, so a run's indexes are written all over; a cache that holds the
indexes of a few hundred thousand lines keeps the store from reading its own pages back (bounded: 32 MiB)."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    endpoint TEXT NOT NULL, fingerprint TEXT NOT NULL, request TEXT NOT NULL, round INTEGER NOT NULL,
    PRIMARY KEY (endpoint, fingerprint));
CREATE TABLE IF NOT EXISTS batches (
    number INTEGER PRIMARY KEY, endpoint TEXT NOT NULL, tag TEXT NOT NULL, lines INTEGER NOT NULL,
    cost REAL, provider_id TEXT, status TEXT NOT NULL DEFAULT 'intent', phase TEXT NOT NULL DEFAULT 'intent',
    done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    ended_at REAL, stored INTEGER NOT NULL DEFAULT 0, errors TEXT);
CREATE TABLE IF NOT EXISTS batch_lines (
    number INTEGER NOT NULL, fingerprint TEXT NOT NULL, PRIMARY KEY (number, fingerprint));
CREATE INDEX IF NOT EXISTS batch_lines_by_fingerprint ON batch_lines (fingerprint);
CREATE TABLE IF NOT EXISTS answers (
    fingerprint TEXT PRIMARY KEY, endpoint TEXT NOT NULL, answer TEXT NOT NULL, batch_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS failures (
    fingerprint TEXT PRIMARY KEY, endpoint TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL,
    batch_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    number INTEGER PRIMARY KEY, file TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0);
"""


class StateLocked(AIQueryError):
    """Another run holds the state folder."""


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One batch as the state keeps it (``provider_id`` None: an intent whose create call may not have happened)."""

    number: int
    endpoint: str
    tag: str
    lines: int
    cost: float | None
    provider_id: str | None
    status: str
    phase: str
    done: int
    failed: int
    created_at: float
    ended_at: float | None
    stored: bool
    errors: tuple[str, ...]


class RunState:
    """The state folder of one batch run, opened and locked (see the module docstring).

    Args:
        folder: the folder (created ``0700`` if missing).
        lock: hold the run's lock (a reader such as ``aiquery batch status`` does not).

    Raises:
        StateLocked: ``lock`` and another process holds the folder.
    """

    def __init__(self, folder: str | os.PathLike[str], *, lock: bool = True) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd: int | None = self._take_lock() if lock else None
        self._guard = threading.Lock()
        self._db = sqlite3.connect(self.folder / STATE_FILE, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL with NORMAL: a committed transaction survives the death of the process (the kill, the OOM this
        # folder is for), not a power cut, like the usage journal's writes; FULL would fsync every commit.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self._db.executescript(_SCHEMA)

    # ---- the lock ---------------------------------------------------------------------------------------
    def _take_lock(self) -> int:
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            os.close(fd)
            raise StateLocked(f"the batch state {self.folder} is in use by {_describe_holder(holder)}") from None
        # The command's first words only, and none holding a value: a --var may carry a secret.
        command = [word for word in sys.argv[:3] if "=" not in word]
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "command": command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        return fd

    def close(self) -> None:
        """Close the database and release the lock (idempotent)."""
        with self._guard:
            self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __enter__(self) -> RunState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is in the file, or none of it."""
        with self._guard:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        with self._guard:
            return self._db.execute(sql, parameters).fetchall()

    # ---- meta -------------------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def reset(self) -> None:
        """Forget everything: a run that finished leaves its answers in the answer store, and the same job run
        again later starts afresh rather than from answers this state kept."""
        with self.transaction() as db:
            for table in ("meta", "requests", "batches", "batch_lines", "answers", "failures", "outbox"):
                db.execute(f"DELETE FROM {table}")

    # ---- requests ---------------------------------------------------------------------------------------
    def add_requests(self, endpoint: str, found: Iterable[tuple[str, str]], round_number: int) -> int:
        """Keep collected requests (fingerprint, request JSON text); those already kept are ignored. How many
        were new."""
        # One statement over a JSON array, not a row at a time: sqlite3 gives the GIL up around each step, and
        # 200,000 steps contending with the coordinator's loop took many times their own time (the collect pass
        # writes from a thread of its own while the loop serves the workers). The texts are JSON already.
        rows = ",".join(f"[{_quoted(fingerprint)},{text}]" for fingerprint, text in found)
        with self.transaction() as db:
            before = db.total_changes
            db.execute(
                "INSERT OR IGNORE INTO requests (endpoint, fingerprint, request, round)"
                " SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), ? FROM json_each(?)",
                (endpoint, round_number, f"[{rows}]"),
            )
            return db.total_changes - before

    def unsent(self, endpoint: str) -> list[tuple[str, str]]:
        """The endpoint's requests in no batch (intent or created) and with no outcome: (fingerprint, request
        JSON text)."""
        return [
            (str(row[0]), str(row[1]))
            for row in self._read(
                "SELECT fingerprint, request FROM requests r WHERE endpoint = ?"
                " AND NOT EXISTS (SELECT 1 FROM batch_lines l WHERE l.fingerprint = r.fingerprint)"
                " AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.fingerprint = r.fingerprint)"
                " AND NOT EXISTS (SELECT 1 FROM failures f WHERE f.fingerprint = r.fingerprint)"
                " ORDER BY fingerprint",
                (endpoint,),
            )
        ]

    def requests_of(self, number: int) -> list[tuple[str, str]]:
        """The lines of batch ``number``: (fingerprint, request JSON text)."""
        return [
            (str(row[0]), str(row[1]))
            for row in self._read(
                "SELECT r.fingerprint, r.request FROM batch_lines l JOIN batches b ON b.number = l.number"
                " JOIN requests r ON r.fingerprint = l.fingerprint AND r.endpoint = b.endpoint"
                " WHERE l.number = ? ORDER BY r.fingerprint",
                (number,),
            )
        ]

    def endpoints(self) -> list[str]:
        return [str(row[0]) for row in self._read("SELECT DISTINCT endpoint FROM requests ORDER BY endpoint")]

    def request_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM requests")[0][0])

    # ---- batches ----------------------------------------------------------------------------------------
    def add_intent(self, endpoint: str, tag_prefix: str, fingerprints: Sequence[str], cost: float | None) -> BatchRow:
        """Record a batch about to be created (before the create call): its lines and its tag."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO batches (endpoint, tag, lines, cost, created_at) VALUES (?, '', ?, ?, ?)",
                (endpoint, len(fingerprints), cost, time.time()),
            )
            number = int(cursor.lastrowid or 0)
            db.execute("UPDATE batches SET tag = ? WHERE number = ?", (f"{tag_prefix}.{number}", number))
            db.executemany(
                "INSERT INTO batch_lines (number, fingerprint) VALUES (?, ?)", [(number, f) for f in fingerprints]
            )
        return self.batch(number)

    def set_created(self, number: int, provider_id: str, status: str, phase: str) -> None:
        """The provider's id of an intent's batch (right after the create call answered, or found by its tag)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE batches SET provider_id = ?, status = ?, phase = ? WHERE number = ?",
                (provider_id, status, phase, number),
            )

    def drop_intent(self, number: int) -> None:
        """Forget an intent whose create call never reached the provider (its lines are unsent again)."""
        with self.transaction() as db:
            if db.execute("DELETE FROM batches WHERE number = ? AND provider_id IS NULL", (number,)).rowcount:
                db.execute("DELETE FROM batch_lines WHERE number = ?", (number,))

    def update_batch(
        self, number: int, *, status: str, phase: str, done: int, failed: int, errors: Sequence[str]
    ) -> None:
        ended = time.time() if phase in ("ended", "failed") else None
        with self.transaction() as db:
            db.execute(
                "UPDATE batches SET status = ?, phase = ?, done = ?, failed = ?, errors = ?,"
                " ended_at = COALESCE(ended_at, ?) WHERE number = ?",
                (status, phase, done, failed, json.dumps(list(errors)), ended, number),
            )

    def batches(self, endpoint: str | None = None) -> list[BatchRow]:
        where, parameters = ("WHERE endpoint = ?", (endpoint,)) if endpoint else ("", ())
        return [
            _batch_row(row)
            for row in self._read(f"SELECT {_BATCH_COLUMNS} FROM batches {where} ORDER BY number", parameters)
        ]

    def batch(self, number: int) -> BatchRow:
        return _batch_row(self._read(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE number = ?", (number,))[0])

    # ---- outcomes ---------------------------------------------------------------------------------------
    def outcome_fingerprints(self, batch_id: str) -> set[str]:
        """The lines of a batch whose outcome is kept (a resumed store skips them)."""
        rows = self._read(
            "SELECT fingerprint FROM answers WHERE batch_id = ?"
            " UNION SELECT fingerprint FROM failures WHERE batch_id = ?",
            (batch_id, batch_id),
        )
        return {str(row[0]) for row in rows}

    def answers(self, fingerprints: Sequence[str]) -> dict[str, str]:
        return dict(self._many("SELECT fingerprint, answer FROM answers WHERE fingerprint IN ({})", fingerprints))

    def failures(self, fingerprints: Sequence[str]) -> dict[str, str]:
        return dict(self._many("SELECT fingerprint, message FROM failures WHERE fingerprint IN ({})", fingerprints))

    def _many(self, sql: str, keys: Sequence[str]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for start in range(0, len(keys), 500):
            part = list(keys[start : start + 500])
            found.extend((str(a), str(b)) for a, b in self._read(sql.format(",".join("?" * len(part))), part))
        return found

    def keep_outcomes(
        self,
        endpoint: str,
        batch_id: str,
        answers: Sequence[tuple[str, str]],
        failures: Sequence[tuple[str, str, str]],
        outbox: int | None,
    ) -> None:
        """In one transaction: answers (fingerprint, encoded answer), failures (fingerprint, kind, message) and the
        outbox row of their usage records' file (None: no ledger)."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO answers (fingerprint, endpoint, answer, batch_id) VALUES (?, ?, ?, ?)",
                [(fingerprint, endpoint, text, batch_id) for fingerprint, text in answers],
            )
            db.executemany(
                "INSERT OR REPLACE INTO failures (fingerprint, endpoint, kind, message, batch_id)"
                " VALUES (?, ?, ?, ?, ?)",
                [(fingerprint, endpoint, kind, message, batch_id) for fingerprint, kind, message in failures],
            )
            if answers:
                db.executemany("DELETE FROM failures WHERE fingerprint = ?", [(f,) for f, _ in answers])
            if outbox is not None:
                db.execute("INSERT INTO outbox (number, file) VALUES (?, '')", (outbox,))

    def set_stored(self, number: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE batches SET stored = 1 WHERE number = ?", (number,))

    def next_outbox(self) -> int:
        return int(self._read("SELECT COALESCE(MAX(number), 0) + 1 FROM outbox")[0][0])

    def outbox_pending(self) -> list[Any]:
        return self._read("SELECT number FROM outbox WHERE published = 0 ORDER BY number")

    def outbox_numbers(self) -> set[int]:
        return {int(row[0]) for row in self._read("SELECT number FROM outbox")}

    def outcome_kinds(self) -> dict[str, int]:
        """Lines kept by outcome: ``succeeded`` (answers) and each failure kind."""
        found = {"succeeded": int(self._read("SELECT COUNT(*) FROM answers")[0][0])}
        for kind, count in self._read("SELECT kind, COUNT(*) FROM failures GROUP BY kind"):
            found[str(kind)] = int(count)
        return found

    def counts(self) -> Mapping[str, int]:
        """Requests collected, answered and failed in the whole run."""
        return {
            "requests": self.request_count(),
            "answered": int(self._read("SELECT COUNT(*) FROM answers")[0][0]),
            "failed": int(self._read("SELECT COUNT(*) FROM failures")[0][0]),
        }


_BATCH_COLUMNS = (
    "number, endpoint, tag, lines, cost, provider_id, status, phase, done, failed, created_at, ended_at, stored, errors"
)


def _batch_row(row: Sequence[Any]) -> BatchRow:
    errors = tuple(json.loads(row[13])) if row[13] else ()
    return BatchRow(*row[:12], stored=bool(row[12]), errors=errors)


def _describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(holder["since"])))
        command = " ".join(str(part) for part in holder.get("command") or [])
        return f"process {int(holder['pid'])} on {holder['host']} (since {since}: {command})"
    except (ValueError, KeyError, TypeError):
        return "another process (it wrote no readable holder)"
