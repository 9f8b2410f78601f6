"""``python -m aiquery.gateway``: see :mod:`aiquery.gateway.command`."""

from __future__ import annotations

from aiquery.gateway.command import main

raise SystemExit(main())
