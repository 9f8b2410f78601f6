"""``aiquery demo``: ai_query end to end on a laptop, with the local gateway emulator and local Spark.

See :func:`aiquery.demo.run.run_demo`; the sample data and the demo job live in ``aiquery/data``.
"""

from __future__ import annotations

from aiquery.demo.run import BOOKS, DEMO_TABLES, GENRES, DemoResult, run_demo

__all__ = ["BOOKS", "DEMO_TABLES", "GENRES", "DemoResult", "run_demo"]
