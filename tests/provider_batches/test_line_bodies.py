"""Every batch line is the live call's body in the provider's line format, checked against the provider SDK's own
request types (strictly, as tests/apis checks the live bodies)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from batch_helpers import FAMILIES
from sdk_types import check

from aiquery.apis.base import APIRequest, ResponseFormat
from aiquery.config import load_settings
from aiquery.provider_batches import ProviderHTTP, client_for

anthropic_batches = pytest.importorskip("anthropic.types.messages.batch_create_params")
openai_batches = pytest.importorskip("openai.types.batch_create_params")
openai_chat = pytest.importorskip("openai.types.chat.completion_create_params")
openai_embeddings = pytest.importorskip("openai.types.embedding_create_params")
openai_responses = pytest.importorskip("openai.types.responses.response_create_params")
genai_types = pytest.importorskip("google.genai.types")

SCHEMA = ResponseFormat(
    kind="json_schema",
    name="verdict",
    schema={
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    },
)
OPENAI_BODIES = {
    "chat": openai_chat.CompletionCreateParamsNonStreaming,
    "embeddings": openai_embeddings.EmbeddingCreateParams,
    "responses": openai_responses.ResponseCreateParamsNonStreaming,
}


def client(family: str) -> Any:
    options = FAMILIES[family]
    settings = load_settings({"DATABRICKS_TOKEN": "t"}).with_endpoint(
        family, api=options["api"], model=options["model"], base_url="https://provider.example/v1", batch=True
    )
    return client_for(settings.endpoint(family), ProviderHTTP())


def request(family: str, **options: Any) -> APIRequest:
    model = FAMILIES[family]["model"]
    return APIRequest(prompt="Is the parcel late?", model=model, **options)


VARIANTS = {
    "plain": {},
    "parameters": {"parameters": {"max_tokens": 64, "stop": ["END"]}},
    "schema": {"response_format": SCHEMA},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("family", ["chat", "embeddings", "responses", "anthropic", "gemini"])
def test_a_line_fits_the_sdk_request_types(family: str, variant: str) -> None:
    if family == "embeddings" and variant != "plain":
        pytest.skip("an embeddings request takes no text parameters or response format")
    options = dict(VARIANTS[variant])
    if family == "responses" and variant == "parameters":
        options = {"parameters": {"max_tokens": 64}}  # the Responses API has no stop sequences
    batch = client(family)
    line = json.loads(batch.encode(batch.line("fp-1", request(family, **options))))
    if family in OPENAI_BODIES:
        assert set(line) == {"custom_id", "method", "url", "body"}
        assert line["method"] == "POST" and line["url"] == "/v1" + batch.adapter.path
        check(OPENAI_BODIES[family], line["body"])
    elif family == "anthropic":
        check(anthropic_batches.Request, line)
    else:
        assert set(line) == {"key", "request"}
        genai_types.InlinedRequest.model_validate({"contents": line["request"]["contents"]})
        for content in line["request"]["contents"]:
            genai_types.Content.model_validate(content)
        if "generationConfig" in line["request"]:
            genai_types.GenerationConfig.model_validate(line["request"]["generationConfig"])
    assert (line.get("custom_id") or line.get("key")) == "fp-1"


def test_the_openai_create_body_fits_the_sdk_type() -> None:
    batch = client("chat")
    body = {"input_file_id": "file-1", "endpoint": batch.route, "completion_window": "24h",
            "metadata": {"aiquery_run": "run-1"}}  # fmt: skip
    check(openai_batches.BatchCreateParams, body)
    with pytest.raises(AssertionError):
        check(openai_batches.BatchCreateParams, {**body, "completion_window": "48h"})


def test_a_line_body_is_the_live_body() -> None:
    batch = client("anthropic")
    wanted = request("anthropic", parameters={"max_tokens": 64})
    line = json.loads(batch.encode(batch.line("fp-1", wanted)))
    assert line["params"] == batch.adapter.build_body(wanted)
