"""What batch mode's run pass finds beyond the answer store: the run's own record of its batches' answers and
failed lines (:class:`BatchResults`, set with :meth:`~.server.Coordinator.set_batch_results`).

The flow puts each batch answer in the answer store and in its run's state folder; the store may evict it or
fail, and the run pass must not pay for a line again then. So while a source is set, every store miss of a lookup
is asked of it too (off the coordinator's loop: it may read SQLite): an answer it has is a hit, and a line it
says failed goes back to the worker as that line's error. A worker applies the error only to a call planned by a
run pass (``aiquery.batch.run``); any other call treats it as a miss, as before.

Failed lines travel in a reply's answer payload as :func:`failure_text` (an object a stored answer never is), and
:func:`failure_message` reads one back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

__all__ = ["MAX_FAILURE_CHARS", "BatchResults", "ask_batch_results", "failure_message", "failure_text"]

logger = logging.getLogger("aiquery.coordinator")

MAX_FAILURE_CHARS = 1000
"""A failed line's message, as far as it travels to the worker."""
_PREFIX = b'{"batch_failed":'


class BatchResults(Protocol):
    """A batch run's answers and failed lines by fingerprint. Called off the coordinator's loop; may block briefly."""

    def answers(self, fingerprints: Sequence[str]) -> Mapping[str, str]:
        """The answers among ``fingerprints``: fingerprint -> encoded :class:`~aiquery.store.base.StoredAnswer`
        (its ``batch_id`` set)."""
        ...

    def failures(self, fingerprints: Sequence[str]) -> Mapping[str, str]:
        """The failed or expired lines among ``fingerprints``: fingerprint -> the line's error message."""
        ...


def failure_text(message: str) -> str:
    """A failed line as a reply carries it in place of an answer."""
    return json.dumps({"batch_failed": message[:MAX_FAILURE_CHARS]}, separators=(",", ":"))


def failure_message(encoded: bytes) -> str | None:
    """The message of a failed line carried as :func:`failure_text`; None for anything else."""
    if not encoded.startswith(_PREFIX):
        return None
    try:
        message = json.loads(encoded)["batch_failed"]
    except (ValueError, KeyError, TypeError):
        return None
    return message[:MAX_FAILURE_CHARS] if isinstance(message, str) else None


def ask_batch_results(source: BatchResults, fingerprints: Sequence[str]) -> dict[str, str]:
    """``source``'s answers for ``fingerprints``, and its failed lines among the rest as :func:`failure_text`.

    A source that fails makes every fingerprint asked a failed line saying so: sending them live instead could pay
    a second time for answers the run already paid for.
    """
    try:
        found = {key: text for key, text in source.answers(fingerprints).items() if isinstance(text, str)}
        rest = [key for key in fingerprints if key not in found]
        failed = source.failures(rest) if rest else {}
        found.update({key: failure_text(str(failed[key])) for key in rest if key in failed})
    except Exception as error:  # the flow's code; its failure must not stall or break the coordinator
        logger.warning("aiquery: the batch run's results could not be read", exc_info=True)
        reason = f"the batch run's results could not be read ({type(error).__name__}: {error})"
        return {key: failure_text(reason) for key in fingerprints}
    return found
