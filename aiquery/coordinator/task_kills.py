"""Which running Spark tasks are being killed, so that their workers stop sending before Spark kills them.

When a job fails or is cancelled, Spark kills the running tasks of its stages (those no other active job
needs); a task's Python worker is killed ``spark.python.task.killTimeout`` (2 s) after the interrupt and learns
nothing until then. A request begun on the driver and not yet sent when the worker dies would be closed as lost
(see :mod:`.requests`): a ledger row for a request no endpoint received, a few per cancelled job on a loaded
machine. So the driver refuses the begin records of a task being killed, and the worker sends
nothing more for it; its requests already sent run on and are recorded as usual.

Fed by the Spark listener (jobs, their stages, task starts and ends); read by the coordinator's syncs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

__all__ = ["KilledTasks"]

MAX_TASKS = 100_000
"""Running tasks remembered (a task's end forgets it; this bounds what missed ends could leave)."""


class KilledTasks:
    """Running task attempts by stage, active jobs by stage, and the stages of failed jobs. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stage_of: dict[int, int] = {}
        """Running task attempt id -> its stage."""
        self._jobs: dict[int, frozenset[int]] = {}
        """Active job id -> its stages."""
        self._killed_stages: set[int] = set()

    def job_started(self, job: int, stages: Iterable[int]) -> None:
        with self._lock:
            self._jobs[job] = frozenset(stages)

    def job_ended(self, job: int, failed: bool) -> None:
        """A job ended; if it failed (or was cancelled), the tasks of its stages no other active job needs are
        being killed."""
        with self._lock:
            stages = self._jobs.pop(job, frozenset())
            if not failed or not stages:
                return
            needed = set().union(*self._jobs.values()) if self._jobs else set()
            self._killed_stages.update(stages - needed)

    def task_started(self, task: int, stage: int) -> None:
        with self._lock:
            if len(self._stage_of) >= MAX_TASKS:
                self._stage_of.pop(next(iter(self._stage_of)))
            self._stage_of[task] = stage

    def task_ended(self, task: int) -> None:
        with self._lock:
            stage = self._stage_of.pop(task, None)
            if stage is not None and stage in self._killed_stages and stage not in self._stage_of.values():
                self._killed_stages.discard(stage)  # its last running task is gone

    def killed(self, tasks: Iterable[int | None]) -> set[int]:
        """Those of ``tasks`` being killed."""
        with self._lock:
            if not self._killed_stages:
                return set()
            return {task for task in tasks if task is not None and self._stage_of.get(task, -1) in self._killed_stages}
