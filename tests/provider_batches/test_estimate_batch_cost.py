"""The estimate's batch cost: beside the live cost for an endpoint with ``batch = true`` and a price, at the batch
price (half by default), scaled from the sample like the live cost; absent for an endpoint without batch."""

from __future__ import annotations

from typing import Any

from aiquery.config import load_settings
from aiquery.jobs.estimate import EndpointEstimate, JobEstimate, Span, _batch_cost

PRICE = {"input_per_million": 2.0, "output_per_million": 8.0}


def calls(count: int) -> list[dict[str, Any]]:
    return [{"input_tokens": 100 + index, "output_tokens": 50, "cost": None} for index in range(count)]


def test_the_batch_cost_is_the_sample_scaled_at_the_batch_price() -> None:
    settings = load_settings({"DATABRICKS_TOKEN": "t", "DATABRICKS_HOST": "http://127.0.0.1:9"})
    settings = settings.with_endpoint("b", api="chat", model="m", base_url="http://127.0.0.1:9/v1", batch=True,
                                      price=PRICE)  # fmt: skip
    settings = settings.with_endpoint("live", api="chat", model="m", price=PRICE)
    sample = calls(10)
    found = _batch_cost(settings, "b", sample, 1000, 10)
    live = sum((call["input_tokens"] * 2.0 + call["output_tokens"] * 8.0) / 1e6 for call in sample) * 100
    assert found is not None and abs(found.value - live / 2) < 1e-9
    assert _batch_cost(settings, "live", sample, 1000, 10) is None
    assert _batch_cost(settings, "unknown", sample, 1000, 10) is None

    item = EndpointEstimate(
        endpoint="b", rows=1000, sampled=10, requests=Span(1000, 1000, 1000), input_tokens=Span(1, 1, 1),
        output_tokens=Span(1, 1, 1), cost=Span(live, live, live), currency="USD", seconds=None, batch_cost=found,
    )  # fmt: skip
    text = JobEstimate(fraction=0.01, query_tag="t", endpoints=[item]).format()
    assert "    cost           " in text and "    batch cost     " in text and "--batch" in text
