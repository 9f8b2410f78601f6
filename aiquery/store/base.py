"""What the answer store keeps: a request's fingerprint, its answer and the tokens it used.

A *fingerprint* (:func:`fingerprint`) names everything that decides a request's answer: the fingerprint scheme's
version, the API, the resolved URL and model, the answer-affecting headers of the API (``anthropic-version``,
say) and the full request body (prompt, images, model parameters, response format). Never a token: the same
request made with another credential has the same answer. It is what the usage table's ``request_hash`` holds,
and what the engine dedupes identical requests by.

A store maps fingerprints to :class:`StoredAnswer`. Stores never fail a query: :class:`SafeStore` turns every
error of the store behind it into a miss (or a dropped write), logs one warning and counts it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "FINGERPRINT_SCHEME",
    "AnswerStore",
    "SafeStore",
    "StoredAnswer",
    "fingerprint",
    "fingerprint_prefix",
]

logger = logging.getLogger("aiquery.store")

FINGERPRINT_SCHEME = "aiquery-fingerprint-1"
"""Bumped whenever what goes into a fingerprint changes: old answers then simply stop matching."""
GATHER_S = 0.05
"""How long the store's writer lets answers gather before it writes them in one transaction."""
_TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "output_reasoning_tokens",
)


def fingerprint_prefix(api: str, url: str, model: str, headers: Mapping[str, str]) -> bytes:
    """The part of a fingerprint shared by every request of a call site (hashed before each body)."""
    fixed = json.dumps(dict(sorted(headers.items())), separators=(",", ":"))
    return f"{FINGERPRINT_SCHEME}\0{api}\0{url}\0{model}\0{fixed}\0".encode()


def fingerprint(prefix: bytes, body: bytes) -> str:
    """The fingerprint of one request: SHA-256 (hex) of the call site's prefix and the request body."""
    return hashlib.sha256(prefix + body).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """An answer as the store keeps it.

    Attributes:
        value: the answer: text, or an embedding vector.
        usage: the token counts of the request that got it (``input_tokens`` ..., and ``tokens_estimated``).
        stored_at: when it was stored (epoch seconds).
    """

    value: str | list[float]
    usage: Mapping[str, Any]
    stored_at: float

    def encode(self) -> str:
        """One compact JSON object (the form stores and the coordinator's protocol carry)."""
        return json.dumps({"v": self.value, "u": dict(self.usage), "s": self.stored_at}, separators=(",", ":"))

    @staticmethod
    def decode(text: str | bytes) -> StoredAnswer:
        """The inverse of :meth:`encode`.

        Raises:
            ValueError: the text is not a stored answer.
        """
        data = json.loads(text)
        if not isinstance(data, dict) or "v" not in data:
            raise ValueError("not a stored answer")
        return StoredAnswer(data["v"], data.get("u") or {}, float(data.get("s") or 0.0))

    @staticmethod
    def of(value: str | list[float], usage: Any, now: float | None = None) -> StoredAnswer:
        """An answer and the usage (an object with the token-count attributes) of the request that got it."""
        counts: dict[str, Any] = {name: getattr(usage, name, None) for name in _TOKEN_FIELDS}
        counts["tokens_estimated"] = bool(getattr(usage, "estimated", False))
        return StoredAnswer(value, counts, time.time() if now is None else now)


class AnswerStore(Protocol):
    """Answers by fingerprint, each as :meth:`StoredAnswer.encode` made it (the driver never decodes them: it
    passes them between workers and the store as they are). Implementations may raise anything; :class:`SafeStore`
    contains it."""

    def get_many(self, fingerprints: Sequence[str]) -> dict[str, str]:
        """The fresh answers among ``fingerprints`` (expired or unknown ones are absent)."""
        ...

    def put_many(self, answers: Mapping[str, str]) -> None:
        """Store answers (an existing fingerprint's answer is replaced)."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


class SafeStore:
    """A store whose failures are misses: one warning per failure streak, every failure counted.

    Writes go to the store from a thread of their own, coalesced, so the coordinator's loop never waits for a disk
    or a Redis server to take an answer (measured: SQLite writes were 42 % of the driver's busy time in the Spark
    throughput benchmark). Answers waiting to be written are answered from memory meanwhile.

    Args:
        store: the store behind it.
        where: how to name it in the warning (a path or a URL without credentials).
    """

    def __init__(self, store: AnswerStore, where: str) -> None:
        self.store = store
        self.where = where
        self.failures = 0
        """Failed lookups and writes so far."""
        self._failing = False
        self._changed = threading.Condition()
        self._pending: dict[str, str] = {}
        self._writing: dict[str, str] = {}
        self._writer: threading.Thread | None = None
        self._closed = False
        self._urgent = 0
        """Callers of :meth:`flush` waiting now: the writer stops gathering."""

    def get_many(self, fingerprints: Sequence[str]) -> dict[str, str]:
        if not fingerprints:
            return {}
        with self._changed:
            early = {fp: self._pending.get(fp) or self._writing.get(fp) for fp in fingerprints}
        waiting = {fp: answer for fp, answer in early.items() if answer is not None}
        rest = [fp for fp in fingerprints if fp not in waiting] if waiting else fingerprints
        found: dict[str, str] = {}
        if rest:
            try:
                found = self.store.get_many(rest)
            except Exception as error:  # a broken store is a miss, never a failed query
                self._failed("lookup", error)
            else:
                self._failing = False
        found.update(waiting)
        return found

    def put_many(self, answers: Mapping[str, str]) -> None:
        if not answers:
            return
        with self._changed:
            if self._closed:
                return
            idle = not self._pending
            self._pending.update(answers)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="aiquery-answer-store", daemon=True)
                self._writer.start()
            if idle:  # the writer, gathering answers, wakes at its own time: no wake-up per call
                self._changed.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every answer handed over so far is written (or failed); False on timeout."""
        with self._changed:
            self._urgent += 1
            self._changed.notify_all()
            try:
                return self._changed.wait_for(lambda: not self._pending and not self._writing, timeout)
            finally:
                self._urgent -= 1

    def _write_loop(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._closed)
                if not self._closed and not self._urgent:
                    # Let answers gather: one transaction for all that arrive meanwhile.
                    self._changed.wait_for(lambda: self._closed or self._urgent, GATHER_S)
                if not self._pending:
                    return
                self._writing, self._pending = self._pending, {}
                batch = self._writing
            try:
                self.store.put_many(batch)
            except Exception as error:  # the answer is still returned to its row; only the saving is lost
                self._failed("write", error)
            else:
                self._failing = False
            with self._changed:
                self._writing = {}
                self._changed.notify_all()

    def close(self) -> None:
        """Write what is waiting, then close the store."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            writer = self._writer
        if writer is not None:
            writer.join(120.0)
        try:
            self.store.close()
        except Exception:  # closing a broken store must not fail the session's shutdown
            logger.debug("answer store did not close cleanly", exc_info=True)

    def _failed(self, what: str, error: Exception) -> None:
        self.failures += 1
        if not self._failing:
            self._failing = True
            logger.warning(
                "aiquery: the answer store at %s failed (%s: %s); requests are sent as if it were empty until it "
                "works again",
                self.where,
                what,
                f"{type(error).__name__}: {error}"[:300],
            )
