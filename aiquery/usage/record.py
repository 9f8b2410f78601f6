"""One usage record per HTTP request, and the sink protocol records are handed to.

The engine creates a record when a request is about to be sent (``sink.begin``) and completes it when the
request ends (``sink.end``), so a sink can journal the request before it reaches the wire: a worker killed
mid-request still leaves a trace of what it sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["MemorySink", "UsageRecord", "UsageSink"]


@dataclass(slots=True, kw_only=True)
class UsageRecord:
    """One HTTP request (one attempt of one row's call) and what it cost."""

    request_id: str
    """Unique per HTTP request (per attempt); sent as ``X-Client-Request-Id``."""
    call_id: str
    """Shared by the attempts of one row's call."""
    attempt: int
    """1 for the first request of a call, 2 for its first retry, …"""
    event_time: dt.datetime
    """When the request was sent (UTC)."""
    endpoint_name: str
    destination_model: str
    api_type: str
    url: str
    requester: str
    user_agent: str
    request_tags: Mapping[str, str] = field(default_factory=dict)
    request_hash: str = ""
    """The request's fingerprint (:func:`aiquery.store.base.fingerprint`): equal for requests with equal answers."""
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    output_reasoning_tokens: int | None = None
    tokens_estimated: bool = False
    latency_ms: int | None = None
    time_to_first_byte_ms: int | None = None
    status_code: int | None = None
    """HTTP status; None when no response arrived (see ``error_message``)."""
    error_message: str | None = None
    response_content_type: str | None = None
    """The response's Content-Type header, when a response arrived."""
    spark_app_id: str | None = None
    task_attempt_id: int | None = None
    query_tag: str | None = None
    function_name: str | None = None
    """The SQL function that made the request: ``ai_query``, ``ai_summarize`` ..."""
    estimate: bool = False
    """Made by an estimate run (on a sample of the rows)."""
    cache_hit: bool = False
    """Answered from the answer store: no HTTP request was made; the token counts are those it would have used."""
    cost: float | None = None
    """What the request was billed (tokens x price); 0 for an answer from the store; None without a price."""
    avoided_cost: float | None = None
    """For an answer from the store: what the request would have cost."""
    currency: str | None = None
    """The currency of ``cost`` and ``avoided_cost`` (``USD``, ``DBU`` ...)."""
    session_id: str | None = None
    """The Spark Connect session whose query sent the request; None outside a Connect server."""
    batch_id: str | None = None
    """The provider batch whose line answered the request (batch mode): on the line's own record, and on a cache
    hit served from that answer; None for a request sent live."""


class UsageSink(Protocol):
    """Receives usage records. Called from the engine's event loop thread; must not block for long."""

    def begin(self, record: UsageRecord) -> None:
        """A request is about to be sent; ``record`` has no outcome yet."""
        ...

    def end(self, record: UsageRecord) -> None:
        """The request finished (answered, failed or abandoned); ``record`` holds its outcome."""
        ...

    def withdraw(self, request_ids: list[str]) -> None:
        """Begun requests that were not sent after all: forget them (they are not recorded)."""
        ...

    def flush(self) -> None:
        """Make every ended record durable (for file sinks: visible to ingestion)."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


class MemorySink:
    """Keeps records in memory: for tests and for using the engine without a ledger."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []
        self.in_flight: dict[str, UsageRecord] = {}

    def begin(self, record: UsageRecord) -> None:
        self.in_flight[record.request_id] = record

    def end(self, record: UsageRecord) -> None:
        self.in_flight.pop(record.request_id, None)
        self.records.append(record)

    def withdraw(self, request_ids: list[str]) -> None:
        for request_id in request_ids:
            self.in_flight.pop(request_id, None)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
