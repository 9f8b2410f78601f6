"""Splitting a batch's lines into the provider's limits: a pure function, no I/O.

OpenAI takes 50,000 lines and 200 MB per input file and one model per file; Anthropic 100,000 requests or
256 MB per batch; Gemini a 2 GB input file. A line's size is its JSONL line as the client writes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from aiquery.provider_batches.records import BatchLine

__all__ = ["ANTHROPIC_LIMITS", "GEMINI_LIMITS", "OPENAI_LIMITS", "ProviderLimits", "split_lines"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderLimits:
    """One batch's limits: lines, bytes, and whether all its lines must name one model."""

    max_lines: int
    max_bytes: int
    one_model: bool


OPENAI_LIMITS = ProviderLimits(max_lines=50_000, max_bytes=200 * 1000 * 1000, one_model=True)
ANTHROPIC_LIMITS = ProviderLimits(max_lines=100_000, max_bytes=256 * 1000 * 1000, one_model=False)
GEMINI_LIMITS = ProviderLimits(max_lines=1_000_000, max_bytes=2 * 1000 * 1000 * 1000, one_model=True)
"""Gemini names the model in the URL, so a batch holds one model; its file takes up to 2 GB."""


def split_lines(
    lines: Iterable[BatchLine], limits: ProviderLimits, measure: Callable[[BatchLine], int]
) -> Iterator[list[BatchLine]]:
    """The lines in groups that each fit one batch, in the order given (per model when ``one_model``).

    Args:
        lines: the lines to send.
        limits: the provider's limits.
        measure: a line's size in bytes as the provider receives it (its JSONL line with the newline).

    A single line larger than ``max_bytes`` is a group of its own (the provider refuses that batch alone).
    """
    open_groups: dict[str, tuple[list[BatchLine], int]] = {}
    for line in lines:
        key = line.model if limits.one_model else ""
        group, size = open_groups.get(key, ([], 0))
        line_size = measure(line)
        if group and (len(group) >= limits.max_lines or size + line_size > limits.max_bytes):
            yield group
            group, size = [], 0
        group.append(line)
        open_groups[key] = (group, size + line_size)
    for group, _ in open_groups.values():
        if group:
            yield group
