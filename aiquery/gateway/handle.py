"""Starting the emulator and talking to it: :func:`start_gateway` and :class:`GatewayHandle`.

By default the emulator runs in its own process (``python -m aiquery.gateway``), so it has its own CPU and a
test can kill the client side freely; ``in_process=True`` runs it on a thread instead. Either way the handle
speaks to the admin routes over HTTP with urllib, so it needs no event loop of the caller's.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiquery.gateway.accounting import DEFAULT_LOG_LIMIT
from aiquery.gateway.command import DEFAULT_TOKEN
from aiquery.gateway.serving import check_loopback, new_event_loop, run_gateway
from aiquery.gateway.settings import GatewayConfig

__all__ = ["DEFAULT_TOKEN", "GatewayHandle", "start_gateway"]

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
ADMIN_TIMEOUT_S = 60.0

# A loopback admin call must never go through a proxy named in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class GatewayHandle:
    """A running emulator.

    Attributes:
        url: base URL of the gateway, e.g. ``http://127.0.0.1:41234`` (what DATABRICKS_HOST is set to).
        token: the token it accepts, or None if it checks none.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        process: subprocess.Popen[bytes] | None = None,
        stop: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.token = token
        self._process = process
        self._stop = stop

    def __repr__(self) -> str:
        where = f"pid {self._process.pid}" if self._process is not None else "in process"
        return f"GatewayHandle(url={self.url!r}, {where})"

    @property
    def pid(self) -> int | None:
        """The emulator's process id, or None when it runs in this process."""
        return None if self._process is None else self._process.pid

    def configure(self, **config: Any) -> dict[str, Any]:
        """Change settings (a partial update, see :class:`GatewayConfig`) and return them all.

        Raises:
            ValueError: an unknown setting or an invalid value.
        """
        result: dict[str, Any] = self._call("POST", "config", config)
        return result

    def config(self) -> dict[str, Any]:
        """The current settings."""
        result: dict[str, Any] = self._call("GET", "config")
        return result

    def stats(self) -> dict[str, Any]:
        """The counters.

        Keys: ``requests``, ``by_route`` and ``by_status`` (status keys are strings, plus ``hang`` and
        ``drop``), ``tokens`` (``input``, ``output``, ``cached``, ``billed_input``, ``billed_output``),
        ``in_flight``, ``max_in_flight``, ``logged``, ``script_remaining`` and ``config``.
        """
        result: dict[str, Any] = self._call("GET", "stats")
        return result

    def requests(self, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """The request log in arrival order.

        One dict per request with ``client_request_id``, ``route``, ``model``, ``status``, ``outcome``,
        ``input_tokens``, ``output_tokens``, ``cached_tokens``, ``cache_creation_tokens`` (reported in the body),
        ``billed_input_tokens``, ``billed_output_tokens`` (charged: more than reported for an answer that was
        generated but cannot be read), ``request_tags``, ``user_agent`` and ``time``.
        """
        query = f"?offset={offset}" + ("" if limit is None else f"&limit={limit}")
        result: list[dict[str, Any]] = self._call("GET", "requests" + query)["requests"]
        return result

    def reset(self) -> None:
        """Counters, log, script and settings back to how the gateway started."""
        self._call("POST", "reset", {})

    def close(self) -> None:
        """Stop the emulator (idempotent)."""
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process is not None and self._process.stdin is not None:
            self._process.stdin.close()

    def __enter__(self) -> GatewayHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: str, action: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.url}/_emulator/{action}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with _OPENER.open(request, timeout=ADMIN_TIMEOUT_S) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            with contextlib.suppress(ValueError, KeyError, TypeError):
                detail = json.loads(detail)["error"]
            if error.code == 400:
                raise ValueError(detail) from None
            raise RuntimeError(f"gateway admin call {method} {action} failed: {error.code} {detail}") from None


def start_gateway(
    *,
    token: str | None = DEFAULT_TOKEN,
    host: str = "127.0.0.1",
    port: int = 0,
    in_process: bool = False,
    log_limit: int = DEFAULT_LOG_LIMIT,
    **config: Any,
) -> GatewayHandle:
    """Start the gateway emulator and return once it is listening.

    Args:
        token: the token clients must present (``Authorization: Bearer``, or the native key headers on the
            Anthropic and Gemini routes); None disables the check.
        host: a loopback address.
        port: the port, or 0 for a free one.
        in_process: run on a thread of this process instead of in a child process.
        log_limit: how many requests the request log keeps.
        **config: starting settings, the fields of :class:`GatewayConfig` (``latency_ms``, ``fault_rates`` …).

    Returns:
        A handle, also usable as a context manager that stops the emulator on exit.

    Raises:
        ValueError: a non-loopback host, or an unknown or invalid setting.
        RuntimeError: the emulator did not start.
    """
    check_loopback(host)
    settings = GatewayConfig().updated(config)
    if in_process:
        return _start_thread(token=token, host=host, port=port, settings=settings, log_limit=log_limit)
    return _start_process(token=token, host=host, port=port, settings=settings, log_limit=log_limit)


def _start_process(
    *, token: str | None, host: str, port: int, settings: GatewayConfig, log_limit: int
) -> GatewayHandle:
    command = [sys.executable, "-m", "aiquery.gateway", "--host", host, "--port", str(port), "--watch-stdin"]
    command += ["--log-limit", str(log_limit), "--config", json.dumps(settings.to_json())]
    command += ["--no-auth"] if token is None else ["--token", token]
    # The child must import this very package, installed or not.
    package_root = str(Path(__file__).resolve().parents[2])
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environment.get("PYTHONPATH")]))
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment)
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(START_TIMEOUT_S)
    line = process.stdout.readline().decode().strip() if ready else ""
    process.stdout.close()
    if not line.startswith("http"):
        process.kill()
        process.wait()
        raise RuntimeError(f"the gateway emulator did not start (exit status {process.returncode}); see its stderr")
    return GatewayHandle(line, token, process=process)


def _start_thread(*, token: str | None, host: str, port: int, settings: GatewayConfig, log_limit: int) -> GatewayHandle:
    started = threading.Event()
    outcome: dict[str, Any] = {}

    def ready(url: str, stop: Callable[[], None]) -> None:
        outcome.update(url=url, stop=stop)
        started.set()

    def run() -> None:
        loop = new_event_loop()
        try:
            loop.run_until_complete(
                run_gateway(host=host, port=port, token=token, config=settings, ready=ready, log_limit=log_limit)
            )
        except BaseException as error:  # reported to the starting thread, which raises it
            outcome["error"] = error
            started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="aiquery-gateway", daemon=True)
    thread.start()
    if not started.wait(START_TIMEOUT_S) or "error" in outcome:
        raise RuntimeError("the in-process gateway emulator did not start") from outcome.get("error")
    stop_server: Callable[[], None] = outcome["stop"]

    def stop() -> None:
        stop_server()
        thread.join(STOP_TIMEOUT_S)

    return GatewayHandle(outcome["url"], token, stop=stop)
