"""Usage records as spool lines: one compact JSON object per line, written fast.

A spool line holds the fields of :class:`~aiquery.usage.record.UsageRecord` as :data:`aiquery.usage.schema.SPOOL_FIELDS`
lists them (the codec's fields and their JSON form derive from that list and its types), except that ``event_time``
becomes ``event_time_us``, microseconds since the epoch in UTC; fields that are None (or False, or an empty map)
are left out, and the JSON reader reads them as NULL.

Encoding is on the engine's hot path (thousands of records a second per worker), so it avoids
``dataclasses.asdict`` and ``json.dumps`` of a dict (about 50 µs per record here) and instead joins
pre-escaped pieces: the fields known when a request is sent (:data:`~aiquery.usage.schema.SENT_FIELDS`) that are
the same for every request of an endpoint are encoded once and cached. A line is built in two parts:
:meth:`RecordEncoder.head` when the request is sent, and :meth:`RecordEncoder.tail` (the outcome) when it ends.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Collection
from json.encoder import encode_basestring_ascii as _quote  # the C implementation
from operator import attrgetter
from typing import Any

from aiquery.usage.record import UsageRecord
from aiquery.usage.schema import SENT_FIELDS, SPOOL_FIELDS

__all__ = ["RecordEncoder", "decode_line"]

_UTC = dt.timezone.utc
_EVENT_TIME_US = "event_time_us"
"""The spool field holding ``UsageRecord.event_time``, as microseconds since the epoch."""
_PER_REQUEST = ("request_id", "call_id", "attempt", _EVENT_TIME_US, "request_hash")
"""Sent fields that differ from one request to the next: formatted into every head, never cached (in this order:
:meth:`RecordEncoder.head` passes them so)."""
_MAX_CACHED = 1024


def _encoder(name: str, kind: str) -> Callable[[Any], str]:
    """How a value of the spool field ``name`` of DDL type ``kind`` is written: ``,"name":value``."""
    prefix = f',"{name}":'
    if kind in ("INT", "BIGINT"):
        return lambda value: f"{prefix}{int(value)}"  # int(): a float latency is truncated
    if kind == "DOUBLE":
        return lambda value: f"{prefix}{float(value)!r}"
    if kind == "BOOLEAN":
        true = prefix + "true"
        return lambda value: true  # False is left out, as None is
    if kind == "STRING":
        return lambda value: prefix + _quote(value)
    if kind.startswith("MAP<"):  # an empty map is left out
        return lambda value: (
            prefix + json.dumps({str(k): str(v) for k, v in value.items()}, separators=(",", ":")) if value else ""
        )
    raise ValueError(f"no JSON encoding for spool field {name} of type {kind}")


class _Fields:
    """Some spool fields of a record, written as ``,"name":value`` pieces (None and False left out)."""

    def __init__(self, names: Collection[str]) -> None:
        chosen = [(name, kind) for name, kind in SPOOL_FIELDS if name in names]
        self.names = tuple(name for name, _ in chosen)
        self._values = attrgetter(*self.names)
        self._encoders = tuple(_encoder(name, kind) for name, kind in chosen)

    def encode(self, record: UsageRecord) -> str:
        return "".join(
            [
                encode(value)
                for encode, value in zip(self._encoders, self._values(record), strict=True)
                if value is not None and value is not False
            ]
        )


_TYPES = dict(SPOOL_FIELDS)
if not set(_PER_REQUEST) <= SENT_FIELDS <= _TYPES.keys():
    raise RuntimeError("the codec's per-request fields must be sent fields, and the sent fields spool fields")
_CACHED = _Fields(SENT_FIELDS - set(_PER_REQUEST))
"""Sent fields the same for every request of one endpoint in one task: encoded once, then cached."""
_HASHED = attrgetter(*(name for name in _CACHED.names if not _TYPES[name].startswith("MAP<")))
_MAPS = tuple(name for name in _CACHED.names if _TYPES[name].startswith("MAP<"))
"""Cached maps are compared, not hashed: the engine may pass a fresh dict per record."""
_maps_of = attrgetter(*_MAPS)
_HEAD = "{" + ",".join(f'"{name}":' + ("%s" if _TYPES[name] == "STRING" else "%d") for name in _PER_REQUEST) + "%s"
_SUCCESS = ("input_tokens", "output_tokens", "total_tokens", "latency_ms", "time_to_first_byte_ms", "status_code")
"""Outcome fields every answer with usage sets, all integers: formatted in one step when none is None (the
generic path, one encoder call per field, doubled the cost of a line)."""
if not all(_TYPES[name] in ("INT", "BIGINT") and name not in SENT_FIELDS for name in _SUCCESS):
    raise RuntimeError("the codec's one-step outcome fields must be integer fields of the outcome")
_SUCCESS_TAIL = "".join(f',"{name}":%d' for name in _SUCCESS)  # %d truncates a float latency, as int() does
_success_of = attrgetter(*_SUCCESS)
_SUCCESS_FIELDS = _Fields(_SUCCESS)
_OTHER_OUTCOME = _Fields(_TYPES.keys() - SENT_FIELDS - set(_SUCCESS))


def _copy_maps(maps: Any) -> Any:
    """A copy of what :data:`_maps_of` read (one map, or a tuple of them): the caller may change its dict later."""
    return dict(maps) if len(_MAPS) == 1 else tuple(dict(value) for value in maps)


def _micros(moment: dt.datetime) -> int:
    if moment.tzinfo is None:  # the record's convention: naive times are UTC
        moment = moment.replace(tzinfo=_UTC)
    # Exact: a float holds today's epoch seconds to within 0.25 µs, so rounding lands on the microsecond.
    return round(moment.timestamp() * 1_000_000)


class RecordEncoder:
    """Encodes UsageRecords as spool lines. Not thread-safe (one per writer)."""

    def __init__(self) -> None:
        # the cached fields' hashable values -> (their maps, the cached fields encoded)
        self._cached: dict[Any, tuple[list[dict[str, str]], str]] = {}

    def head(self, record: UsageRecord) -> str:
        """The line's opening: what is known when the request is sent. No closing brace."""
        key = _HASHED(record)
        maps = _maps_of(record)
        cached = self._cached.get(key)
        if cached is None or cached[0] != maps:
            if len(self._cached) >= _MAX_CACHED:
                self._cached.clear()
            cached = self._cached[key] = (_copy_maps(maps), _CACHED.encode(record))
        # In _PER_REQUEST's order.
        return _HEAD % (
            _quote(record.request_id),
            _quote(record.call_id),
            record.attempt,
            _micros(record.event_time),
            _quote(record.request_hash),
            cached[1],
        )

    def tail(self, record: UsageRecord) -> str:
        """The line's end: the request's outcome, the closing brace and the newline."""
        try:
            line = _SUCCESS_TAIL % _success_of(record)
        except TypeError:  # one of them is None: an error, or a provider without usage
            line = _SUCCESS_FIELDS.encode(record)
        return line + _OTHER_OUTCOME.encode(record) + "}\n"

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
    micros = data.pop(_EVENT_TIME_US)
    data["event_time"] = dt.datetime(1970, 1, 1, tzinfo=_UTC) + dt.timedelta(microseconds=micros)
    data.setdefault("request_tags", {})
    return UsageRecord(**data)
