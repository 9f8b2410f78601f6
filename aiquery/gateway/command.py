"""``python -m aiquery.gateway``: run the emulator until SIGTERM or SIGINT.

The first line on stdout is the gateway's URL; anything else goes to stderr, so a parent that reads only that
line never blocks the server on a full pipe.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import os
import signal
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from aiquery.gateway.accounting import DEFAULT_LOG_LIMIT
from aiquery.gateway.serving import new_event_loop, run_gateway
from aiquery.gateway.settings import DEFAULT_HOSTILE_SHARE, HOSTILE_KINDS, GatewayConfig

__all__ = ["DEFAULT_TOKEN", "build_parser", "main"]

DEFAULT_TOKEN = "dapi-aiquery-emulator-token"

logger = logging.getLogger("aiquery.gateway")


def _scalar_settings() -> dict[str, type]:
    """Settings that take one number or string, each offered as a ``--flag`` (the rest go in ``--config``)."""
    hints = typing.get_type_hints(GatewayConfig)
    scalars: dict[str, type] = {}
    for field in dataclasses.fields(GatewayConfig):
        hint = hints[field.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        options = typing.get_args(hint) if union else (hint,)
        for kind in (int, float, str):
            if kind in options:
                scalars[field.name] = kind
                break
    return scalars


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m aiquery.gateway",
        description="Local AI Gateway emulator: the six gateway routes on loopback, with injectable faults.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default 0: a free port)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--token", default=DEFAULT_TOKEN, help="the token clients must present")
    auth.add_argument("--no-auth", action="store_true", help="accept requests without checking any token")
    parser.add_argument(
        "--config", default="{}", help='settings as a JSON object, e.g. \'{"fault_rates": {"503": 0.1}}\''
    )
    parser.add_argument("--log-limit", type=int, default=DEFAULT_LOG_LIMIT, help="requests kept in the request log")
    parser.add_argument("--watch-stdin", action="store_true", help="stop when stdin closes (the parent went away)")
    parser.add_argument(
        "--hostile",
        action="store_true",
        help=f"answer a share of requests ({DEFAULT_HOSTILE_SHARE:g} unless --hostile-share says) with status 200 "
        "answers a careless client cannot survive: deeply nested JSON, numbers past a float's range, gzip bombs, "
        "endless, oversized and trickling bodies, wrong content types; the same request always meets the same one",
    )
    parser.add_argument(
        "--hostile-kinds",
        metavar="KIND,...",
        help=f"the hostile kinds to choose from (default all: {','.join(HOSTILE_KINDS)})",
    )
    for name, kind in _scalar_settings().items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=kind,
            default=None,
            help=f"see GatewayConfig.{name}",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        changes: dict[str, Any] = json.loads(args.config)
        if not isinstance(changes, dict):
            raise ValueError("--config must be a JSON object")
        changes.update({name: getattr(args, name) for name in _scalar_settings() if getattr(args, name) is not None})
        if args.hostile and args.hostile_share is None:
            changes["hostile_share"] = DEFAULT_HOSTILE_SHARE
        if args.hostile_kinds is not None:
            changes["hostile_kinds"] = [kind.strip() for kind in args.hostile_kinds.split(",") if kind.strip()]
        config = GatewayConfig().updated(changes)
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    token = None if args.no_auth else args.token
    loop = new_event_loop()
    try:
        loop.run_until_complete(
            run_gateway(
                host=args.host,
                port=args.port,
                token=token,
                config=config,
                log_limit=args.log_limit,
                ready=lambda url, stop: _on_ready(url, stop, watch_stdin=args.watch_stdin),
            )
        )
    finally:
        loop.close()
    logger.info("gateway emulator stopped")
    return 0


def _on_ready(url: str, stop: Callable[[], None], *, watch_stdin: bool) -> None:
    # Everything allocated so far lives as long as the process: keep the collector from rescanning it.
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    if watch_stdin:
        _stop_at_stdin_eof(loop, stop)
    print(url, flush=True)
    logger.info("gateway emulator listening on %s", url)


def _stop_at_stdin_eof(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    # The parent holds our stdin open for its lifetime; EOF means it exited, perhaps without stopping us.
    descriptor = sys.stdin.fileno()

    def readable() -> None:
        if not os.read(descriptor, 4096):
            loop.remove_reader(descriptor)
            stop()

    loop.add_reader(descriptor, readable)
