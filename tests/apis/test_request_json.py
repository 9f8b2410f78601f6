"""Requests as JSON (batch mode's form for collected requests): every request the adapters take comes back equal,
and its body, built again from the JSON, is the live body byte for byte (so the fingerprint is the same)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_sdk_request_types import ENDPOINTS, FORMATS, PARAMETERS, PNG, TEXT_ENDPOINTS, settings

from aiquery.apis.base import APIRequest, ResponseFormat
from aiquery.apis.images import FilePrompt
from aiquery.apis.request_json import RequestTexts, request_from_json, request_to_json
from aiquery.engine.prepared import PreparedSite
from aiquery.spark.plan import plan_call


def site(endpoint: str, **arguments: Any) -> PreparedSite:
    def no_ddl(text: str) -> tuple[Any, str]:
        raise AssertionError(f"these tests pass no DDL, got {text!r}")

    return PreparedSite(plan_call(settings(), endpoint=endpoint, parse_ddl=no_ddl, **arguments).site, "someone")


def assert_round_trips(prepared: PreparedSite, prompt: str | FilePrompt) -> None:
    request = prepared.request(prompt)
    # Through text, as the coordinator's protocol and the state folder carry it.
    again = request_from_json(json.loads(json.dumps(request_to_json(request))))
    assert again == request
    assert prepared.body(again) == prepared.body(request)
    # The call site's fast text form (a template around the prompt) is the same JSON.
    text = RequestTexts(prepared.request("another prompt")).text(request)
    assert json.loads(text) == request_to_json(request) and request_from_json(json.loads(text)) == request


CASES = [(endpoint, {}) for endpoint in ENDPOINTS]
CASES += [(endpoint, {"model_parameters": PARAMETERS[endpoint]}) for endpoint in ENDPOINTS]
CASES += [(endpoint, {"response_format": form}) for endpoint in TEXT_ENDPOINTS for form in FORMATS.values()]


@pytest.mark.parametrize(("endpoint", "arguments"), CASES)
def test_every_request_form_round_trips(endpoint: str, arguments: dict[str, Any]) -> None:
    assert_round_trips(site(endpoint, **arguments), 'Résumé "quoted" \\ \n 🙂')


@pytest.mark.parametrize("endpoint", TEXT_ENDPOINTS)
def test_a_request_with_an_image_round_trips(endpoint: str) -> None:
    prepared = site(endpoint)
    assert_round_trips(prepared, FilePrompt("Describe the image.", PNG))
    assert request_to_json(prepared.request(FilePrompt("x", PNG)))["images"][0].startswith("iVBORw0KGgo")


def test_defaults_are_left_out() -> None:
    assert request_to_json(APIRequest(prompt="p", model="m")) == {"prompt": "p", "model": "m"}
    request = APIRequest(prompt="p", model="m", response_format=ResponseFormat(kind="json_object"))
    assert request_from_json(request_to_json(request)) == request


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ([], "must be a JSON object, not list"),
        ({"model": "m"}, "'prompt' must be a string, not NoneType"),
        ({"prompt": "p", "model": 3}, "'model' must be a string, not int"),
        ({"prompt": "p", "model": "m", "extra": 1}, "no field 'extra'"),
        ({"prompt": "p", "model": "m", "parameters": [1]}, "'parameters' must be an object"),
        ({"prompt": "p", "model": "m", "response_format": "json"}, "'response_format' must be an object"),
        ({"prompt": "p", "model": "m", "response_format": {"kind": "xml", "strict": True}}, "'kind' must be one of"),
        ({"prompt": "p", "model": "m", "response_format": {"kind": "text"}}, "'strict' must be true or false"),
        ({"prompt": "p", "model": "m", "response_format": {"kind": "text", "strict": 1}}, "'strict' must be"),
        ({"prompt": "p", "model": "m", "response_format": {"kind": "text", "name": 1, "strict": True}}, "'name'"),
        (
            {"prompt": "p", "model": "m", "response_format": {"kind": "json_schema", "schema": 2, "strict": True}},
            "'schema'",
        ),
        ({"prompt": "p", "model": "m", "images": "aGk="}, "'images' must be a list of base64 strings"),
        ({"prompt": "p", "model": "m", "images": ["not base64!"]}, "image is not base64"),
    ],
)
def test_bad_input_says_what_is_wrong(data: Any, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint.replace("(", r"\(")):
        request_from_json(data)
