"""``ai_agg``: one answer for any number of rows, within the endpoint's context window.

A group's texts are packed into as few requests as fit the context (:data:`INPUT_SHARE` of ``context_tokens``,
counted as ``(chars + 3) // 4`` tokens, the length most English text has); when they fit one request its answer is
the group's. Otherwise each request answers for its part and the parts' answers are combined the same way, layer
by layer, until one answer is left (Snowflake's AI_AGG and BigQuery's AI.AGG reduce the same way). A text longer
than a request holds alone is cut into pieces. Every layer's requests go out together, through the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Aggregation", "pack", "tokens"]

INPUT_SHARE = 0.75
"""The share of the context the prompt may take; the rest is left for the answer and for tokenisers that count
more tokens than four characters each."""
MAX_LAYERS = 12
_FRAME_TOKENS = 80
"""Tokens of a prompt's own words around the instruction and the items."""


def tokens(text: str) -> int:
    """A text's length in tokens, estimated as ``(chars + 3) // 4``."""
    return (len(text) + 3) // 4


def pack(items: Sequence[str], budget: int) -> list[list[str]]:
    """``items`` in order, in as few consecutive groups as keep each group within ``budget`` tokens; an item over
    the budget alone is cut into pieces that fit."""
    groups: list[list[str]] = []
    current: list[str] = []
    used = 0
    for item in items:
        for piece in _pieces(item, budget):
            size = tokens(piece) + 2  # its marker and the blank line before it
            if current and used + size > budget:
                groups.append(current)
                current, used = [], 0
            current.append(piece)
            used += size
    if current:
        groups.append(current)
    return groups


def _pieces(item: str, budget: int) -> list[str]:
    room = max(1, (budget - 2) * 4)
    return [item[start : start + room] for start in range(0, len(item), room)] or [item]


@dataclass(frozen=True)
class Aggregation:
    """How one ``ai_agg`` call reduces a group: its instruction and the endpoint's context."""

    instruction: str
    context_tokens: int

    @property
    def budget(self) -> int:
        """Tokens of items one request may carry."""
        return max(16, int(self.context_tokens * INPUT_SHARE) - tokens(self.instruction) - _FRAME_TOKENS)

    def run(self, texts: Sequence[str | None], ask: Callable[[list[str]], list[str]]) -> str | None:
        """The group's answer (None for a group without a non-NULL text). ``ask`` sends prompts and returns their
        answers in order (raising on a failed request).

        Raises:
            RuntimeError: the answers do not get shorter layer after layer (a model that repeats its input).
        """
        return self.run_many([texts], ask)[0]

    def run_many(
        self, groups: Sequence[Sequence[str | None]], ask: Callable[[list[str]], list[str]]
    ) -> list[str | None]:
        """Each group's answer, the groups reduced side by side: each layer's requests of every group go to ``ask``
        together, so that many small groups do not wait for each other one by one."""
        results: list[str | None] = [None] * len(groups)
        pending = {index: [t for t in texts if t is not None] for index, texts in enumerate(groups)}
        pending = {index: items for index, items in pending.items() if items}
        for layer in range(1, MAX_LAYERS + 1):
            if not pending:
                return results
            prompts: list[str] = []
            owners: list[int] = []
            for index, items in pending.items():
                packed = self._packed(items, layer)
                prompts.extend(self.prompt(part, layer, len(packed)) for part in packed)
                owners.extend([index] * len(packed))
            answers = ask(prompts)
            gathered: dict[int, list[str]] = {}
            for index, answer in zip(owners, answers, strict=True):
                gathered.setdefault(index, []).append(answer)
            for index, parts in gathered.items():
                if len(parts) == 1:
                    results[index] = parts[0]
                    del pending[index]
                else:
                    pending[index] = parts
        if pending:
            raise RuntimeError(
                f"ai_agg: no single answer after {MAX_LAYERS} layers of combining partial answers; the endpoint's "
                "answers do not get shorter (set a smaller max_tokens, or a larger context_tokens)"
            )
        return results

    def _packed(self, items: list[str], layer: int) -> list[list[str]]:
        packed = pack(items, self.budget)
        if layer > 1 and len(packed) >= len(items):
            # Each partial answer fills a request alone: keep the first half of each so that two fit in one.
            packed = pack([item[: max(1, self.budget * 2 - 8)] for item in items], self.budget)
        return packed

    def prompt(self, items: Sequence[str], layer: int, parts: int) -> str:
        """One request's prompt: the instruction, what the items are, and the items."""
        listed = "\n\n".join(f"[{number}] {item}" for number, item in enumerate(items, 1))
        if layer == 1 and parts == 1:
            what = f"Apply it to all of the following {len(items)} item(s) together and give one answer."
        elif layer == 1:
            what = (
                f"The items are too many for one request: here are {len(items)} of them, one part of {parts}. "
                "Answer for this part; the parts' answers will be combined."
            )
        else:
            again = "answer to the instruction."
            if parts > 1:
                again = f"answer (one part of {parts}; it will be combined again)."
            what = f"The items were answered in parts. Combine these {len(items)} partial answers into one {again}"
        return f"{self.instruction}\n\n{what}\n\n{listed}"
