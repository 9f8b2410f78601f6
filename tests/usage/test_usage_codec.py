"""Spool lines: every UsageRecord field survives encoding, lines stay one JSON object per line."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from usage_helpers import finish, record

from aiquery.usage.codec import RecordEncoder, decode_line
from aiquery.usage.record import UsageRecord
from aiquery.usage.schema import SPOOL_FIELDS


def test_full_record_round_trips() -> None:
    rec = finish(
        record("r1", attempt=3, task_attempt_id=42, spark_app_id="app-1", query_tag="nightly"),
        cache_read_input_tokens=4,
        cache_creation_input_tokens=2,
        output_reasoning_tokens=1,
        tokens_estimated=True,
        error_message='line one\nline "two" \u00e9 \u2603',
    )
    line = RecordEncoder().line(rec)
    assert line.endswith("}\n") and line.count("\n") == 1
    assert decode_line(line) == rec


def test_minimal_record_leaves_missing_fields_out() -> None:
    rec = record("r2", request_tags={})
    line = RecordEncoder().line(rec)
    data = json.loads(line)
    assert "status_code" not in data and "input_tokens" not in data and "request_tags" not in data
    assert decode_line(line) == rec


def test_error_without_usage_uses_the_slow_path() -> None:
    rec = finish(
        record("r3"),
        status_code=None,
        input_tokens=None,
        output_tokens=None,
        total_tokens=None,
        latency_ms=30_001,
        time_to_first_byte_ms=None,
        error_message="timed out",
    )
    data = json.loads(RecordEncoder().line(rec))
    assert data["latency_ms"] == 30001 and "status_code" not in data and data["error_message"] == "timed out"


def test_naive_event_time_is_utc_and_microseconds_are_exact() -> None:
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, 678901)  # noqa: DTZ001 - a naive time is the case under test
    data = json.loads(RecordEncoder().line(record("r4", event_time=moment)))
    expected = moment.replace(tzinfo=dt.timezone.utc) - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    assert data["event_time_us"] == expected // dt.timedelta(microseconds=1)
    other_zone = moment.replace(tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert decode_line(RecordEncoder().line(record("r5", event_time=other_zone))).event_time == other_zone


def test_tags_are_not_confused_by_the_static_cache() -> None:
    encoder = RecordEncoder()
    first = encoder.line(record("a", request_tags={"team": "ml"}))
    second = encoder.line(record("b", request_tags={"team": "web", 'quote"d': "x\\y"}))
    assert json.loads(first)["request_tags"] == {"team": "ml"}
    assert json.loads(second)["request_tags"] == {"team": "web", 'quote"d': "x\\y"}


def test_spool_fields_cover_every_record_field() -> None:
    record_fields = {f.name for f in dataclasses.fields(UsageRecord)} - {"event_time"} | {"event_time_us"}
    assert {name for name, _ in SPOOL_FIELDS} == record_fields


def every_field_set() -> UsageRecord:
    """A record with every field set to a value of its own, none equal to its default."""
    values: dict[str, object] = {}
    for number, spec in enumerate(dataclasses.fields(UsageRecord), start=1):
        kind = str(spec.type)
        if spec.name == "event_time":
            values[spec.name] = dt.datetime(2026, 5, 6, 7, 8, 9, number, tzinfo=dt.timezone.utc)
        elif kind.startswith("Mapping"):
            values[spec.name] = {f"key-{number}": f"value-{number}"}
        elif kind == "bool":
            values[spec.name] = True
        elif kind.startswith("int"):
            values[spec.name] = 1000 + number
        elif kind.startswith("float"):
            values[spec.name] = number + 0.25
        else:
            values[spec.name] = f"{spec.name}-{number} \u00e9"
    rec = UsageRecord(**values)  # type: ignore[arg-type]
    for spec in dataclasses.fields(UsageRecord):
        default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
        assert getattr(rec, spec.name) != default, spec.name
    return rec


def test_every_field_set_survives_a_round_trip() -> None:
    rec = every_field_set()
    line = RecordEncoder().line(rec)
    decoded = decode_line(line)
    for spec in dataclasses.fields(UsageRecord):
        assert getattr(decoded, spec.name) == getattr(rec, spec.name), spec.name
    # Also through the cache of sent fields: a second record of the same endpoint.
    encoder = RecordEncoder()
    encoder.line(rec)
    again = dataclasses.replace(rec, request_id="another", cost=9.5)
    assert decode_line(encoder.line(again)) == again
