"""The three providers' batch APIs on the emulator, at the paths the providers serve them.

OpenAI's under ``/v1`` (``/v1/files``, ``/v1/batches``: a client's ``base_url`` is ``{gateway}/v1``), Anthropic's
``/v1/messages/batches`` and Gemini's ``/v1beta/...:batchGenerateContent``, ``/v1beta/batches``,
``/upload/v1beta/files`` and ``/download/v1beta/files`` (their ``base_url`` is the gateway's URL itself). Each API
module lists its routes (:class:`~aiquery.gateway.provider_batch_http.Route`); a handler answers a ``Response`` or
raises ``APIError``, which the API's own error style renders.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from urllib.parse import parse_qs

from aiquery.gateway.accounting import Accounting
from aiquery.gateway.anthropic_batch_api import ANTHROPIC_ROUTES
from aiquery.gateway.gemini_batch_api import GEMINI_ROUTES
from aiquery.gateway.http_server import Exchange
from aiquery.gateway.openai_batch_api import OPENAI_ROUTES
from aiquery.gateway.provider_batch_http import APIError, Request, Response, Route
from aiquery.gateway.provider_jobs import ProviderJobs
from aiquery.gateway.settings import GatewayConfig

__all__ = ["ProviderBatchAPIs"]

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class ProviderBatchAPIs:
    """Answers every batch-API request of one emulator.

    Args:
        token: the accepted token (as ``Authorization: Bearer``, ``x-api-key``, ``x-goog-api-key`` or ``?key=``),
            or None to accept every request.
        config: returns the emulator's current settings.
        accounting: where answered lines are counted.
    """

    def __init__(self, token: str | None, config: Callable[[], GatewayConfig], accounting: Accounting) -> None:
        self._token = token
        self._routes: list[Route] = [*ANTHROPIC_ROUTES, *OPENAI_ROUTES, *GEMINI_ROUTES]
        self.jobs = ProviderJobs(config, accounting)
        self._config = config

    def handle(self, exchange: Exchange) -> bool:
        """Answer ``exchange`` if it is a batch-API request; False when it is not one."""
        for route in self._routes:
            found = route.pattern.fullmatch(exchange.path)
            if found is None or route.method != exchange.method:
                continue
            request = Request(found.groups(), parse_qs(exchange.query), exchange.headers, exchange.body)
            jobs_before = len(self.jobs.jobs)
            try:
                if not self._authorized(request):
                    raise APIError(401, "unauthenticated", "Invalid or missing credentials.")
                response = route.handler(self.jobs, request)
            except APIError as error:
                body = route.errors.body(error.kind, error.status, error.message)
                exchange.respond(error.status, _encode(body).encode())
                return True
            created = len(self.jobs.jobs) > jobs_before
            exchange.later(self._config().batch_create_hold_s if created else 0.0, _send, exchange, response)
            return True
        return False

    def reset(self) -> None:
        """Forget every job and file."""
        self.jobs.jobs.clear()
        self.jobs.files.clear()
        self.jobs.file_names.clear()

    def _authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        headers = request.headers
        offered = {headers.get("authorization", ""), headers.get("x-api-key"), headers.get("x-goog-api-key")}
        if f"Bearer {self._token}" in offered or self._token in offered:
            return True
        authorization = headers.get("authorization", "")
        if authorization.startswith("Basic "):
            try:
                password = base64.b64decode(authorization[6:]).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                return False
            return password == self._token
        return request.query.get("key") == [self._token]


def _send(exchange: Exchange, response: Response) -> None:
    if isinstance(response.body, bytes):
        exchange.respond(response.status, response.body, response.headers, content_type="application/jsonl")
    else:
        exchange.respond(response.status, _encode(response.body).encode(), response.headers)
