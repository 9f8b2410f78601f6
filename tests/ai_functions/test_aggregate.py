"""ai_agg's reduction: packing a group's texts into requests that fit the context, and combining in layers."""

from __future__ import annotations

import pytest

from aiquery.ai_functions.aggregate import Aggregation, pack, tokens


def test_pack_keeps_order_fills_each_request_and_cuts_a_text_too_long_alone() -> None:
    items = [f"item {i} " + "x" * 40 for i in range(30)]
    groups = pack(items, 100)
    assert [item for group in groups for item in group] == items
    assert all(sum(tokens(item) + 2 for item in group) <= 100 for group in groups)
    assert [len(group) for group in groups] == [7, 7, 7, 7, 2]  # 12 tokens and 2 for the marker each: 7 in 100
    pieces = pack(["y" * 1000], 50)
    assert "".join(piece for group in pieces for piece in group) == "y" * 1000
    assert all(tokens(piece) + 2 <= 50 for group in pieces for piece in group)


def test_a_group_that_fits_is_one_request_and_a_large_one_is_combined_in_layers() -> None:
    sent: list[list[str]] = []

    def ask(prompts: list[str]) -> list[str]:
        sent.append(prompts)
        assert all(tokens(prompt) <= 1_000 for prompt in prompts)  # never past the context
        return [f"answer {len(sent)}.{i}" for i in range(len(prompts))]

    aggregation = Aggregation("Summarize the complaints.", 1_000)
    assert aggregation.run(["late", None, "torn"], ask) == "answer 1.0"
    assert len(sent) == 1 and "2 item(s)" in sent[0][0] and "[2] torn" in sent[0][0]
    sent.clear()
    answer = aggregation.run([f"review {i}: " + "words " * 40 for i in range(400)], ask)
    assert answer == f"answer {len(sent)}.0"
    assert len(sent[0]) > 1 and len(sent[-1]) == 1 and len(sent) >= 2
    assert "one part of" in sent[0][0] and "Combine these" in sent[-1][0]
    assert aggregation.run([None, None], ask) is None


def test_many_groups_go_out_layer_by_layer_together() -> None:
    calls: list[int] = []

    def ask(prompts: list[str]) -> list[str]:
        calls.append(len(prompts))
        return ["short"] * len(prompts)

    aggregation = Aggregation("Name the topic.", 400)
    answers = aggregation.run_many([["a"], [], ["b " * 2_000], ["c", None]], ask)
    assert answers == ["short", None, "short", "short"]
    assert calls[0] > 3 and calls[-1] == 1  # every group's first layer in one call


def test_answers_that_never_shrink_stop_with_a_clear_error() -> None:
    aggregation = Aggregation("Repeat.", 300)
    with pytest.raises(RuntimeError, match="no single answer after"):
        aggregation.run(["x " * 2_000], lambda prompts: ["y" * 2_000 for _ in prompts])
