"""Secrets: a recognisable token, used by jobs that succeed and fail, appears in no log, error, plan, event log,
spool file or usage row, and neither does the coordinator's per-application secret; TLS certificates are checked
unless an endpoint says ``verify_tls = false``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiquery.config import Endpoint, Secret, load_settings
from aiquery.engine import CallSite, Engine
from aiquery.gateway import start_gateway

JOB = Path(__file__).with_name("job.py")
CANARY = "dapi-SECRET-CANARY-1234567890"
WRONG_CANARY = "dapi-SECRET-CANARY-WRONG-0987654321"
# Any piece of either token: a truncated or re-encoded leak still contains this.
MARKERS = (CANARY, WRONG_CANARY, "SECRET-CANARY")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def canary_gateway() -> Iterator[Any]:
    """An emulator of its own that accepts only the canary token."""
    with start_gateway(token=CANARY) as handle:
        yield handle


def leaks(data: bytes | str) -> list[str]:
    raw = data.encode() if isinstance(data, str) else data
    return [marker for marker in MARKERS if marker.encode() in raw]


@pytest.mark.spark
@pytest.mark.slow
def test_the_tokens_appear_in_no_log_error_plan_event_log_spool_or_usage_row(
    canary_gateway: Any, tmp_path: Path
) -> None:
    config = tmp_path / "aiquery.toml"
    config.write_text(
        "[endpoints.good-chat]\napi = 'chat'\n\n"
        "[endpoints.failing-chat]\napi = 'chat'\nmax_retries = 1\n\n"
        "[endpoints.wrong-token-chat]\napi = 'chat'\ntoken_env = 'OTHER_TOKEN'\n\n"
        f"[endpoints.nowhere-chat]\napi = 'chat'\nbase_url = 'http://127.0.0.1:{closed_port()}/v1'\nmax_retries = 1\n"
    )
    env = {
        **os.environ,
        "DATABRICKS_HOST": canary_gateway.url,
        "DATABRICKS_TOKEN": CANARY,
        "OTHER_TOKEN": WRONG_CANARY,
        "AIQUERY_CONFIG": str(config),
        "PYSPARK_PYTHON": sys.executable,
    }
    work = tmp_path / "work"
    event_log = work / "events"
    event_log.mkdir(parents=True)
    done = subprocess.run(
        [
            sys.executable,
            str(JOB),
            "secrets",
            str(work / "warehouse"),
            str(work / "usage"),
            "ai_gateway.usage_secrets",
            str(event_log),
        ],
        env=env,
        cwd=work,
        capture_output=True,
        timeout=600,
    )
    stdout, stderr = done.stdout, done.stderr
    assert done.returncode == 0, stderr[-4000:].decode(errors="replace")
    report = json.loads(stdout.decode().strip().splitlines()[-1])

    # The job really did what the search below relies on: answers, each kind of failure, plans, logs, events.
    errors = [r["errorMessage"] for r in report["results"] if r["errorMessage"]]
    assert sum(1 for r in report["results"] if r["result"]) == 4
    assert sum("HTTP 500" in e for e in errors) == sum("HTTP 401" in e for e in errors) == 4
    assert sum("cannot connect" in e for e in errors) == 4
    assert len(report["errors"]) == 3 and len(report["plans"]) == 8
    assert all("ai_query" in plan for plan in report["plans"])
    assert report["ingested"] == len(report["usage"]) >= 4 + 8 + 4 + 8
    # Driver-side Python logging (aiquery's own records), the workers' tracebacks and log4j at INFO were captured.
    assert b"INFO:aiquery.usage.ingest" in stderr and b"PythonException" in stderr
    assert b" INFO DAGScheduler: " in (work / "spark-driver.log").read_bytes()
    assert canary_gateway.stats()["by_status"].get("200", 0) >= 4  # the canary did reach the wire
    event_files = [path for path in event_log.rglob("*") if path.is_file()]
    assert event_files and b"SparkListenerSQLExecutionStart" in b"".join(p.read_bytes() for p in event_files)

    # The coordinator's secret (random per application, shipped in every plan) leaks nowhere either.
    coordinator_secret = (tmp_path / "coordinator-secret").read_text()
    assert len(coordinator_secret) == 64

    def leaks(data: bytes | str) -> list[str]:
        raw = data.encode() if isinstance(data, str) else data
        return [marker for marker in (*MARKERS, coordinator_secret) if marker.encode() in raw]

    found = {"stdout": leaks(stdout), "stderr": leaks(stderr)}
    for index, text in enumerate(report["plans"] + report["errors"] + report["usage"]):
        found[f"report item {index}"] = leaks(text)
    # Every file the job left: event log, Delta table and logs, the ingestion log, spool and journal files.
    files = [path for path in work.rglob("*") if path.is_file()]
    parquet = [path for path in files if path.name.endswith(".parquet")]
    assert parquet and any(p.name == "writer" and "ingest" in str(p) for p in files)  # the ingestion log
    # Uncompressed (see job.py), so the bytes searched are the values themselves: a requester is there to be seen.
    assert any(b"ai_query" in p.read_bytes() or b"mlflow/v1/chat/completions" in p.read_bytes() for p in parquet)
    for path in files:
        found[str(path.relative_to(work))] = leaks(path.read_bytes())
    assert {where: markers for where, markers in found.items() if markers} == {}


def test_reprs_errors_and_engine_logs_never_show_the_token(
    canary_gateway: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from aiquery.spark.plan import plan_call

    config = tmp_path / "aiquery.toml"
    config.write_text("[endpoints.c]\napi = 'chat'\nmax_retries = 1\n[endpoints.w]\napi = 'chat'\ntoken_env = 'W'\n")
    settings = load_settings(
        {"DATABRICKS_HOST": canary_gateway.url, "DATABRICKS_TOKEN": CANARY, "W": WRONG_CANARY}, config_path=config
    )
    plan = plan_call(settings, endpoint="c", parse_ddl=lambda text: ("string", "STRING"))
    shown = [repr(settings), str(settings), repr(settings.endpoint("c")), repr(plan), str(plan.site)]
    assert not leaks("".join(shown))
    assert pickle.loads(pickle.dumps(settings.endpoint("w"))).token.reveal() == WRONG_CANARY  # workers get it

    caplog.set_level(logging.DEBUG)
    canary_gateway.reset()
    canary_gateway.configure(script=["500", "500"])

    async def calls() -> list[Any]:
        engine = Engine()
        try:
            failing = await engine.run(CallSite(endpoint=settings.endpoint("c")), ["x"])
            refused = await engine.run(CallSite(endpoint=settings.endpoint("w")), ["y"])
            return failing + refused
        finally:
            await engine.aclose()

    outcomes = asyncio.run(calls())
    assert "HTTP 500" in str(outcomes[0].error) and "HTTP 401" in str(outcomes[1].error)
    for outcome in outcomes:
        error = outcome.error
        shown = [str(error), repr(error), json.dumps(error.headers), error.body, str(pickle.loads(pickle.dumps(error)))]
        assert not leaks("".join(shown)), shown
    assert "attempt failed" in caplog.text and not leaks(caplog.text)


# ---- TLS ------------------------------------------------------------------------------------------------------


class TLSGateway:
    """The emulator's application served over TLS with a self-signed certificate, on a thread of this process."""

    def __init__(self, certificate: Path, key: Path, token: str) -> None:
        from aiquery.gateway.emulator import Emulator
        from aiquery.gateway.http_server import HTTPProtocol
        from aiquery.gateway.settings import GatewayConfig

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificate, key)
        self.loop = asyncio.new_event_loop()
        self.emulator = Emulator(token=token, config=GatewayConfig())
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

        async def listen() -> asyncio.Server:
            return await self.loop.create_server(
                lambda: HTTPProtocol(self.emulator, self.loop), "127.0.0.1", 0, ssl=context
            )

        self.server = asyncio.run_coroutine_threadsafe(listen(), self.loop).result(10)
        self.url = f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def tls_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSGateway]:
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl command makes the test's self-signed certificate (.ci/run installs it)"
    folder = tmp_path_factory.mktemp("tls")
    certificate, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
        ],
        check=True,
        capture_output=True,
    )
    gateway = TLSGateway(certificate, key, CANARY)
    yield gateway
    gateway.close()


