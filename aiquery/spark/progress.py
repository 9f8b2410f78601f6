"""Spark's side of live progress: task counts from the status tracker, and the notebook's progress line.

The counts come from the coordinator (what workers report with every sync); the task counts, and so the ETA,
from Spark's status tracker for the stages that ran ai_query. In a Jupyter kernel a long ai_query cell shows one
progress line per query that updates in place (an IPython display updated by a daemon thread).
:func:`aiquery.spark.coordination.progress` (``aiquery.progress(spark)``) reads the same counts on demand.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiquery.coordinator.progress import TaskCounts

if TYPE_CHECKING:
    from pyspark import SparkContext

    from aiquery.coordinator.server import Coordinator

__all__ = ["NotebookProgress", "stage_tasks", "start_notebook_progress"]

logger = logging.getLogger("aiquery.spark")

NOTEBOOK_INTERVAL_S = 1.0
NOTEBOOK_AFTER_S = 2.0
"""A query shows a progress line in a notebook once it has run this long (quick cells stay clean)."""


def stage_tasks(context: SparkContext, stages: Iterable[int]) -> TaskCounts:
    """Tasks done, running and in total over the given stages, from Spark's status tracker."""
    tracker = context.statusTracker()
    done = running = total = 0
    for stage_id in stages:
        stage = tracker.getStageInfo(stage_id)
        if stage is not None:
            done += stage.numCompletedTasks
            running += stage.numActiveTasks
            total += stage.numTasks
    return TaskCounts(done, running, total)


class NotebookProgress:
    """Shows and updates one progress line per running query in the Jupyter cell that runs it."""

    def __init__(self, coordinator: Coordinator, context: SparkContext) -> None:
        self.coordinator = coordinator
        self.context = context
        self._shown: dict[str, str] = {}  # query -> display id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aiquery-notebook-progress", daemon=True)

    @staticmethod
    def wanted() -> bool:
        """Whether this process is a Jupyter kernel (where a display can be updated in place)."""
        shell = sys.modules.get("IPython")
        if shell is None:
            return False
        try:
            ipython = shell.get_ipython()
        except Exception:  # an IPython module without a running shell
            return False
        return ipython is not None and hasattr(ipython, "kernel")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(NOTEBOOK_INTERVAL_S) and self.coordinator.running:
            try:
                self._update()
            except Exception:  # a progress line is a courtesy; never disturb the notebook
                logger.debug("notebook progress update failed", exc_info=True)

    def _update(self) -> None:
        from IPython.display import display, update_display

        for query in self.coordinator.progress(functools.partial(stage_tasks, self.context)):
            display_id = self._shown.get(query.query)
            if display_id is None and (not query.running or query.seconds < NOTEBOOK_AFTER_S):
                continue
            text = {"text/plain": f"ai_query {query.query}: {query.line()}" + ("" if query.running else "  (done)")}
            if display_id is None:
                display_id = self._shown[query.query] = f"aiquery-progress-{len(self._shown)}-{id(self)}"
                display(text, raw=True, display_id=display_id)  # type: ignore[no-untyped-call]  # IPython: untyped
            else:
                update_display(text, raw=True, display_id=display_id)  # type: ignore[no-untyped-call]  # untyped
            if not query.running:
                del self._shown[query.query]


def start_notebook_progress(coordinator: Coordinator, context: Any) -> NotebookProgress | None:
    """Start the notebook progress line when running in a Jupyter kernel; None elsewhere."""
    if not NotebookProgress.wanted():
        return None
    shown = NotebookProgress(coordinator, context)
    shown.start()
    return shown
