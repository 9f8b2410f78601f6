"""The engine: concurrency, limits, retries and usage records for batches of calls. Knows nothing of Spark."""

from __future__ import annotations

from aiquery.engine.batch import Outcome
from aiquery.engine.engine import USER_AGENT, CallSite, Engine
from aiquery.engine.loop import LoopThread

__all__ = ["USER_AGENT", "CallSite", "Engine", "LoopThread", "Outcome"]
