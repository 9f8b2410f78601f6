"""The collect pass's requests as the state keeps them: JSON text in, the same JSON out, whatever its characters,
each fingerprint once (the state writes a delivery as one statement over a JSON array)."""

from __future__ import annotations

import json
from pathlib import Path

from aiquery.apis.base import APIRequest
from aiquery.apis.request_json import request_from_json, request_to_json
from aiquery.provider_batches.collect_sink import CollectSink
from aiquery.provider_batches.run_state import RunState

AWKWARD = ['quote " and backslash \\', "line\nbreak\ttab", "é ü 漢字 🙂", "\u2028\u2029 separators", "\x00 nul"]


def test_request_texts_are_kept_as_the_same_json_and_each_fingerprint_once(tmp_path: Path) -> None:
    requests = {f'fp "{index}" \\': APIRequest(prompt=text, model="m") for index, text in enumerate(AWKWARD)}
    texts = [(key, json.dumps(request_to_json(request), ensure_ascii=False)) for key, request in requests.items()]
    with RunState(tmp_path) as state:
        assert state.add_requests("chat", [*texts, texts[0]], 1) == len(AWKWARD)  # a repeat in one delivery
        assert state.add_requests("chat", texts[1:3], 2) == 0
        kept = dict(state.unsent("chat"))
    assert sorted(kept) == sorted(requests)
    assert {key: request_from_json(json.loads(text)) for key, text in kept.items()} == requests


def test_the_sink_takes_raw_texts_and_dicts_alike(tmp_path: Path) -> None:
    with RunState(tmp_path) as state:
        sink = CollectSink(state, 1)
        sink("chat", [("a", '{"prompt": "raw text", "model": "m"}')])  # a collector set raw=True
        sink("chat", [("b", {"prompt": "a dict", "model": "m"}), ("a", '{"prompt": "raw text", "model": "m"}')])
        assert sink.close() == 2
        kept = {key: json.loads(text) for key, text in state.unsent("chat")}
    assert kept == {"a": {"prompt": "raw text", "model": "m"}, "b": {"prompt": "a dict", "model": "m"}}
