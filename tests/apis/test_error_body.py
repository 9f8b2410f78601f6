"""Error bodies in forms the golden files do not cover: bytes, odd JSON, very long messages."""

from __future__ import annotations

import json

from aiquery.apis.base import ErrorVerdict
from aiquery.apis.error_body import MAX_MESSAGE_CHARS, parse_error_body


def test_bytes_are_decoded() -> None:
    body = json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "try later"}).encode()
    assert parse_error_body(503, body) == ErrorVerdict(message="try later", code="TEMPORARILY_UNAVAILABLE")


def test_long_messages_are_truncated() -> None:
    verdict = parse_error_body(500, "x" * 10_000)
    assert len(verdict.message) == MAX_MESSAGE_CHARS
    assert verdict.message.endswith("…")


def test_html_without_a_title_is_stripped_of_tags() -> None:
    body = "<html><body><h1>Service Unavailable</h1><p>The server is &amp; was busy.</p></body></html>"
    assert parse_error_body(503, body).message == "Service Unavailable The server is & was busy."


def test_unrecognised_json_is_shown_compactly() -> None:
    verdict = parse_error_body(500, {"status": "down", "retry": True})
    assert verdict == ErrorVerdict(message='{"retry": true, "status": "down"}')


def test_json_that_is_not_an_object() -> None:
    assert parse_error_body(500, [1, 2]).message == "[1, 2]"
    assert parse_error_body(500, None).message == "null"


def test_text_that_looks_like_json_but_is_not() -> None:
    assert parse_error_body(502, "{not json at all").message == "{not json at all"


def test_openai_error_with_integer_code() -> None:
    verdict = parse_error_body(500, {"error": {"message": "The server had an error", "type": None, "code": 500}})
    assert verdict == ErrorVerdict(message="The server had an error", code="500")


def test_gemini_retry_delay_ignores_unparseable_durations() -> None:
    body = {
        "error": {
            "code": 429,
            "message": "slow down",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "soon"}],
        }
    }
    assert parse_error_body(429, body) == ErrorVerdict(message="slow down", code="RESOURCE_EXHAUSTED")


def test_gemini_zero_quota_is_final() -> None:
    # A free tier with no access to a model reports a quota of 0: waiting never helps.
    violation = {"quotaId": "GenerateContentInputTokensPerModelPerMinute-FreeTier", "quotaValue": "0"}
    body = {
        "error": {
            "code": 429,
            "message": "Quota exceeded, limit: 0",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]}],
        }
    }
    assert parse_error_body(429, body).retryable is False