def tls_endpoint(gateway: TLSGateway, **options: Any) -> Endpoint:
    return Endpoint(
        name="tls-chat",
        api="chat",
        model="m",
        base_url=f"{gateway.url}/ai-gateway/mlflow/v1",
        token=Secret(CANARY),
        **options,
    )


def test_tls_certificates_are_verified_unless_the_endpoint_turns_it_off(tls_gateway: TLSGateway) -> None:
    async def ask(endpoint: Endpoint) -> Any:
        engine = Engine()
        try:
            return (await engine.run(CallSite(endpoint=endpoint), ["hello over TLS"]))[0]
        finally:
            await engine.aclose()

    refused = asyncio.run(ask(tls_endpoint(tls_gateway)))
    assert refused.value is None
    assert "TLS certificate rejected" in str(refused.error) and "self-signed" in str(refused.error)
    assert refused.error.attempts == 1  # a certificate will not fix itself: not retried
    assert tls_gateway.emulator.accounting.requests == 0  # the handshake failed before any request was sent

    answered = asyncio.run(ask(tls_endpoint(tls_gateway, verify_tls=False)))
    assert answered.error is None and answered.value
    assert tls_gateway.emulator.accounting.requests == 1


def test_verify_tls_comes_only_from_an_explicit_false(tmp_path: Path) -> None:
    config = tmp_path / "aiquery.toml"
    config.write_text(
        "[endpoints.default]\nbase_url = 'https://127.0.0.1:1/v1'\n\n"
        "[endpoints.off]\nbase_url = 'https://127.0.0.1:1/v1'\nverify_tls = false\n\n"
        "[endpoints.typo]\nbase_url = 'https://127.0.0.1:1/v1'\nverify_tls = 'false'\n"
    )
    from aiquery.errors import ConfigError

    with pytest.raises(ConfigError, match="verify_tls = 'false' is invalid; expected true or false"):
        load_settings({"DATABRICKS_TOKEN": CANARY}, config_path=config)
    config.write_text(config.read_text().split("[endpoints.typo]")[0])
    settings = load_settings({"DATABRICKS_TOKEN": CANARY}, config_path=config)
    assert settings.endpoint("default").verify_tls is True
    assert settings.endpoint("off").verify_tls is False


@pytest.mark.spark
def test_verify_tls_false_reaches_the_spark_workers(
    spark: Any, tls_gateway: TLSGateway, register_with_ledger: Any
) -> None:
    class Handle:  # what register_with_ledger needs to know of a gateway
        url = tls_gateway.url
        token = CANARY

    register_with_ledger(
        Handle(),
        "[endpoints.checked]\napi = 'chat'\n\n[endpoints.unchecked]\napi = 'chat'\nverify_tls = false\n",
    )
    rows = spark.sql(
        "SELECT ai_query('checked', 'hi', failOnError => false) AS a, "
        "ai_query('unchecked', 'hi', failOnError => false) AS b"
    ).collect()
    assert "TLS certificate rejected" in rows[0].a.errorMessage
    assert rows[0].b.result and rows[0].b.errorMessage is None
