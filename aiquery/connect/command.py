"""``aiquery connect-server``: serve Spark Connect clients from a driver with aiquery built in, until SIGTERM or
Ctrl-C.

Once serving it prints one line to stdout, ``aiquery connect-server: serving sc://localhost:PORT/;token=...``: the
only place the token appears (Spark's log goes to its own file, and Spark redacts settings named like a token). A
script that starts the server reads that line; keep stdout out of shared logs, or give the token yourself
(``--token``, or Spark's ``SPARK_CONNECT_AUTHENTICATE_TOKEN`` in the environment) and discard stdout.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import IO

from aiquery.config import load_settings
from aiquery.connect.server import DEFAULT_HOST, DEFAULT_PORT, start
from aiquery.jobs.command import EXIT_OK, UsageProblem, spark_log_path

__all__ = ["TOKEN_VARIABLE", "add_connect_server_arguments", "connect_server_command"]

TOKEN_VARIABLE = "SPARK_CONNECT_AUTHENTICATE_TOKEN"
"""Spark's own variable for the Connect token, read when ``--token`` is not given."""


def add_connect_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``aiquery connect-server``."""
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    parser.add_argument("--master", default="local[*]", help="Spark master URL (default local[*])")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting (repeatable)")
    parser.add_argument(
        "--token",
        help=f"token clients must send (default ${TOKEN_VARIABLE}, else one is generated and printed; "
        "required to listen on any address but loopback)",
    )
    parser.add_argument("--config", metavar="FILE", help="aiquery TOML file (default: as for run)")
    parser.add_argument("--warehouse", default="spark-warehouse", metavar="DIR", help="warehouse folder, as for run")
    parser.add_argument("--spark-log", metavar="FILE", help="file for Spark's own output, as for run")


def connect_server_command(args: argparse.Namespace, *, out: IO[str], err: IO[str]) -> int:
    """Start the server, print its URL, serve until SIGTERM or Ctrl-C, then stop it cleanly."""
    conf = _spark_conf(args.conf)
    settings = load_settings(config_path=args.config)
    spark_log = spark_log_path(args.spark_log, args.warehouse)
    if spark_log is not None:
        err.write(f"Spark's own log: {spark_log}\n")
    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    server = start(
        master=args.master,
        host=args.host,
        port=args.port,
        conf=conf,
        token=args.token or os.environ.get(TOKEN_VARIABLE) or None,
        settings=settings,
        warehouse_dir=args.warehouse,
        spark_log=spark_log,
    )
    try:
        out.write(f"aiquery connect-server: serving {server.url}\n")
        out.flush()
        err.write(f"aiquery connect-server: listening on {args.host}:{server.port}; SIGTERM or Ctrl-C stops it\n")
        if not server.url.startswith("sc://localhost:"):
            # Spark's Python client speaks TLS to any host but localhost, and this server plain gRPC.
            err.write(
                "aiquery connect-server: clients on other machines reach it through a TLS proxy, with "
                "sc://PROXY:PORT/;use_ssl=true (docs/connect.md)\n"
            )
        err.flush()
        while not stopping.wait(1.0):
            pass
    finally:
        err.write("aiquery connect-server: stopping (requests in flight end, the ledger is ingested)\n")
        err.flush()
        server.stop()
        signal.signal(signal.SIGTERM, previous)
    err.write("aiquery connect-server: stopped\n")
    return EXIT_OK


def _spark_conf(pairs: list[str]) -> dict[str, str]:
    conf: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageProblem(f"--conf takes KEY=VALUE, not {pair!r}")
        conf[key.strip()] = value
    return conf
