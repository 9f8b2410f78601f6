"""A call site made ready to send: the adapter, URL, headers and a JSON body template shared by its rows."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from aiquery.apis import get_adapter
from aiquery.apis.auth import auth_header
from aiquery.apis.base import Adapter, APIRequest, ResponseFormat
from aiquery.apis.images import FilePrompt, ImageError, check_image
from aiquery.config import DEFAULT_MAX_REQUEST_BYTES, Endpoint
from aiquery.errors import CallError
from aiquery.store.base import fingerprint, fingerprint_prefix
from aiquery.version import __version__

__all__ = [
    "DEFAULT_OUTPUT_ESTIMATE",
    "REQUEST_ID_HEADER",
    "TAGS_HEADER",
    "USER_AGENT",
    "CallSite",
    "PreparedSite",
]

USER_AGENT = (
    f"aiquery/{__version__} python/{sys.version_info.major}.{sys.version_info.minor} aiohttp/{aiohttp.__version__}"
)
TAGS_HEADER = "Databricks-Ai-Gateway-Request-Tags"
REQUEST_ID_HEADER = "X-Client-Request-Id"
DEFAULT_OUTPUT_ESTIMATE = 256
"""Output tokens assumed for a token budget when the call sets no max_tokens; corrected after the response."""
_PROMPT_SENTINEL = "\u0000aiquery-prompt\u0000"


@dataclass(frozen=True, kw_only=True)
class CallSite:
    """Everything about one ai_query call site except the prompt: the same for every row."""

    endpoint: Endpoint
    parameters: Mapping[str, Any] = field(default_factory=dict)
    """Model parameters under Databricks' names, already validated."""
    response_format: ResponseFormat | None = None
    request_tags: Mapping[str, str] = field(default_factory=dict)
    """Tags of this call site; they extend (and override) the endpoint's configured tags."""
    budget_share: float = 1.0
    """The fraction of the endpoint's budgets this process uses when it has no coordinator (1/N for N workers)."""
    cache: bool = True
    """Identical requests are sent once, and answered from the answer store when it has them. False sends every
    row, identical ones included (for sampling several answers to one prompt on purpose)."""
    function: str = "ai_query"
    """The SQL function the call site belongs to (the usage table's ``function_name``)."""
    batch_run: str | None = None
    """Planned by a batch-mode run pass (``aiquery.batch.run``): its run id. A stored answer of one of the run's
    batches is a hit already paid for, and a request whose batch line failed fails with the line's error."""


class PreparedSite:
    """A call site made ready to send: adapter, URL, headers, and a body template for its prompts."""

    def __init__(self, site: CallSite, requester: str) -> None:
        endpoint = site.endpoint
        self.site = site
        self.endpoint = endpoint
        self.adapter: Adapter = get_adapter(endpoint.api)
        self.url = self.adapter.url(endpoint.base_url, endpoint.model)
        self.tags = {**endpoint.request_tags, **site.request_tags}
        api_headers = self.adapter.headers(endpoint.anthropic_version)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **api_headers}
        auth = None if endpoint.token is None else auth_header(endpoint.auth, endpoint.token.reveal())
        if auth is not None:
            headers[auth[0]] = auth[1]
        if self.tags:
            headers[TAGS_HEADER] = json.dumps(self.tags, separators=(",", ":"))
        self.headers = headers
        self.requester = requester
        self.fingerprint_prefix = fingerprint_prefix(endpoint.api, self.url, endpoint.model, api_headers)
        max_tokens = site.parameters.get("max_tokens")
        self.output_limit = int(max_tokens) if isinstance(max_tokens, (int, float)) else None
        """The call's ``max_tokens``, or None when it sets none."""
        self.output_estimate = self.output_limit if self.output_limit is not None else DEFAULT_OUTPUT_ESTIMATE
        self._template = self._body_template()

    def fingerprint(self, body: bytes) -> str:
        """The request's fingerprint (see :mod:`aiquery.store.base`)."""
        return fingerprint(self.fingerprint_prefix, body)

    def request(self, prompt: str | FilePrompt) -> APIRequest:
        """The API request for one prompt of this site (with its image, for ``files =>``)."""
        text, images = (prompt.text, (prompt.image,)) if isinstance(prompt, FilePrompt) else (prompt, ())
        return APIRequest(
            prompt=text,
            model=self.endpoint.model,
            parameters=self.site.parameters,
            response_format=self.site.response_format,
            images=images,
        )

    def body(self, request: APIRequest) -> bytes:
        """The request body as UTF-8 bytes.

        Raises:
            CallError: the prompt is not valid Unicode, an image is no image or too large for the API, or the body
                is above the request-size limit.
        """
        for image in request.images:
            try:
                check_image(image, self.adapter)
            except ImageError as error:
                raise CallError(str(error), endpoint=self.endpoint.name, attempts=0) from None
        try:
            encoded = self._encode(request).encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            if "\udc80" <= bad[0] <= "\udcff":
                # A byte that was not UTF-8, kept by the Spark UDF's surrogateescape decoding (see udf._prompts).
                what = f"not valid UTF-8 (byte 0x{ord(bad[0]) - 0xDC00:02X})"
            else:
                what = f"not valid Unicode (unpaired surrogate {bad!r})"
            raise CallError(
                f"the request text is {what}; clean the column before calling ai_query",
                endpoint=self.endpoint.name,
                attempts=0,
            ) from None
        if len(encoded) > DEFAULT_MAX_REQUEST_BYTES:
            raise CallError(
                f"the request body is {len(encoded) / 1e6:.1f} MB, above the {DEFAULT_MAX_REQUEST_BYTES >> 20} MiB "
                f"limit (images count as base64, a third larger than their files); shorten the prompt",
                endpoint=self.endpoint.name,
                attempts=0,
            )
        return encoded

    def _encode(self, request: APIRequest) -> str:
        if self._template is None or request.images:
            return json.dumps(self.adapter.build_body(request), ensure_ascii=False, separators=(",", ":"))
        prefix, suffix = self._template
        return prefix + json.dumps(request.prompt, ensure_ascii=False)[1:-1] + suffix

    def _body_template(self) -> tuple[str, str] | None:
        # Every row of a call site has the same body but for the prompt: build it once around a sentinel and
        # splice each prompt's JSON string in, instead of building and encoding the whole body per row.
        body = self.adapter.build_body(self.request(_PROMPT_SENTINEL))
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        parts = text.split(json.dumps(_PROMPT_SENTINEL, ensure_ascii=False)[1:-1])
        return (parts[0], parts[1]) if len(parts) == 2 else None
