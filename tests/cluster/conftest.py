"""Fixtures for cluster tests: a Spark standalone cluster (one master, N workers) on loopback."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StandaloneCluster:
    """Master and workers as child processes; ``master_url`` for ``SparkSession.builder.master``."""

    def __init__(
        self, workers: int = 1, cores: int = 1, work_dir: Path | None = None, private_dirs: tuple[Path, ...] = ()
    ) -> None:
        """Start the master and ``workers`` workers.

        Args:
            workers: how many workers (each its own machine, as far as ``private_dirs`` go).
            cores: cores per worker.
            work_dir: the workers' work folder (executor logs land in ``<work_dir>/<app>/<executor>/stderr``).
            private_dirs: folders each worker (and its executors and Python workers) sees as an empty folder of
                its own: a tmpfs mounted over them in a mount namespace of the worker's (``unshare``, needs root),
                as on separate machines that share no filesystem with the driver.
        """
        self.port = free_port()
        self.master_url = f"spark://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "SPARK_HOME": str(SPARK_HOME),
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1",
        }
        spark_class = [str(SPARK_HOME / "bin" / "spark-class")]
        self.master = subprocess.Popen(
            [
                *spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--webui-port",
                str(free_port()),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._wait_for(self.master, r"I have been elected leader|Starting Spark master")
        self.workers = []
        for _ in range(workers):
            args = [
                *spark_class,
                "org.apache.spark.deploy.worker.Worker",
                self.master_url,
                "--host",
                "127.0.0.1",
                "--cores",
                str(cores),
                "--memory",
                "2g",
                "--webui-port",
                str(free_port()),
            ]
            if work_dir is not None:
                args += ["--work-dir", str(work_dir)]
            if private_dirs:
                mounts = " && ".join(f"mount -t tmpfs tmpfs {shlex.quote(str(path))}" for path in private_dirs)
                args = [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    f'{mounts} && exec "$@"',
                    "sh",
                    *args,
                ]
            worker = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self._wait_for(worker, r"Successfully registered with master")
            self.workers.append(worker)

    @staticmethod
    def _wait_for(process: subprocess.Popen[str], pattern: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        assert process.stdout is not None
        lines = []
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("cluster process exited:\n" + "".join(lines[-30:]))
            lines.append(line)
            if re.search(pattern, line):
                # Keep draining output so the child never blocks on a full pipe.
                import threading

                threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # type: ignore[union-attr]
                return
        raise RuntimeError("cluster process did not start in time:\n" + "".join(lines[-30:]))

    def stop(self) -> None:
        for process in [*self.workers, self.master]:
            process.terminate()
        for process in [*self.workers, self.master]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    def __enter__(self) -> StandaloneCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


import pytest  # noqa: E402


@pytest.fixture
def standalone_cluster() -> type[StandaloneCluster]:
    """The cluster class, for tests to start with the size they need."""
    return StandaloneCluster
