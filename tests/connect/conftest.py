"""Fixtures of the Spark Connect tests: an aiquery Connect server on a loopback port, and a client environment
without a JVM."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SERVER_START_S = 180.0


@pytest.fixture(scope="session")
def thin_client_python() -> Path:
    """The interpreter of a virtual environment with only ``pyspark-client`` (the .venv's Spark version, or the
    newest client release before it) and aiquery without extras (tests/support/thin_client.py)."""
    import pyspark
    from thin_client import thin_client_python as build

    return build(pyspark.__version__)


@dataclass(frozen=True)
class ConnectServer:
    url: str
    token: str
    port: int
    log_path: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def connect_server(gateway_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectServer]:
    """``aiquery connect-server`` on a free loopback port with a token, its endpoints on the emulator (and no
    answer store, so that every call is a request); stopped with SIGTERM at the end."""
    folder = tmp_path_factory.mktemp("connect-server")
    config = folder / "aiquery.toml"
    config.write_text(
        '[endpoints.chat]\napi = "chat"\nmodel = "databricks-gpt-5-4"\nmax_concurrency = 8\n'
        '[endpoints.my-chat]\napi = "chat"\nmodel = "databricks-gpt-5-4"\nmax_concurrency = 8\n'  # the notebook's
        "price = { input_per_million = 1.0, output_per_million = 2.0 }\n"
        '[endpoints.embed]\napi = "embeddings"\nmodel = "databricks-gte-large-en"\n'
        '[functions]\nchat_endpoint = "chat"\nembedding_endpoint = "embed"\n'
        "[cache]\nenabled = false\n"
    )
    port, token = _free_port(), secrets.token_urlsafe(16)
    log_path = folder / "server.log"
    env = {
        **os.environ,
        "DATABRICKS_HOST": gateway_session.url,
        "DATABRICKS_TOKEN": gateway_session.token,
        "PYSPARK_PYTHON": sys.executable,
    }
    command = [
        str(Path(sys.executable).with_name("aiquery")),
        "connect-server",
        *("--host", "127.0.0.1", "--port", str(port), "--token", token, "--master", "local[2]"),
        *("--config", str(config), "--warehouse", str(folder / "wh"), "--spark-log", str(folder / "spark.log")),
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=folder)
    try:
        url = _wait_for_url(process, log_path)
        yield ConnectServer(url=url, token=token, port=port, log_path=log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_url(process: subprocess.Popen[str], log_path: Path) -> str:
    deadline = time.monotonic() + SERVER_START_S
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("aiquery connect-server: serving "):
            return line.split("serving ", 1)[1].strip()
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"the Connect server did not start: {log_path.read_text()[-3000:]}")
