"""What the emulator's batch-API handlers take and give: :class:`Request`, :class:`Response`, :class:`APIError`
and :class:`Route` (a method, a path pattern, a handler and the API's error style)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiquery.gateway.error_bodies import ErrorStyle
from aiquery.gateway.provider_jobs import ProviderJobs

__all__ = ["APIError", "Handler", "Request", "Response", "Route"]


@dataclass(frozen=True, slots=True)
class Response:
    """A handler's answer: a JSON-ready value, or bytes sent as they are (a results file)."""

    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


class APIError(Exception):
    """A refusal the API's error style renders: ``kind`` is one of :data:`aiquery.gateway.error_bodies.MESSAGES`."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class Request:
    """What a handler reads: the path's groups, the query, headers and the raw body."""

    groups: tuple[str, ...]
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        """The body as a JSON object."""
        try:
            value = json.loads(self.body)
        except ValueError:
            raise APIError(400, "bad_request", "The request body is not valid JSON.") from None
        if not isinstance(value, dict):
            raise APIError(400, "bad_request", "The request body must be a JSON object.")
        return value

    def number(self, name: str, default: int, maximum: int) -> int:
        """A whole-number query parameter between 1 and ``maximum``."""
        text = self.query.get(name, [str(default)])[0]
        if not text.isdigit() or not 1 <= int(text) <= maximum:
            raise APIError(400, "bad_request", f"{name} must be a whole number from 1 to {maximum}.")
        return int(text)


Handler = Callable[[ProviderJobs, Request], Response]


@dataclass(frozen=True, slots=True)
class Route:
    """One batch-API route: a method, a full-match path pattern, the handler and the API's error style."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    errors: ErrorStyle
