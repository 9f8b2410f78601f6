"""Whether the driver's process still runs, for workers on its machine that lost their connection to it.

Once the driver is gone a worker sends nothing more: no one is left to take the answers or store them, and the
next run would pay for them again. The Python workers live in a process group of their own and outlive a killed
driver by tens of milliseconds, time enough to send many requests, so the check starts at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiquery.liveness import process_gone

__all__ = ["DriverWatch"]

logger = logging.getLogger("aiquery.coordinator")

FIRST_CHECK_S = 0.002
LAST_CHECK_S = 0.25
"""Checks come ever less often, up to this: the driver's sockets close a moment before the kernel reports it
exiting."""


class DriverWatch:
    """Checks the driver's process while the worker is cut off from it.

    Args:
        driver_pid: the driver's process id, or 0 when it runs on another machine (nothing to check).
        connected: whether the worker is connected to the coordinator (the watch ends when it is).
    """

    def __init__(self, driver_pid: int, connected: Callable[[], bool]) -> None:
        self.driver_pid = driver_pid
        self._connected = connected
        self._watching: asyncio.Task[None] | None = None
        self.gone = False
        """The driver's process ended: no request is sent any more."""

    def start(self) -> None:
        """Watch until connected again, unless a watch runs already (the engine's loop must be running)."""
        if self.driver_pid and (self._watching is None or self._watching.done()):
            self._watching = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        delay = FIRST_CHECK_S
        while not self._connected():
            if process_gone(self.driver_pid):
                self.gone = True
                logger.warning(
                    "aiquery: the driver (process %d) is gone; this worker sends no more requests", self.driver_pid
                )
                return
            await asyncio.sleep(delay)
            delay = min(LAST_CHECK_S, delay * 2)
