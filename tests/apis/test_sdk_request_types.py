"""The request bodies aiquery sends, checked against each provider's official SDK request types (openai,
anthropic, google-genai: test-only dependencies), strictly: no key the SDK does not know, every value of its type.

The bodies are made the way the engine makes them (a call plan from ai_query's arguments or an AI Function's task,
then the prepared call site's body for a prompt), for plain prompts, model parameters and structured output.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sdk_types import check

from aiquery.ai_functions import definitions as tasks
from aiquery.ai_functions import json_forms
from aiquery.apis.images import FilePrompt
from aiquery.config import load_settings
from aiquery.engine.prepared import PreparedSite
from aiquery.spark.plan import plan_call

anthropic_types = pytest.importorskip("anthropic.types.message_create_params")
openai_chat = pytest.importorskip("openai.types.chat.completion_create_params")
openai_embeddings = pytest.importorskip("openai.types.embedding_create_params")
openai_responses = pytest.importorskip("openai.types.responses.response_create_params")
genai_types = pytest.importorskip("google.genai.types")

ENV = {"DATABRICKS_HOST": "http://127.0.0.1:9", "DATABRICKS_TOKEN": "t"}
ENDPOINTS = {
    "e-chat": {"api": "chat"},
    "e-embed": {"api": "embeddings"},
    "e-responses": {"api": "responses"},
    "e-openai-responses": {"api": "openai-responses"},
    "e-anthropic": {"api": "anthropic"},
    "e-anthropic-2026": {"api": "anthropic", "anthropic_version": "2026-10-21"},
    "e-gemini": {"api": "gemini"},
}
TEXT_ENDPOINTS = [name for name in ENDPOINTS if name != "e-embed"]
ANTHROPIC_SAMPLING = ("temperature", "top_p", "top_k")


def settings() -> Any:
    found = load_settings(ENV)
    for name, options in ENDPOINTS.items():
        found = found.with_endpoint(name, **options)
    return found


def body(
    endpoint: str, prompt: str | FilePrompt = "Summarize: the parcel came late.", **arguments: Any
) -> dict[str, Any]:
    """The body the engine sends for one row of an ai_query call with ``arguments``."""

    def no_ddl(text: str) -> tuple[Any, str]:
        raise AssertionError(f"these tests pass no DDL, got {text!r}")

    plan = plan_call(settings(), endpoint=endpoint, parse_ddl=no_ddl, **arguments)
    site = PreparedSite(plan.site, "someone@example.com")
    decoded: dict[str, Any] = json.loads(site.body(site.request(prompt)))
    return decoded


def check_sdk(endpoint: str, sent: dict[str, Any]) -> None:
    api = ENDPOINTS[endpoint]["api"]
    if api == "chat":
        check(openai_chat.CompletionCreateParamsNonStreaming, sent)
    elif api == "embeddings":
        check(openai_embeddings.EmbeddingCreateParams, sent)
    elif api in ("responses", "openai-responses"):
        check(openai_responses.ResponseCreateParamsNonStreaming, sent)
    elif api == "anthropic":
        if "anthropic_version" not in ENDPOINTS[endpoint]:
            # The current SDK's types describe API version 2026-10-21, which has no sampling parameters; under
            # 2023-06-01 (aiquery's default) they are valid, so they are left out of this check.
            sent = {key: value for key, value in sent.items() if key not in ANTHROPIC_SAMPLING}
        check(anthropic_types.MessageCreateParamsNonStreaming, sent)
    else:
        check_gemini(sent)


def check_gemini(sent: dict[str, Any]) -> None:
    """Gemini's REST body: contents, generationConfig and systemInstruction as google-genai's models (which
    forbid unknown fields and take the REST's camelCase names)."""
    known = {"contents", "generationConfig", "systemInstruction", "safetySettings", "tools", "toolConfig"}
    assert set(sent) <= known, sorted(set(sent) - known)
    assert sent["contents"], "a generateContent request has contents"
    for content in sent["contents"]:
        genai_types.Content.model_validate(content)
    if "generationConfig" in sent:
        genai_types.GenerationConfig.model_validate(sent["generationConfig"])
    if "systemInstruction" in sent:
        genai_types.Content.model_validate(sent["systemInstruction"])


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_a_plain_prompt(endpoint: str) -> None:
    check_sdk(endpoint, body(endpoint))


PARAMETERS = {
    "e-chat": {"max_tokens": 64, "temperature": 0.2, "top_p": 0.9, "stop": ["\n\n"], "n": 1, "seed": 7},
    "e-responses": {"max_tokens": 64, "temperature": 0.2, "top_p": 0.9},
    "e-openai-responses": {"max_tokens": 64, "temperature": 0.2, "reasoning_effort": "low"},
    "e-anthropic": {"max_tokens": 64, "temperature": 0.2, "top_k": 40, "stop": ["END"]},
    "e-anthropic-2026": {"max_tokens": 64, "stop": ["END"]},
    "e-gemini": {"max_tokens": 64, "temperature": 0.2, "top_p": 0.9, "top_k": 40, "stop": ["END"]},
    "e-embed": {"dimensions": 256},
}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_model_parameters(endpoint: str) -> None:
    check_sdk(endpoint, body(endpoint, model_parameters=PARAMETERS[endpoint]))


FORMATS = {
    "json object": '{"type": "json_object"}',
    "ai_classify's enum": tasks.classify(["urgent", "not urgent"]).response_format_json(),
    "ai_extract's fields": tasks.extract(["person", "company"]).response_format_json(),
    "ai_filter's verdict": tasks.filter_rows("mentions a refund").response_format_json(),
    "ai_extract's typed schema": json_forms.extract_json(
        '{"age": "integer", "tags": {"type": "array", "items": "string"}, "city": {"type": "enum", "enum": ["Oslo"]}}'
    ).response_format_json(),
    "multilabel ai_classify": json_forms.classify_json('["a", "b"]', {"multilabel": "true"}).response_format_json(),
}


@pytest.mark.parametrize("form", list(FORMATS))
@pytest.mark.parametrize("endpoint", TEXT_ENDPOINTS)
def test_structured_output(endpoint: str, form: str) -> None:
    sent = body(endpoint, response_format=FORMATS[form])
    check_sdk(endpoint, sent)


def test_the_checks_catch_what_a_provider_would_refuse() -> None:
    sent = body("e-chat", model_parameters={"max_tokens": 8})
    with pytest.raises(AssertionError, match="has no key 'max_tokenz'"):
        check_sdk("e-chat", {**sent, "max_tokenz": 8})
    with pytest.raises(AssertionError, match="role"):
        check_sdk("e-chat", {**sent, "messages": [{"role": "usr", "content": "x"}]})
    anthropic = body("e-anthropic")
    with pytest.raises(AssertionError, match="needs the key 'max_tokens'"):
        check_sdk("e-anthropic", {key: value for key, value in anthropic.items() if key != "max_tokens"})
    gemini = body("e-gemini", model_parameters={"max_tokens": 8})
    with pytest.raises(Exception, match="Extra inputs are not permitted"):
        check_sdk("e-gemini", {**gemini, "generationConfig": {"maxOutputTokenz": 8}})


def test_the_current_anthropic_sdk_has_no_sampling_parameters() -> None:
    """Why the 2023-06-01 endpoint's sampling parameters are left out above: the SDK (API version 2026-10-21)
    dropped them, as aiquery's analysis-time check for that version does."""
    keys = set(anthropic_types.MessageCreateParamsNonStreaming.__annotations__)
    assert "max_tokens" in keys and not keys & set(ANTHROPIC_SAMPLING)
    with pytest.raises(Exception, match="UNSUPPORTED_MODEL_PARAMETER"):
        body("e-anthropic-2026", model_parameters={"temperature": 0.2})


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.mark.parametrize("endpoint", TEXT_ENDPOINTS)
def test_a_prompt_with_an_image(endpoint: str) -> None:
    sent = body(endpoint, FilePrompt("Describe the image.", PNG))
    check_sdk(endpoint, sent)
    assert "iVBORw0KGgo" in json.dumps(sent)  # the PNG's base64, in the body
