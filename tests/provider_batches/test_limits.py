"""Splitting lines into the providers' limits: a pure function."""

from __future__ import annotations

from aiquery.provider_batches import ANTHROPIC_LIMITS, OPENAI_LIMITS, BatchLine, ProviderLimits, split_lines


def lines(count: int, model: str = "m", prefix: str = "l") -> list[BatchLine]:
    return [BatchLine(f"{prefix}{index}", {}, model) for index in range(count)]


def test_openai_files_take_fifty_thousand_lines() -> None:
    groups = list(split_lines(lines(120_001), OPENAI_LIMITS, lambda line: 100))
    assert [len(group) for group in groups] == [50_000, 50_000, 20_001]
    assert [line.custom_id for group in groups for line in group] == [f"l{index}" for index in range(120_001)]


def test_anthropic_batches_take_a_hundred_thousand_lines() -> None:
    groups = list(split_lines(lines(100_001), ANTHROPIC_LIMITS, lambda line: 100))
    assert [len(group) for group in groups] == [100_000, 1]


def test_a_group_stays_within_the_byte_limit() -> None:
    limits = ProviderLimits(max_lines=1_000, max_bytes=1_000, one_model=False)
    groups = list(split_lines(lines(25), limits, lambda line: 100))
    assert [len(group) for group in groups] == [10, 10, 5]


def test_openai_files_hold_one_model_and_anthropic_batches_mix_them() -> None:
    mixed = [line for pair in zip(lines(3, "a", "a"), lines(3, "b", "b"), strict=True) for line in pair]
    by_model = list(split_lines(mixed, OPENAI_LIMITS, lambda line: 10))
    assert [{line.model for line in group} for group in by_model] == [{"a"}, {"b"}]
    assert len(list(split_lines(mixed, ANTHROPIC_LIMITS, lambda line: 10))) == 1


def test_a_line_larger_than_the_limit_is_a_group_of_its_own() -> None:
    limits = ProviderLimits(max_lines=10, max_bytes=100, one_model=False)
    sizes = {"l0": 10, "l1": 500, "l2": 10}
    groups = list(split_lines(lines(3), limits, lambda line: sizes[line.custom_id]))
    assert [[line.custom_id for line in group] for group in groups] == [["l0"], ["l1"], ["l2"]]
