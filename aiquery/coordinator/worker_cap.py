"""The spending caps as a worker sees them: whether one is in force, whose cap counts its requests, and what its
ended requests spent since the last sync (the driver keeps the caps themselves: :mod:`.cap_book`)."""

from __future__ import annotations

from typing import Any

from aiquery.usage.record import UsageRecord

__all__ = ["WorkerCap", "spend_entry"]


class WorkerCap:
    """A worker's view of the spending caps. Used on the engine's event loop."""

    def __init__(self) -> None:
        self.capped = False
        """A spending cap is in force (the query plan says so, or the driver did): while cut off from the driver
        the worker sends nothing, since it cannot check the cap."""
        self.owner = ""
        """The session whose cap counts the current task's requests (empty: none)."""
        self._spend: dict[str, Any] = {}
        """What requests ended since the last sync spent: ``{request_id: [currency, cost, tokens, output_tokens]}``,
        0 for a request that ended without a usage report (see :meth:`CapBook.spent`)."""

    def start_task(self, capped: bool, owner: str) -> None:
        """A task starts; ``capped``: its query plan was made under a cap; ``owner``: whose cap counts it."""
        self.capped = self.capped or capped
        self.owner = owner

    def ended(self, record: UsageRecord) -> None:
        """A request ended: what it spent goes with the next sync (an answer from the store spends nothing)."""
        if self.capped and not record.cache_hit:
            self._spend[record.request_id] = spend_entry(record)

    def take(self) -> dict[str, Any]:
        """What to report in the next sync; reported once."""
        spend, self._spend = self._spend, {}
        return spend

    def restore(self, spend: dict[str, Any]) -> None:
        """A sync failed: report its spend again with the next one (the driver counts a request once, should it
        have seen it)."""
        self._spend = {**spend, **self._spend}


def spend_entry(record: UsageRecord) -> list[Any] | int:
    """What an ended request spent, for the caps; 0 when it ended without a usage report (no response, or a 2xx
    whose body could not be read): it may have been billed all the same, so the driver counts it pessimistically.
    An error status bills nothing and is reported as such."""
    status = record.status_code
    if status is None or (200 <= status < 300 and record.total_tokens is None):
        return 0
    return [record.currency or "", record.cost or 0.0, record.total_tokens or 0, record.output_tokens or 0]
