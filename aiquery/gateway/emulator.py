"""The emulator application: checks, decides and answers each request, and serves the admin routes.

For a gateway route the steps are: authenticate, decode the body, let the wire format validate it, take a
rate-limit token, pick the outcome (directive, script, the hostile share, random fault or ``ok``), count it,
then answer after the latency. Refusals by the gateway itself (401, 400, rate-limit and quota 429s, injected or
from the token bucket) are answered at once, as real gateways do.

The providers' batch APIs (:class:`~aiquery.gateway.provider_batch_apis.ProviderBatchAPIs`) answer their own
paths before the gateway routes are looked up.

Admin routes (not counted): ``GET /_emulator/stats``, ``GET /_emulator/requests?offset=&limit=``,
``GET|POST /_emulator/config`` (a POST is a partial update) and ``POST /_emulator/reset``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from aiquery.gateway.accounting import DEFAULT_LOG_LIMIT, Accounting
from aiquery.gateway.canned_answers import Ask, compose_reply, prompt_tokens
from aiquery.gateway.error_bodies import DATABRICKS, MESSAGES, kind_of_status
from aiquery.gateway.faults import FaultPicker, TokenBucket, read_directives, retry_after_headers
from aiquery.gateway.hostile import hostile_kind_for, send_hostile
from aiquery.gateway.http_server import Exchange
from aiquery.gateway.provider_batch_apis import ProviderBatchAPIs
from aiquery.gateway.routes import UNKNOWN_ROUTE, Route, match_route
from aiquery.gateway.settings import HOSTILE_KINDS, GatewayConfig
from aiquery.gateway.wire import BadRequest, images_in
from aiquery.gateway.wire_native import AnthropicFormat

__all__ = ["Emulator"]

ADMIN_PREFIX = "/_emulator/"
MALFORMED_BODY = b'{"id": "broken", "choices": [{"message": {"content": "unterminated'
_UNPARSED = object()
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json(value: Any) -> bytes:
    return _encode(value).encode()


class Emulator:
    """The gateway emulator's request handler; pass it to :func:`aiquery.gateway.http_server.serve`.

    Args:
        token: the accepted token; None accepts every request.
        config: the starting settings, restored by :meth:`reset`.
        log_limit: how many requests the log keeps (the oldest are forgotten first).
    """

    def __init__(self, *, token: str | None, config: GatewayConfig, log_limit: int = DEFAULT_LOG_LIMIT) -> None:
        self._token = token
        self._bearer = None if token is None else f"Bearer {token}"
        self._initial = config
        self._id_prefix = uuid.uuid4().hex[:8]
        self._sequence = 0
        self.accounting = Accounting(log_limit)
        self.config = config
        self._picker = FaultPicker(config)
        self._bucket = self._new_bucket(config)
        self.batch_apis = ProviderBatchAPIs(token, lambda: self.config, self.accounting)

    # -- settings ------------------------------------------------------------------------------------------

    def configure(self, changes: Mapping[str, Any]) -> GatewayConfig:
        """Apply a partial settings update and return the full settings.

        Raises:
            ValueError: an unknown setting or an invalid value (nothing is changed then).
        """
        config = self.config.updated(changes)
        if "seed" in changes:
            script = config.script if "script" in changes else tuple(self._picker.script_remaining)
            self._picker = FaultPicker(dataclasses.replace(config, script=script))
        elif "script" in changes:
            self._picker.set_script(config.script)
        self._picker.set_rates(config)
        if "rate_limit_rps" in changes or "rate_limit_burst" in changes:
            self._bucket = self._new_bucket(config)
        self.config = config
        return config

    def reset(self) -> None:
        """Counters, log, script, limiter and settings back to how the emulator started."""
        self.accounting.reset()
        self.config = self._initial
        self._picker = FaultPicker(self._initial)
        self._bucket = self._new_bucket(self._initial)
        self.batch_apis.reset()

    @staticmethod
    def _new_bucket(config: GatewayConfig) -> TokenBucket | None:
        return None if config.rate_limit_rps is None else TokenBucket(config.rate_limit_rps, config.burst)

    # -- gateway routes ------------------------------------------------------------------------------------

    def __call__(self, exchange: Exchange) -> None:
        if exchange.path.startswith(ADMIN_PREFIX):
            self._admin(exchange)
            return
        if self.batch_apis.handle(exchange):
            return
        match = match_route(exchange.path)
        if match is None:
            self.accounting.record(
                route=UNKNOWN_ROUTE, status=404, outcome="not_found", model="", headers=exchange.headers
            )
            message = f"No gateway route {exchange.method} {exchange.path}."
            exchange.respond(404, _json(DATABRICKS.body("not_found", 404, message)))
            return
        route, path_model = match
        self.accounting.started()
        exchange.on_finish = self._finished
        try:
            body: Any = json.loads(exchange.body)
        except ValueError:
            body = _UNPARSED
        model = path_model or (body.get("model") if isinstance(body, dict) else None)
        model = model if isinstance(model, str) else ""
        if exchange.method != "POST":
            self._refuse(exchange, route, model, 405, "method_not_allowed", MESSAGES["method_not_allowed"])
        elif not self._authorized(route, exchange):
            self._refuse(exchange, route, model, 401, "unauthenticated", MESSAGES["unauthenticated"])
        elif body is _UNPARSED:
            self._refuse(exchange, route, model, 400, "bad_request", "The request body is not valid JSON.")
        else:
            self._accept(exchange, route, model, body, path_model)

    def _finished(self, exchange: Exchange) -> None:
        self.accounting.finished()

    def _authorized(self, route: Route, exchange: Exchange) -> bool:
        if self._token is None:
            return True
        headers = exchange.headers
        authorization = headers.get("authorization", "")
        if authorization == self._bearer:
            return True
        if route.key_header is not None and headers.get(route.key_header) == self._token:
            return True
        if authorization.startswith("Basic "):
            # The documented curl examples authenticate as `-u token:$DATABRICKS_TOKEN`.
            try:
                _, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return password == self._token
        if route.accepts_query_key and exchange.query:
            return parse_qs(exchange.query).get("key") == [self._token]
        return False

    def _refuse(
        self,
        exchange: Exchange,
        route: Route,
        model: str,
        status: int,
        kind: str,
        message: str,
        headers: list[tuple[str, str]] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        outcome = "rate_limited" if kind == "rate_limit" else kind
        self.accounting.record(route=route.key, status=status, outcome=outcome, model=model, headers=exchange.headers)
        exchange.respond(status, _json(route.errors.body(kind, status, message, retry_after_s)), headers or ())

    def _accept(self, exchange: Exchange, route: Route, model: str, body: Any, path_model: str | None) -> None:
        try:
            ask = route.wire.parse(body, exchange.headers, path_model)
            images = images_in(body, route.wire.image_form)
            ask.images = len(images)
            ask.image_digest = hashlib.blake2b(b"".join(images), digest_size=4).hexdigest() if images else ""
            directives = read_directives(ask.prompt)
        except (BadRequest, ValueError) as error:
            self._refuse(exchange, route, model, 400, "bad_request", str(error))
            return
        limit = self.config.context_tokens
        if limit is not None and ask.inputs is None and prompt_tokens(ask) > limit:
            message = (
                f"This model's maximum context length is {limit} tokens; the request has "
                f"{prompt_tokens(ask)} input tokens. Shorten the prompt."
            )
            self._refuse(exchange, route, model, 400, "bad_request", message)
            return
        if self._bucket is not None:
            wait_s = self._bucket.take()
            if wait_s > 0:
                headers = retry_after_headers(self.config.retry_after, wait_s)
                self._refuse(exchange, route, model, 429, "rate_limit", MESSAGES["rate_limit"], headers, wait_s)
                return
        fault, delay_s, forced_tokens = None, None, None
        if directives is not None:
            fault, forced_tokens = directives.fault, directives.tokens
            delay_s = None if directives.latency_ms is None else directives.latency_ms / 1000.0
        if fault is None and not self._picker.scripted:
            fault = hostile_kind_for(exchange.body, self.config.hostile_share, self.config.hostile_kinds)
        if fault is None:
            fault = self._picker.next_fault()
        if delay_s is None:
            delay_s = self._picker.latency_s(self.config)
        handler = _OUTCOMES.get(fault, Emulator._error_status)
        handler(self, exchange, route, ask, fault, delay_s, forced_tokens)

    # -- outcomes: each counts the request, then answers after the delay ------------------------------------

    def _record(
        self,
        exchange: Exchange,
        route: Route,
        ask: Ask,
        status: int | str,
        outcome: str,
        tokens: tuple[int, int, int, int] = (0, 0, 0, 0),
        billed: tuple[int, int] | None = None,
    ) -> None:
        self.accounting.record(
            route=route.key,
            status=status,
            outcome=outcome,
            model=ask.model,
            headers=exchange.headers,
            tokens=tokens,
            billed=billed,
        )

    def _next_id(self) -> str:
        self._sequence += 1
        return f"{self._id_prefix}{self._sequence:012x}"

    def _answer(
        self, exchange: Exchange, route: Route, ask: Ask, fault: str, delay_s: float, forced: int | None
    ) -> None:
        reply = compose_reply(ask, self.config, forced)
        render = route.wire.render if fault == "ok" else route.wire.render_without_answer
        body = _json(render(ask, reply, self._next_id()))
        # Only Anthropic's body reports cache writes; elsewhere they are ordinary input to the client.
        written = reply.cache_creation_tokens if isinstance(route.wire, AnthropicFormat) else 0
        tokens = (reply.input_tokens, reply.output_tokens, reply.cached_tokens, written)
        self._record(exchange, route, ask, 200, fault, tokens)
        exchange.later(delay_s, exchange.respond, 200, body)

    def _truncated(
        self, exchange: Exchange, route: Route, ask: Ask, fault: str, delay_s: float, forced: int | None
    ) -> None:
        reply = compose_reply(ask, self.config, forced)
        body = _json(route.wire.render(ask, reply, self._next_id()))
        # The answer was generated, so it is billed, though the client can read no token count.
        self._record(exchange, route, ask, 200, fault, billed=(reply.input_tokens, reply.output_tokens))
        exchange.later(delay_s, exchange.respond_truncated, 200, body, len(body) // 2)

    def _hostile(
        self, exchange: Exchange, route: Route, ask: Ask, fault: str, delay_s: float, forced: int | None
    ) -> None:
        reply = compose_reply(ask, self.config, forced)
        answer = route.wire.render(ask, reply, self._next_id())
        self._record(exchange, route, ask, 200, fault, billed=(reply.input_tokens, reply.output_tokens))
        exchange.later(delay_s, send_hostile, exchange, fault, answer, self.config.trickle_ms / 1000.0)

    def _malformed(
        self, exchange: Exchange, route: Route, ask: Ask, fault: str, delay_s: float, forced: int | None
    ) -> None:
        self._record(exchange, route, ask, 200, fault)
        exchange.later(delay_s, exchange.respond, 200, MALFORMED_BODY)

    def _drop(self, exchange: Exchange, route: Route, ask: Ask, fault: str, delay_s: float, forced: int | None) -> None:
        self._record(exchange, route, ask, "drop", fault)
        exchange.later(delay_s, exchange.drop)

    def _hang(self, exchange: Exchange, route: Route, ask: Ask, fault: str, delay_s: float, forced: int | None) -> None:
        self._record(exchange, route, ask, "hang", fault)
        exchange.later(self.config.hang_seconds, exchange.drop)

    def _rate_limited(
        self, exchange: Exchange, route: Route, ask: Ask, fault: str, delay_s: float, forced: int | None
    ) -> None:
        wait_s = self.config.fault_retry_after_s
        headers = retry_after_headers(self.config.retry_after, wait_s)
        body = _json(route.errors.body("rate_limit", 429, MESSAGES["rate_limit"], wait_s))
        self._record(exchange, route, ask, 429, fault)
        # A rate-limit refusal comes from the gateway, not the model: at once, like the token bucket's.
        exchange.respond(429, body, headers)

    def _quota(
        self, exchange: Exchange, route: Route, ask: Ask, fault: str, delay_s: float, forced: int | None
    ) -> None:
        body = _json(route.errors.body("quota", 429, MESSAGES["quota"]))
        self._record(exchange, route, ask, 429, fault)
        exchange.respond(429, body)

    def _error_status(
        self, exchange: Exchange, route: Route, ask: Ask, fault: str, delay_s: float, forced: int | None
    ) -> None:
        status = int(fault)
        kind = kind_of_status(status)
        body = _json(route.errors.body(kind, status, MESSAGES[kind]))
        self._record(exchange, route, ask, status, fault)
        exchange.later(delay_s, exchange.respond, status, body)

    # -- admin routes --------------------------------------------------------------------------------------

    def _admin(self, exchange: Exchange) -> None:
        action = exchange.path[len(ADMIN_PREFIX) :]
        handler = _ADMIN.get((exchange.method, action))
        if handler is None:
            exchange.respond(404, _json({"error": f"no admin route {exchange.method} {exchange.path}"}))
            return
        try:
            result = handler(self, exchange)
        except ValueError as error:
            exchange.respond(400, _json({"error": str(error)}))
            return
        exchange.respond(200, _json(result))

    def _admin_stats(self, exchange: Exchange) -> dict[str, Any]:
        stats = self.accounting.stats()
        stats["script_remaining"] = self._picker.script_remaining
        stats["config"] = self.config.to_json()
        return stats

    def _admin_requests(self, exchange: Exchange) -> dict[str, Any]:
        query = parse_qs(exchange.query)
        offset = int(query.get("offset", ["0"])[0])
        limit = int(query["limit"][0]) if "limit" in query else None
        return {"requests": self.accounting.entries(offset, limit)}

    def _admin_get_config(self, exchange: Exchange) -> dict[str, Any]:
        return self.config.to_json()

    def _admin_set_config(self, exchange: Exchange) -> dict[str, Any]:
        changes = json.loads(exchange.body or b"{}")
        if not isinstance(changes, dict):
            raise ValueError("the config update must be a JSON object")
        return self.configure(changes).to_json()

    def _admin_reset(self, exchange: Exchange) -> dict[str, Any]:
        self.reset()
        return self.config.to_json()


_Outcome = Callable[[Emulator, Exchange, Route, Ask, str, float, int | None], None]

_OUTCOMES: dict[str, _Outcome] = {
    "ok": Emulator._answer,
    "no_text": Emulator._answer,
    "truncated": Emulator._truncated,
    "malformed": Emulator._malformed,
    "drop": Emulator._drop,
    "hang": Emulator._hang,
    "429": Emulator._rate_limited,
    "quota": Emulator._quota,
    **dict.fromkeys(HOSTILE_KINDS, Emulator._hostile),
}
"""Outcome handlers by fault kind; every other kind is an HTTP status answered with a plain error body."""

_ADMIN: dict[tuple[str, str], Callable[[Emulator, Exchange], dict[str, Any]]] = {
    ("GET", "stats"): Emulator._admin_stats,
    ("GET", "requests"): Emulator._admin_requests,
    ("GET", "config"): Emulator._admin_get_config,
    ("POST", "config"): Emulator._admin_set_config,
    ("POST", "reset"): Emulator._admin_reset,
}
