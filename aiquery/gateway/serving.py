"""Running the emulator on an event loop until asked to stop (for the command and in-process handles)."""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
from collections.abc import Callable

from aiquery.gateway.accounting import DEFAULT_LOG_LIMIT
from aiquery.gateway.emulator import Emulator
from aiquery.gateway.http_server import HTTPProtocol, serve
from aiquery.gateway.settings import GatewayConfig

__all__ = ["check_loopback", "gateway_url", "new_event_loop", "run_gateway"]

Ready = Callable[[str, Callable[[], None]], None]
"""Called once listening, with the gateway's URL and a thread-safe function that stops it."""


def check_loopback(host: str) -> None:
    """Refuse any address but loopback: the emulator has unauthenticated admin routes.

    Raises:
        ValueError: ``host`` is not a loopback address.
    """
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the gateway emulator serves on loopback only, not on {host!r}")


def gateway_url(host: str, port: int) -> str:
    """The base URL clients use, e.g. ``http://127.0.0.1:8080`` (what DATABRICKS_HOST is set to)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop when uvloop is installed (less CPU per request), else asyncio's default loop."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


async def run_gateway(
    *,
    host: str,
    port: int,
    token: str | None,
    config: GatewayConfig,
    ready: Ready,
    log_limit: int = DEFAULT_LOG_LIMIT,
) -> None:
    """Serve until the stop function handed to ``ready`` is called; then close every connection."""
    check_loopback(host)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    connections: set[HTTPProtocol] = set()
    emulator = Emulator(token=token, config=config, log_limit=log_limit)
    server = await serve(emulator, host, port, connections)
    bound_port = server.sockets[0].getsockname()[1]

    def stop() -> None:
        loop.call_soon_threadsafe(stopping.set)

    ready(gateway_url(host, bound_port), stop)
    try:
        await stopping.wait()
    finally:
        server.close()
        for connection in list(connections):
            connection.close()
