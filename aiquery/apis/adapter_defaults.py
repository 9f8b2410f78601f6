"""What most adapters share, so that an adapter module states only where its API differs.

:class:`AdapterDefaults` gives bearer auth, no extra headers, no image limit below the request-size limit, no
endpoint options of its own, no per-call checks, and the error-body reading every provider's shape shares;
:class:`BodyModelAdapter` adds the URL of the APIs whose model travels in the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from aiquery.apis.base import ErrorVerdict
from aiquery.apis.error_body import parse_error_body
from aiquery.config import Endpoint, EndpointOption

__all__ = ["AdapterDefaults", "BodyModelAdapter"]


class AdapterDefaults:
    """Defaults of the :class:`~aiquery.apis.base.Adapter` protocol; a subclass overrides what its API changes."""

    auth: ClassVar[str] = "bearer"
    max_image_bytes: ClassVar[int | None] = None
    endpoint_options: ClassVar[Mapping[str, EndpointOption]] = {}

    def headers(self, version: str | None = None) -> Mapping[str, str]:
        """No headers beyond auth and content type."""
        return {}

    def check_call(self, endpoint: Endpoint, parameters: Mapping[str, Any]) -> None:
        """Nothing to refuse beyond what the parameter mapping already does."""

    def parse_error(self, status: int, body: Any) -> ErrorVerdict:
        """The provider's message and retry hint (see :func:`~aiquery.apis.error_body.parse_error_body`)."""
        return parse_error_body(status, body)


class BodyModelAdapter(AdapterDefaults):
    """An API whose model travels in the body: the URL is ``{base_url}`` plus a fixed ``path``."""

    path: ClassVar[str]
    """What follows the base URL, e.g. ``/chat/completions``."""

    def url(self, base_url: str, model: str) -> str:
        """``{base_url}{path}``; the model travels in the body."""
        return f"{base_url.rstrip('/')}{self.path}"
