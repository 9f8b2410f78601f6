"""An :class:`~aiquery.apis.base.APIRequest` as plain JSON data, and back.

Batch mode collects requests on the workers and builds their batch lines on the driver, later, maybe in another
process after a crash: the request travels through the coordinator's protocol and rests in the run's state
folder as JSON. The form is a dict of JSON types only (images as base64 text), and
``request_from_json(request_to_json(r)) == r`` for every request the adapters take, so a line built from the
round-tripped request is the body the live call would send, byte for byte, and has the same fingerprint.

The state folder is read back after the process that wrote it is gone, so :func:`request_from_json` trusts
nothing: what is missing or of the wrong type is a ``ValueError`` that says which field.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from aiquery.apis.base import APIRequest, ResponseFormat

__all__ = ["RequestTexts", "request_from_json", "request_to_json"]

_KINDS = ("text", "json_object", "json_schema")
"""``ResponseFormat.kind``'s values."""


def request_to_json(request: APIRequest) -> dict[str, Any]:
    """``request`` as a dict of JSON types (keys left out where the request has the default)."""
    data: dict[str, Any] = {"prompt": request.prompt, "model": request.model}
    if request.parameters:
        data["parameters"] = dict(request.parameters)
    if request.response_format is not None:
        form = request.response_format
        data["response_format"] = {
            "kind": form.kind,
            "name": form.name,
            "schema": None if form.schema is None else dict(form.schema),
            "strict": form.strict,
        }
    if request.images:
        data["images"] = [base64.b64encode(image).decode("ascii") for image in request.images]
    return data


class RequestTexts:
    """:func:`request_to_json` as compact JSON text for the requests of one call site, which differ only in their
    prompt and images: the text around the prompt is made once and each prompt's JSON string spliced in (a collect
    pass encodes every row's request; encoding each whole dict took most of its time).

    Args:
        request: any request of the call site (its prompt and images are not used).
    """

    _SENTINEL = "\x00aiquery-prompt\x00"

    def __init__(self, request: APIRequest) -> None:
        text = _dumps(dataclasses.replace(request, prompt=self._SENTINEL, images=()))
        parts = text.split(json.dumps(self._SENTINEL)[1:-1])
        self._parts = (parts[0], parts[1]) if len(parts) == 2 else None

    def text(self, request: APIRequest) -> str:
        """``request`` (of the call site) as JSON text."""
        if self._parts is None or request.images:
            return _dumps(request)
        return self._parts[0] + json.dumps(request.prompt)[1:-1] + self._parts[1]


def _dumps(request: APIRequest) -> str:
    return json.dumps(request_to_json(request), separators=(",", ":"))


def request_from_json(data: Any) -> APIRequest:
    """The request :func:`request_to_json` made ``data`` from.

    Raises:
        ValueError: ``data`` is not such a dict; the message names the field that is wrong.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"a request must be a JSON object, not {type(data).__name__}")
    unknown = set(data) - {"prompt", "model", "parameters", "response_format", "images"}
    if unknown:
        raise ValueError(f"a request has no field {sorted(unknown)[0]!r}")
    parameters = data.get("parameters", {})
    if not isinstance(parameters, Mapping) or not all(isinstance(name, str) for name in parameters):
        raise ValueError("a request's 'parameters' must be an object")
    return APIRequest(
        prompt=_text(data, "prompt"),
        model=_text(data, "model"),
        parameters=dict(parameters),
        response_format=_response_format(data.get("response_format")),
        images=_images(data.get("images", [])),
    )


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise ValueError(f"a request's {name!r} must be a string, not {type(value).__name__}")
    return value


def _response_format(data: Any) -> ResponseFormat | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ValueError("a request's 'response_format' must be an object or null")
    kind, name, schema, strict = data.get("kind"), data.get("name", "response"), data.get("schema"), data.get("strict")
    if kind not in _KINDS:
        raise ValueError(f"a request's response_format 'kind' must be one of {', '.join(_KINDS)}, not {kind!r}")
    if not isinstance(name, str):
        raise ValueError("a request's response_format 'name' must be a string")
    if schema is not None and not isinstance(schema, Mapping):
        raise ValueError("a request's response_format 'schema' must be an object or null")
    if not isinstance(strict, bool):
        raise ValueError("a request's response_format 'strict' must be true or false")
    return ResponseFormat(kind=kind, name=name, schema=None if schema is None else dict(schema), strict=strict)


def _images(data: Any) -> tuple[bytes, ...]:
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise ValueError("a request's 'images' must be a list of base64 strings")
    try:
        return tuple(base64.b64decode(item, validate=True) for item in data)
    except binascii.Error as error:
        raise ValueError(f"a request's image is not base64: {error}") from None
