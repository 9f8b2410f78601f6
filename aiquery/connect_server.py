"""A Spark Connect server with aiquery built in, for programs that embed it (``aiquery connect-server`` is the
command). See :mod:`aiquery.connect.server` and docs/connect.md.

>>> from aiquery import connect_server
>>> server = connect_server.start(port=15002)
>>> print(server.url)          # sc://localhost:15002/;token=...
>>> server.stop()
"""

from __future__ import annotations

from aiquery.connect.server import DEFAULT_HOST, DEFAULT_PORT, ConnectServer, start

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ConnectServer", "start"]
