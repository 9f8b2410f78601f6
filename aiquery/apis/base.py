"""The adapter protocol: one pure object per wire format, no I/O.

An adapter turns an :class:`APIRequest` (prompt, model, Databricks-named model parameters, response format)
into the URL, headers and JSON body of its API; turns a response body into an :class:`Answer` (text or vector
plus normalised :class:`TokenUsage`); and turns an error body into an :class:`ErrorVerdict`.

Usage conventions (the same for every adapter):

- ``input_tokens`` includes cached tokens (cache reads and cache creation), whatever the provider reports;
- ``total_tokens`` is input plus output (reasoning tokens are part of output);
- when a provider returns no count, it is estimated as ``(chars + 1) // 4`` and ``estimated`` is True.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from aiquery.apis.parameter_mappings import ParameterMapping
from aiquery.config import Endpoint, EndpointOption

__all__ = [
    "APIRequest",
    "Adapter",
    "Answer",
    "ErrorVerdict",
    "MalformedResponse",
    "ResponseFormat",
    "TokenUsage",
    "estimate_tokens",
]


def estimate_tokens(text: str) -> int:
    """Databricks' estimate of a token count from text length: ``(chars + 1) // 4``."""
    return (len(text) + 1) // 4


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenUsage:
    """Token counts of one HTTP request, normalised across providers (see the module docstring)."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    output_reasoning_tokens: int = 0
    estimated: bool = False

    @classmethod
    def estimate(cls, prompt: str, output: str) -> TokenUsage:
        """Estimated counts for a provider that reported none."""
        input_tokens, output_tokens = estimate_tokens(prompt), estimate_tokens(output)
        return cls(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
            estimated=True,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFormat:
    """A structured-output request, independent of any API's spelling.

    ``kind`` is ``text`` (plain text), ``json_object`` (any JSON object) or ``json_schema`` (an object valid
    against ``schema``, a JSON Schema dict, named ``name``).
    """

    kind: Literal["text", "json_object", "json_schema"]
    name: str = "response"
    schema: Mapping[str, Any] | None = None
    strict: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class APIRequest:
    """What one ai_query row asks of an endpoint."""

    prompt: str
    model: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    """Model parameters under Databricks' names (``max_tokens``, ``temperature``, ``stop`` …), validated."""
    response_format: ResponseFormat | None = None
    images: tuple[bytes, ...] = ()
    """Images sent with the prompt (``files =>``), checked with :func:`aiquery.apis.images.check_image`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A usable response: the text (or embedding vector) and what it cost."""

    value: str | list[float]
    usage: TokenUsage
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorVerdict:
    """What an error body says.

    ``retryable`` is False where the body rules a retry out whatever the status (a quota or spend-limit 429),
    True where it asks for one, and None to leave the decision to the status table.
    """

    message: str
    code: str | None = None
    retryable: bool | None = None
    retry_after: float | None = None
    """Seconds the body asks the client to wait before retrying (Gemini's ``RetryInfo.retryDelay``), if any.

    Headers (``Retry-After``, ``retry-after-ms``) are the engine's to read; this only carries a delay that
    exists nowhere but in the body.
    """


class MalformedResponse(ValueError):
    """A 2xx body that does not hold what the API promises (no text, no vector, wrong shape)."""


class Adapter(Protocol):
    """One wire format and everything aiquery knows of it. Implementations are stateless and safe to share between
    threads; :mod:`aiquery.apis.registry` finds them by ``api``."""

    api: ClassVar[str]
    """Configuration name of the wire format, e.g. ``chat``."""
    api_type: ClassVar[str]
    """Route family as the usage table records it, e.g. ``mlflow/v1/chat/completions``."""
    output: ClassVar[Literal["text", "vector"]]
    """Whether answers are text or embedding vectors."""
    gateway_path: ClassVar[str]
    """Where the API lives on the Databricks AI Gateway: an endpoint's default ``base_url`` is the workspace URL
    plus this, e.g. ``/ai-gateway/mlflow/v1``."""
    auth: ClassVar[str]
    """How the provider's own service takes a key (``bearer``, or the name of the header that carries it, like
    ``x-api-key``): one more value an endpoint's ``auth`` may name."""
    parameters: ClassVar[ParameterMapping]
    """Where each Databricks-named model parameter goes in this API's body."""
    max_image_bytes: ClassVar[int | None]
    """The largest image one request may carry, where the API's limit is below the request-size limit."""
    endpoint_options: ClassVar[Mapping[str, EndpointOption]]
    """Endpoint options only this API's endpoints take (``anthropic_version``), each with its check."""

    def url(self, base_url: str, model: str) -> str:
        """The request URL for an SDK-style base URL and a model name."""
        ...

    def headers(self, version: str | None = None) -> Mapping[str, str]:
        """Headers this API requires besides auth and content type (e.g. ``anthropic-version``); ``version``: the
        endpoint's API version, for the APIs that have one (None: the adapter's default)."""
        ...

    def check_call(self, endpoint: Endpoint, parameters: Mapping[str, Any]) -> None:
        """Refuse, at analysis time, validated parameters that this endpoint's API version does not take.

        Raises:
            ArgumentError: a Databricks ``AI_FUNCTION_INVALID_MODEL_PARAMETERS.*`` error.
        """
        ...

    def build_body(self, request: APIRequest) -> dict[str, Any]:
        """The JSON body for one request."""
        ...

    def parse_response(self, body: Any, request: APIRequest) -> Answer:
        """The answer in a decoded 2xx JSON body.

        Raises:
            MalformedResponse: the body lacks the text or vector, or has the wrong shape.
        """
        ...

    def parse_error(self, status: int, body: Any) -> ErrorVerdict:
        """The provider's message and retry hint in an error body (decoded JSON, or the raw text if not JSON).

        Never raises: an unrecognised body still yields a message.
        """
        ...
