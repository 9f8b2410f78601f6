"""What the answer store keeps: a request's fingerprint, its answer and the tokens it used.

A *fingerprint* (:func:`fingerprint`) names everything that decides a request's answer: the fingerprint scheme's
version, the API, the resolved URL and model, the answer-affecting headers of the API (``anthropic-version``,
say) and the full request body (prompt, images, model parameters, response format). Never a token: the same
request made with another credential has the same answer. It is what the usage table's ``request_hash`` holds,
and what the engine dedupes identical requests by.

A store maps fingerprints to :class:`StoredAnswer`. Stores never fail or stall a query:
:class:`~aiquery.store.guarded.GuardedStore` asks them from a thread of their own, with a deadline and a circuit
breaker, and turns every error of theirs into a miss (or a dropped write).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "FINGERPRINT_SCHEME",
    "TOKEN_FIELDS",
    "AnswerStore",
    "StoredAnswer",
    "fingerprint",
    "fingerprint_prefix",
]

FINGERPRINT_SCHEME = "aiquery-fingerprint-1"
"""Bumped whenever what goes into a fingerprint changes: old answers then simply stop matching."""
TOKEN_FIELDS = (
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
        batch_id: the provider batch whose line got the answer (batch mode); None for an answer sent live.
    """

    value: str | list[float]
    usage: Mapping[str, Any]
    stored_at: float
    batch_id: str | None = None

    def encode(self) -> str:
        """One compact JSON object (the form stores and the coordinator's protocol carry)."""
        data = {"v": self.value, "u": dict(self.usage), "s": self.stored_at}
        if self.batch_id is not None:  # only when set: live answers encode as before, for older readers
            data["b"] = self.batch_id
        return json.dumps(data, separators=(",", ":"))

    @staticmethod
    def decode(text: str | bytes) -> StoredAnswer:
        """The inverse of :meth:`encode`.

        Raises:
            ValueError: the text is not a stored answer.
        """
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("v"), str | list):
            raise ValueError("not a stored answer")
        usage, stored = data.get("u") or {}, data.get("s") or 0.0
        if not isinstance(usage, dict) or not isinstance(stored, int | float) or not math.isfinite(stored):
            raise ValueError("not a stored answer")
        batch_id = data.get("b")
        if batch_id is not None and not isinstance(batch_id, str):
            raise ValueError("not a stored answer: its batch id is not a string")
        return StoredAnswer(data["v"], usage, float(stored), batch_id)

    @staticmethod
    def of(
        value: str | list[float], usage: Any, now: float | None = None, *, batch_id: str | None = None
    ) -> StoredAnswer:
        """An answer and the usage (an object with the token-count attributes) of the request that got it;
        ``batch_id``: the provider batch whose line got it, for an answer of batch mode."""
        counts: dict[str, Any] = {name: getattr(usage, name, None) for name in TOKEN_FIELDS}
        counts["tokens_estimated"] = bool(getattr(usage, "estimated", False))
        return StoredAnswer(value, counts, time.time() if now is None else now, batch_id)


class AnswerStore(Protocol):
    """Answers by fingerprint, each as :meth:`StoredAnswer.encode` made it (the driver passes them between workers
    and the store as they are, having checked off its loop that they decode). Implementations may raise anything
    and may block; :class:`~aiquery.store.guarded.GuardedStore` contains both."""

    def get_many(self, fingerprints: Sequence[str]) -> dict[str, str]:
        """The fresh answers among ``fingerprints`` (expired or unknown ones are absent)."""
        ...

    def put_many(self, answers: Mapping[str, str]) -> None:
        """Store answers (an existing fingerprint's answer is replaced)."""
        ...

    def delete_many(self, fingerprints: Sequence[str]) -> None:
        """Delete answers (absent ones are ignored)."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
