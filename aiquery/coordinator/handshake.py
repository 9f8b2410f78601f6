"""How a worker and the coordinator prove to each other that they belong to the same application.

Three frames, before anything else travels::

    coordinator -> worker   {"op": "challenge", "nonce": Nc, "version": 1}
    worker -> coordinator   {"op": "hello", "worker": id, "nonce": Nw, "proof": HMAC(secret, "worker" Nc Nw)}
    coordinator -> worker   {"re": 0, "ok": true, "pid": ..., "proof": HMAC(secret, "coordinator" Nc Nw)}

Both nonces are 32 random bytes (hex on the wire), fresh per connection, so neither side can be fed an old
proof; the label makes the two proofs different functions, so a proof cannot be reflected back as the other
side's. The worker sends nothing that matters (a sync: records, answers, demand) before it has checked the
coordinator's proof, so a stranger listening on the coordinator's port learns nothing from it and is fed
nothing. With TLS, the worker checks the certificate's fingerprint before it reads or writes any frame (see
:mod:`aiquery.coordinator.link`), which is what stops a relay in the middle.

Until a peer has proven the secret it gets little: frames of at most :data:`PRE_AUTH_FRAME_BYTES`, a few
connections per address (:class:`Doorman`), and a refusal that never raises (a malformed proof is a refusal
like a wrong one).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections import Counter
from typing import Any

from aiquery.config import Secret

__all__ = [
    "MAX_UNAUTHENTICATED",
    "MAX_UNAUTHENTICATED_PER_ADDRESS",
    "PRE_AUTH_FRAME_BYTES",
    "CoordinatorHandshake",
    "Doorman",
    "Refused",
    "WorkerHandshake",
    "coordinator_proof",
    "proven",
    "worker_proof",
]

logger = logging.getLogger("aiquery.coordinator")

PRE_AUTH_FRAME_BYTES = 4096
"""The largest frame metadata either side reads before the other has proven the secret (no payload at all)."""
MAX_UNAUTHENTICATED_PER_ADDRESS = 64
"""Connections from one address that may be in the handshake at once (a host's workers start together)."""
MAX_UNAUTHENTICATED = 1024
"""Connections that may be in the handshake at once, from all addresses."""
NONCE_BYTES = 32
_CONTEXT = b"aiquery-coordinator-v2"
_MAX_WORKER_ID = 256


class Refused(Exception):
    """The peer did not prove the secret, or broke the handshake; the message says which (never the secret)."""


def worker_proof(secret: Secret, coordinator_nonce: bytes, worker_nonce: bytes) -> str:
    """The worker's proof of the secret: HMAC-SHA256 under it of the label ``worker`` and both nonces, hex."""
    return _proof(secret, b"worker", coordinator_nonce, worker_nonce)


def coordinator_proof(secret: Secret, coordinator_nonce: bytes, worker_nonce: bytes) -> str:
    """The coordinator's proof of the secret, for the same two nonces under another label."""
    return _proof(secret, b"coordinator", coordinator_nonce, worker_nonce)


def _proof(secret: Secret, label: bytes, coordinator_nonce: bytes, worker_nonce: bytes) -> str:
    message = b"|".join((_CONTEXT, label, coordinator_nonce, worker_nonce))
    return hmac.new(secret.reveal().encode(), message, hashlib.sha256).hexdigest()


def proven(expected: str, proof: Any) -> bool:
    """Whether ``proof`` equals the ``expected`` hex proof, in constant time; False for anything not ASCII text
    (``compare_digest`` raises on a str with other characters)."""
    return isinstance(proof, str) and proof.isascii() and hmac.compare_digest(expected.encode(), proof.encode())


def _nonce(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * NONCE_BYTES or not value.isascii():
        raise Refused("no valid nonce")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise Refused("no valid nonce") from None


class CoordinatorHandshake:
    """The coordinator's side of one connection's handshake."""

    __slots__ = ("_secret", "nonce")

    def __init__(self, secret: Secret) -> None:
        self._secret = secret
        self.nonce = secrets.token_bytes(NONCE_BYTES)

    def challenge(self, version: int) -> dict[str, Any]:
        return {"op": "challenge", "nonce": self.nonce.hex(), "version": version}

    def hello(self, meta: dict[str, Any]) -> tuple[str, str]:
        """Check a worker's hello: its worker id, and the coordinator's proof to send back.

        Raises:
            Refused: the hello does not prove the secret or names no worker.
        """
        if meta.get("op") != "hello":
            raise Refused("the first frame is not a hello")
        worker_nonce = _nonce(meta.get("nonce"))
        if not proven(worker_proof(self._secret, self.nonce, worker_nonce), meta.get("proof")):
            raise Refused("the application's secret was not proven")
        worker = meta.get("worker")
        if not isinstance(worker, str) or not worker or len(worker) > _MAX_WORKER_ID:
            raise Refused("hello without a worker id")
        return worker, coordinator_proof(self._secret, self.nonce, worker_nonce)


class WorkerHandshake:
    """A worker's side of one connection's handshake."""

    __slots__ = ("_coordinator_nonce", "_secret", "_worker_id", "nonce")

    def __init__(self, secret: Secret, worker_id: str) -> None:
        self._secret = secret
        self._worker_id = worker_id
        self.nonce = secrets.token_bytes(NONCE_BYTES)
        self._coordinator_nonce: bytes | None = None

    def hello(self, challenge: dict[str, Any]) -> dict[str, Any]:
        """The hello answering the coordinator's challenge.

        Raises:
            Refused: the first frame is not a challenge with a nonce.
        """
        if challenge.get("op") != "challenge" or self._coordinator_nonce is not None:
            raise Refused("the peer did not open with a challenge")
        self._coordinator_nonce = nonce = _nonce(challenge.get("nonce"))
        proof = worker_proof(self._secret, nonce, self.nonce)
        return {"op": "hello", "worker": self._worker_id, "nonce": self.nonce.hex(), "proof": proof}

    def welcome(self, reply: dict[str, Any]) -> None:
        """Check the coordinator's reply to the hello.

        Raises:
            Refused: the coordinator refused this worker, or the peer did not prove the secret (it is not this
                application's coordinator).
        """
        if self._coordinator_nonce is None:
            raise Refused("the peer did not open with a challenge")
        if not reply.get("ok"):
            error = reply.get("error")
            # The peer's words, unproven: quoted and cut short, so they cannot pass for a line of our own log.
            raise Refused(f"the peer refused this worker: {str(error)[:200]!r}" if error else "refused by the peer")
        expected = coordinator_proof(self._secret, self._coordinator_nonce, self.nonce)
        if not proven(expected, reply.get("proof")):
            raise Refused("the peer did not prove the application's secret: it is not this application's coordinator")


class Doorman:
    """Counts the connections still in the handshake, per address and in all, and turns away those past a limit."""

    __slots__ = ("_limit", "_per_address", "total", "turned_away", "waiting")

    def __init__(self, per_address: int = MAX_UNAUTHENTICATED_PER_ADDRESS, total: int = MAX_UNAUTHENTICATED) -> None:
        self._per_address = per_address
        self._limit = total
        self.waiting: Counter[str] = Counter()
        self.total = 0
        self.turned_away = 0
        """Connections turned away so far (the log names a flood's size, not each connection)."""

    def enter(self, address: str) -> bool:
        """Let a new connection from ``address`` into the handshake, unless that passes a limit (then False)."""
        if self.waiting[address] >= self._per_address or self.total >= self._limit:
            self.turned_away = count = self.turned_away + 1
            # A flood is logged at 1, 10, 100... connections turned away, not once per connection.
            level = logging.INFO if str(count).strip("0") == "1" else logging.DEBUG
            logger.log(level, "coordinator: turned away %s (%d so far): too many in the handshake", address, count)
            return False
        self.waiting[address] += 1
        self.total += 1
        return True

    def leave(self, address: str) -> None:
        """A connection let in has finished its handshake (proven, refused or closed)."""
        self.total -= 1
        self.waiting[address] -= 1
        if self.waiting[address] <= 0:
            del self.waiting[address]
