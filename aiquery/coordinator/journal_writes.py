"""The driver's journal writes: a record counts once it is written, and a journal that cannot be written stops
new requests rather than let them go unrecorded.

A write that fails (a full disk, a read-only remount) is tried once more at once; the journal is left as it was
by each failed attempt (:meth:`~aiquery.usage.spool.SpoolWriter.end_lines`). Then the sync is refused: its
worker keeps the end records in its local journal and delivers them again every few seconds, which is the retry
that lasts until the disk has room; and the begins of the sync are refused with :class:`UsageNotRecorded`,
their requests never sent. Every later sync tries its own writes, so requests go again as soon as the disk
recovers. A worker on the driver's machine, which journals into the driver's spool folder itself, does the same:
a begin it cannot write fails its row with :class:`UsageNotRecorded`, an end record it cannot write stays in
flight in its journal and is written again at its next tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from aiquery.errors import UsageNotRecorded
from aiquery.usage.spool import SpoolWriter

__all__ = ["not_recorded_error", "unwritable_message", "write_or_explain"]

logger = logging.getLogger("aiquery.coordinator")

LOG_EVERY_S = 10.0
"""Every sync meets a full disk again: say so at most this often."""
_last_logged = [float("-inf")]


def write_or_explain(journal: SpoolWriter, write: Callable[[], None]) -> str | None:
    """Run one journal write, twice if the first attempt fails.

    Returns:
        None once written; otherwise why the journal cannot take records, for the worker and the user.
    """
    for attempt in (1, 2):
        try:
            write()
            return None
        except OSError as error:
            failure = error
            logger.debug("usage journal write failed (attempt %d): %s", attempt, error)
    message = unwritable_message(journal.journal_dir, failure)
    now = time.monotonic()
    if now - _last_logged[0] >= LOG_EVERY_S:
        _last_logged[0] = now
        logger.error("aiquery: %s", message)
    return message


def unwritable_message(folder: Path, error: OSError) -> str:
    """Why requests stop: the journal's folder and the system's reason, and what to do."""
    reason = error.strerror or type(error).__name__
    return (
        f"the usage journal at {folder} cannot be written: {reason}; requests stop so that none goes unrecorded "
        "(free space there, or make it writable, and they go again)"
    )


def not_recorded_error(message: str, endpoint: str = "") -> UsageNotRecorded:
    """The error of a row not sent because the driver's journal cannot record its request."""
    return UsageNotRecorded(f"[{UsageNotRecorded.error_class}] {message}", endpoint=endpoint, attempts=0)
