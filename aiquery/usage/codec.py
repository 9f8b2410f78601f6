"""Usage records as spool lines: one compact JSON object per line, written fast.

A spool line holds the fields of :class:`~aiquery.usage.record.UsageRecord` (see
:data:`aiquery.usage.schema.SPOOL_FIELDS`), except that ``event_time`` becomes ``event_time_us``, microseconds
since the epoch in UTC, and fields that are None are left out (the JSON reader reads them as NULL).

Encoding is on the engine's hot path (thousands of records a second per worker), so it avoids
``dataclasses.asdict`` and ``json.dumps`` of a dict (about 50 µs per record here) and instead joins
pre-escaped pieces: the fields that are the same for every request of an endpoint are encoded once and
cached. A line is built in two parts: :meth:`RecordEncoder.head` when the request is sent, and
:meth:`RecordEncoder.tail` (the outcome) when it ends.
"""

from __future__ import annotations

import datetime as dt
import json
from json.encoder import encode_basestring_ascii as _quote  # the C implementation
from operator import attrgetter
from typing import Any

from aiquery.usage.record import UsageRecord

__all__ = ["RecordEncoder", "decode_line"]

_UTC = dt.timezone.utc
# Fields that are the same for every request of one endpoint in one task: encoded once, then cached.
_STATIC_FIELDS = (
    "endpoint_name",
    "destination_model",
    "api_type",
    "url",
    "requester",
    "user_agent",
    "spark_app_id",
    "query_tag",
    "task_attempt_id",
    "function_name",
    "estimate",
)
_static_key = attrgetter(*_STATIC_FIELDS)
_HEAD = '{"request_id":%s,"call_id":%s,"attempt":%d,"event_time_us":%d,"request_hash":%s%s'
# A successful response has these six; %d formats them in one step (and truncates a float latency).
_MAIN_OUTCOME = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "latency_ms",
    "time_to_first_byte_ms",
    "status_code",
)
_MAIN_TAIL = "".join(f',"{name}":%d' for name in _MAIN_OUTCOME)
_OPTIONAL_NUMBERS = ("cache_read_input_tokens", "cache_creation_input_tokens", "output_reasoning_tokens")
_TEXTS = ("error_message", "response_content_type", "currency")
_MONEY = ("cost", "avoided_cost")
_MAX_CACHED = 1024


def _micros(moment: dt.datetime) -> int:
    if moment.tzinfo is None:  # the record's convention: naive times are UTC
        moment = moment.replace(tzinfo=_UTC)
    # Exact: a float holds today's epoch seconds to within 0.25 µs, so rounding lands on the microsecond.
    return round(moment.timestamp() * 1_000_000)


class RecordEncoder:
    """Encodes UsageRecords as spool lines. Not thread-safe (one per writer)."""

    def __init__(self) -> None:
        # static key -> (request tags seen with it, encoded fields)
        self._static: dict[tuple[Any, ...], tuple[dict[str, str], str]] = {}

    def head(self, record: UsageRecord) -> str:
        """The line's opening: what is known when the request is sent. No closing brace."""
        key = _static_key(record)
        cached = self._static.get(key)
        # Tags are compared, not hashed: the engine may pass a fresh dict per record.
        if cached is None or cached[0] != record.request_tags:
            if len(self._static) >= _MAX_CACHED:
                self._static.clear()
            cached = self._static[key] = (dict(record.request_tags), self._encode_static(record))
        return _HEAD % (
            _quote(record.request_id),
            _quote(record.call_id),
            record.attempt,
            _micros(record.event_time),
            _quote(record.request_hash),
            cached[1],
        )

    @staticmethod
    def _encode_static(record: UsageRecord) -> str:
        parts = []
        for name in _STATIC_FIELDS:
            value = getattr(record, name)
            if value is None or value is False:
                continue
            if value is True:
                parts.append(f',"{name}":true')
            elif name == "task_attempt_id":
                parts.append(f',"{name}":{int(value)}')
            else:
                parts.append(f',"{name}":{_quote(value)}')
        if record.request_tags:
            tags = {str(k): str(v) for k, v in record.request_tags.items()}
            parts.append(',"request_tags":' + json.dumps(tags, separators=(",", ":")))
        return "".join(parts)

    def tail(self, record: UsageRecord) -> str:
        """The line's end: the request's outcome, the closing brace and the newline."""
        r = record
        try:
            line = _MAIN_TAIL % (
                r.input_tokens,
                r.output_tokens,
                r.total_tokens,
                r.latency_ms,
                r.time_to_first_byte_ms,
                r.status_code,
            )
        except TypeError:  # one of them is None: an error, or a provider without usage
            line = "".join(
                f',"{name}":{int(value)}' for name in _MAIN_OUTCOME if (value := getattr(r, name)) is not None
            )
        for name in _OPTIONAL_NUMBERS:
            value = getattr(r, name)
            if value is not None:
                line += f',"{name}":{int(value)}'
        if r.tokens_estimated:
            line += ',"tokens_estimated":true'
        if r.cache_hit:
            line += ',"cache_hit":true'
        for name in _MONEY:
            value = getattr(r, name)
            if value is not None:
                line += f',"{name}":{float(value)!r}'
        for name in _TEXTS:
            value = getattr(r, name)
            if value is not None:
                line += ',"' + name + '":' + _quote(value)
        return line + "}\n"

    def line(self, record: UsageRecord) -> str:
        """The whole line for a finished request."""
        return self.head(record) + self.tail(record)


def decode_line(line: str) -> UsageRecord:
    """The UsageRecord a spool line holds (for recovery, tests and tools; not on the hot path).

    Raises:
        ValueError: the line is not a spool record.
    """
    data = json.loads(line)
    if not isinstance(data, dict) or "request_id" not in data:
        raise ValueError(f"not a usage record: {line[:80]!r}")
    micros = data.pop("event_time_us")
    data["event_time"] = dt.datetime(1970, 1, 1, tzinfo=_UTC) + dt.timedelta(microseconds=micros)
    data.setdefault("request_tags", {})
    return UsageRecord(**data)
