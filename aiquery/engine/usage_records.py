"""The usage record of a call: opened before its request leaves, filled from the answer, its usage and its price.

Requests sent and calls answered from the answer store fill their token counts and costs here, so that both
kinds of row in the usage table read the same way (a stored answer bills nothing but says what it would have
cost).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from aiquery.apis.base import TokenUsage
from aiquery.engine.governor import CapClaim
from aiquery.engine.prepared import USER_AGENT, PreparedSite
from aiquery.pricing import Price
from aiquery.usage.record import UsageRecord

__all__ = ["TOKEN_COUNTS", "cap_claim", "open_record", "price_record", "record_tokens", "record_usage"]

TOKEN_COUNTS = tuple(field.name for field in dataclasses.fields(TokenUsage) if field.name.endswith("_tokens"))
"""The token counts a record shares with an answer's usage and with a stored answer's (named as in
:class:`~aiquery.apis.base.TokenUsage`, which defines them)."""


def open_record(
    prepared: PreparedSite,
    *,
    request_id: str,
    call_id: str,
    attempt: int,
    request_hash: str,
    event_time: dt.datetime,
    context: Mapping[str, Any],
) -> UsageRecord:
    """A record of a request about to be made; ``context`` adds the fields of what runs now (Spark task, tag)."""
    endpoint = prepared.endpoint
    # The running task's requester (a Spark Connect user) wins over the engine's.
    context = {"requester": prepared.requester, **context}
    return UsageRecord(
        request_id=request_id,
        call_id=call_id,
        attempt=attempt,
        event_time=event_time,
        endpoint_name=endpoint.name,
        destination_model=endpoint.model,
        api_type=prepared.adapter.api_type,
        url=prepared.url,
        user_agent=USER_AGENT,
        request_tags=prepared.tags,
        request_hash=request_hash,
        function_name=prepared.site.function,
        # Known before sending: the spending cap refuses a request without a price in its currency.
        currency=endpoint.price.currency if endpoint.price is not None else None,
        **context,
    )


def record_usage(record: UsageRecord, usage: TokenUsage) -> None:
    """Copy an answer's token counts into its ``record`` (once per request: no intermediate mapping)."""
    for name in TOKEN_COUNTS:
        setattr(record, name, getattr(usage, name))
    record.tokens_estimated = usage.estimated


def record_tokens(record: UsageRecord, counts: Mapping[str, Any]) -> None:
    """Copy a stored answer's token counts (``input_tokens`` ... and ``tokens_estimated``) into ``record``."""
    for name in TOKEN_COUNTS:
        setattr(record, name, counts.get(name))
    record.tokens_estimated = bool(counts.get("tokens_estimated"))


def price_record(record: UsageRecord, price: Price) -> float | None:
    """Set the record's currency and return what its tokens cost at ``price`` (None when they are unknown)."""
    record.currency = price.currency
    return price.cost(
        record.input_tokens, record.output_tokens, record.cache_read_input_tokens, record.cache_creation_input_tokens
    )


def cap_claim(prepared: PreparedSite, body: bytes) -> CapClaim:
    """What the request counts against a spending cap should it end without a usage report."""
    price = prepared.endpoint.price
    return CapClaim(
        endpoint=prepared.endpoint.name,
        input_tokens=(len(body) + 1) // 4,
        output_limit=prepared.output_limit,
        input_per_million=price.input_per_million if price is not None else 0.0,
        output_per_million=price.output_per_million if price is not None else 0.0,
    )
