"""docs/adding_an_api.md's checklist, proved: a seventh wire format written as one module (``seventh_api``) and
registered with one line is accepted by configuration, has its parameters mapped and checked, and is sent by the
real engine to its own path with its own auth header, over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from seventh_api import SeventhAdapter

from aiquery.apis import register, unregister
from aiquery.config import APIS, load_settings
from aiquery.engine import Engine
from aiquery.errors import ArgumentError, ConfigError
from aiquery.spark.plan import plan_call
from aiquery.usage.record import MemorySink

KEY = "seventh-key-value"


class SeventhServer(ThreadingHTTPServer):
    """Answers the seventh API on loopback and keeps every request it saw (path, headers, body)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, dict[str, str], Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: SeventhServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        answer = json.dumps({"text": f"seven says {body['prompt']}", "stop": "done", "counts": {"in": 3, "out": 4}})
        data = answer.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what it needs from ``server.seen``."""


@pytest.fixture
def server() -> Iterator[SeventhServer]:
    httpd = SeventhServer()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def seventh() -> Iterator[None]:
    register(SeventhAdapter())  # the checklist's one registry line
    yield
    unregister("seventh")


def _settings(tmp_path: Path, host: str) -> Any:
    path = tmp_path / "aiquery.toml"
    path.write_text(
        '[endpoints.s7]\napi = "seventh"\nmodel = "seven-large"\nauth = "x-seventh-key"\ntoken_env = "SEVENTH_KEY"\n'
    )
    return load_settings({"DATABRICKS_HOST": host, "SEVENTH_KEY": KEY}, config_path=path)


def _no_ddl(text: str) -> Any:
    raise AssertionError(f"no DDL to parse here: {text}")


def test_a_registered_seventh_api_is_configured_planned_and_sent(
    seventh: None, server: SeventhServer, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, server.url)
    endpoint = settings.endpoint("s7")
    assert APIS["seventh"] == "/ai-gateway/seventh"
    assert endpoint.base_url == server.url + "/ai-gateway/seventh" and endpoint.auth == "x-seventh-key"

    plan = plan_call(settings, endpoint="s7", parse_ddl=_no_ddl, model_parameters={"max_tokens": 5, "top_p": 0.5})
    assert plan.site.parameters == {"max_tokens": 5, "top_p": 0.5} and plan.result_sql == "STRING"
    with pytest.raises(ArgumentError, match='The "seventh" API has no such parameter'):
        plan_call(settings, endpoint="s7", parse_ddl=_no_ddl, model_parameters={"seed": 1})

    sink = MemorySink()

    async def send() -> list[Any]:
        engine = Engine(sink=sink)
        try:
            return await engine.run(plan.site, ["one", "two"])
        finally:
            await engine.aclose()

    outcomes = asyncio.run(send())
    assert [o.value for o in outcomes] == ["seven says one", "seven says two"]
    assert sorted(path for path, _, _ in server.seen) == ["/ai-gateway/seventh/v1/generate"] * 2
    for _, headers, body in server.seen:
        assert headers["x-seventh-key"] == KEY and "authorization" not in headers
        assert body == {"model": "seven-large", "prompt": body["prompt"], "options": {"length": 5}, "top_p": 0.5}
    assert {(r.api_type, r.input_tokens, r.output_tokens) for r in sink.records} == {("seventh/v1/generate", 3, 4)}


def test_without_its_registry_line_the_seventh_api_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="api = 'seventh' is invalid; expected one of chat, embeddings"):
        _settings(tmp_path, "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="auth = 'x-seventh-key' is invalid; expected one of bearer, x-api-key"):
        load_settings({}, config_path=_write(tmp_path, '[endpoints.e]\nauth = "x-seventh-key"\n'))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "other.toml"
    path.write_text(text)
    return path
