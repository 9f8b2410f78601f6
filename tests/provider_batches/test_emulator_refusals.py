"""What the emulator's batch APIs refuse, in each provider's own error shape."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(gateway: Any, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **{name.replace("_", "-"): value for name, value in headers.items()}}
    request = urllib.request.Request(gateway.url + path, data=data, method=method, headers=sent)
    try:
        with OPENER.open(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def bearer(gateway: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {gateway.token}"}


@pytest.mark.parametrize(
    ("path", "method"), [("/v1/batches", "GET"), ("/v1/messages/batches", "GET"), ("/v1beta/batches", "GET")]
)
def test_a_batch_route_wants_the_token(gateway: Any, path: str, method: str) -> None:
    status, body = call(gateway, method, path, Authorization="Bearer wrong")
    assert status == 401 and body
    assert call(gateway, method, path, **bearer(gateway))[0] == 200


def test_openai_refuses_another_completion_window_and_too_much_metadata(gateway: Any) -> None:
    base = {"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    status, body = call(gateway, "POST", "/v1/batches", {**base, "completion_window": "48h"}, **bearer(gateway))
    assert status == 400 and "completion_window" in body["error"]["message"]
    metadata = {f"k{index}": "v" for index in range(17)}
    status, body = call(gateway, "POST", "/v1/batches", {**base, "metadata": metadata}, **bearer(gateway))
    assert status == 400 and "16" in body["error"]["message"]
    status, body = call(gateway, "POST", "/v1/batches", base, **bearer(gateway))
    assert status == 404 and body["error"]["type"] == "invalid_request_error"


def test_an_unknown_batch_is_not_found_in_each_shape(gateway: Any) -> None:
    assert "error" in call(gateway, "GET", "/v1/batches/batch_nope", **bearer(gateway))[1]
    status, body = call(gateway, "GET", "/v1/messages/batches/msgbatch_nope", **bearer(gateway))
    assert status == 404 and body["type"] == "error"
    status, body = call(gateway, "GET", "/v1beta/batches/nope", **bearer(gateway))
    assert status == 404 and body["error"]["status"] == "NOT_FOUND"


def test_anthropic_wants_its_version_and_gives_results_only_once_ended(gateway: Any) -> None:
    gateway.configure(batch_delay=30.0)
    params = {"model": "claude-sonnet-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    create = {"requests": [{"custom_id": "a", "params": params}]}
    status, body = call(gateway, "POST", "/v1/messages/batches", create, **bearer(gateway))
    assert status == 400 and "anthropic-version" in body["error"]["message"]
    version = {"anthropic_version": "2023-06-01"}
    status, body = call(gateway, "POST", "/v1/messages/batches", create, **bearer(gateway), **version)
    assert status == 200 and body["processing_status"] == "in_progress" and body["results_url"] is None
    status, _ = call(gateway, "GET", f"/v1/messages/batches/{body['id']}/results", **bearer(gateway), **version)
    assert status == 400
    bad = {"requests": [{"custom_id": "no spaces allowed", "params": params}]}
    assert call(gateway, "POST", "/v1/messages/batches", bad, **bearer(gateway), **version)[0] == 400
