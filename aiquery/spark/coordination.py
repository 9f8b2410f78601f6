"""The coordinator of a Spark application: started in the driver by ``register``, stopped with the session.

Where it listens: on a local master, loopback; on a cluster, ``spark.driver.bindAddress`` (else
``spark.driver.host``), and workers connect to ``spark.driver.host``: the address Spark's own executors use to
reach the driver. The port is ephemeral unless ``[coordinator] port`` names one. When the application encrypts
Spark's traffic (``spark.network.crypto.enabled`` or ``spark.ssl.enabled``) the coordinator speaks TLS.

A Spark listener (a py4j callback implementing ``SparkListenerInterface``) tells it which task attempts failed,
so that requests begun by a worker that died with its task are closed as lost (see
:mod:`aiquery.coordinator.requests`), which running tasks belong to a failed or cancelled job, so that their
workers send nothing more before Spark kills them (see :mod:`aiquery.coordinator.task_kills`), and stops it when the
application ends.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import TYPE_CHECKING, Any

from aiquery.config import Settings
from aiquery.coordinator.server import Coordinator
from aiquery.coordinator.tls import encryption_wanted, server_context

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["coordinator_for", "running_coordinator"]

logger = logging.getLogger("aiquery.coordinator")

LOOPBACK = "127.0.0.1"

_coordinators: dict[str, tuple[Coordinator, Any]] = {}
_lock = threading.Lock()


def coordinator_for(spark: SparkSession, settings: Settings) -> Coordinator:
    """The running coordinator of ``spark``'s application, started now if it has none."""
    context = spark.sparkContext
    application = str(context.applicationId)
    with _lock:
        entry = _coordinators.get(application)
        if entry is not None and entry[0].running:
            return entry[0]
        conf = context.getConf()
        master = str(context.master or "")
        if master.startswith("local"):
            bind_host = advertised_host = LOOPBACK
        else:
            advertised_host = str(conf.get("spark.driver.host", None) or LOOPBACK)
            bind_host = str(conf.get("spark.driver.bindAddress", None) or advertised_host)
        coordinator = Coordinator(
            bind_host=bind_host,
            advertised_host=advertised_host,
            port=settings.coordinator.port,
            tls=server_context() if encryption_wanted(conf) else None,
            application=application,
            parallelism=max(1, int(context.defaultParallelism)),
            same_machine=master.startswith("local"),
        )
        coordinator.start()
        listener = _Listener(coordinator)
        try:
            context._jsc.sc().addSparkListener(listener)
        except Exception:  # without it, requests of dead workers stay open until the next session recovers them
            logger.warning("aiquery: could not add a Spark listener; lost workers' requests close only at exit")
        _coordinators[application] = (coordinator, listener)
        atexit.register(coordinator.stop)
        from aiquery.spark.progress import start_notebook_progress

        start_notebook_progress(coordinator, context)
        return coordinator


def running_coordinator(spark: SparkSession) -> Coordinator | None:
    """The coordinator of ``spark``'s application if one runs."""
    with _lock:
        entry = _coordinators.get(str(spark.sparkContext.applicationId))
    return entry[0] if entry is not None and entry[0].running else None


class _Listener:
    """A ``SparkListenerInterface`` in Python: failed task attempts, the tasks of failed jobs, the application's
    end."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    def onTaskEnd(self, event: Any) -> None:
        try:
            info = event.taskInfo()
            task = int(info.taskId())
            self.coordinator.killed_tasks.task_ended(task)
            if not info.successful():
                self.coordinator.task_failed(task)
        except Exception:  # a listener must never throw into Spark's listener bus
            logger.debug("task end not understood", exc_info=True)

    def onTaskStart(self, event: Any) -> None:
        try:
            self.coordinator.killed_tasks.task_started(int(event.taskInfo().taskId()), int(event.stageId()))
        except Exception:
            logger.debug("task start not understood", exc_info=True)

    def onJobStart(self, event: Any) -> None:
        try:
            stages = event.stageIds()
            self.coordinator.killed_tasks.job_started(
                int(event.jobId()), [int(stages.apply(i)) for i in range(int(stages.length()))]
            )
        except Exception:
            logger.debug("job start not understood", exc_info=True)

    def onJobEnd(self, event: Any) -> None:
        # A failed or cancelled job's running tasks are being killed: their workers must stop sending now (see
        # aiquery.coordinator.task_kills). JobResult is JobSucceeded (a case object) or JobFailed(exception).
        try:
            failed = str(event.jobResult().toString()) != "JobSucceeded"
            self.coordinator.killed_tasks.job_ended(int(event.jobId()), failed)
        except Exception:
            logger.debug("job end not understood", exc_info=True)

    def onApplicationEnd(self, event: Any) -> None:
        # The listener bus thread must not wait for the coordinator's loop: stop it from a thread of its own.
        threading.Thread(target=self.coordinator.stop, name="aiquery-coordinator-stop", daemon=True).start()

    def __getattr__(self, name: str) -> Any:
        # Every other event of the interface (and those later Spark versions add) is ignored.
        if name.startswith("on"):
            return _ignore
        raise AttributeError(name)

    class Java:
        implements = ["org.apache.spark.scheduler.SparkListenerInterface"]


def _ignore(*_: Any) -> None:
    return None
