"""Deterministic answers: what a request asks (:class:`Ask`), what the emulator answers (:class:`Reply`).

Text answers are a "summary" made of the prompt's first words and a short hash of the whole prompt, so equal
prompts get equal answers and different prompts different ones. Embeddings are unit vectors drawn from a hash
of the input. Token counts are ``(chars + 3) // 4``, close to what real tokenisers give for English.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiquery.gateway.schema_values import value_for_schema
from aiquery.gateway.settings import GatewayConfig

__all__ = [
    "Ask",
    "Reply",
    "answer_text",
    "compose_reply",
    "embedding",
    "encode_embedding",
    "prompt_digest",
    "token_count",
]

SUMMARY_WORDS = 16
_WORDS = re.compile(r"\w+")
_WORD_SCAN_CHARS = 4000  # enough words for any answer; keeps long prompts cheap


@dataclass(slots=True, kw_only=True)
class Ask:
    """What one request asks, independent of its wire format.

    Attributes:
        model: the model named in the body (or the URL, for Gemini).
        prompt: every text of the request (system and messages), joined by newlines.
        max_tokens: the request's output-token cap, if any.
        json_mode: None for text, ``object`` for any JSON object, ``schema`` for JSON valid against
            ``schema``.
        schema: the requested JSON schema when ``json_mode`` is ``schema``.
        inputs: the strings to embed (embeddings requests only).
        dimensions: the requested embedding length, if any.
        encoding_format: ``float`` or ``base64`` (embeddings only).
    """

    model: str
    prompt: str
    max_tokens: int | None = None
    json_mode: str | None = None
    schema: Mapping[str, Any] | None = None
    inputs: list[str] | None = None
    dimensions: int | None = None
    encoding_format: str = "float"
    images: int = 0
    """Images sent with the prompt (checked by the wire format); each counts as a fixed number of input tokens."""
    image_digest: str = ""
    """A hash of the images' bytes: part of the answer, so that one prompt with different images answers
    differently."""


@dataclass(slots=True, kw_only=True)
class Reply:
    """A composed answer and its token counts.

    ``input_tokens`` includes cached tokens and ``output_tokens`` includes reasoning tokens; each wire format
    reports them in its own convention.
    """

    text: str
    stopped_by_max_tokens: bool
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    vectors: list[list[float]] | None = None


def token_count(text: str) -> int:
    """Tokens in ``text`` as the emulator counts them: ``(chars + 3) // 4``."""
    return (len(text) + 3) // 4


IMAGE_TOKENS = 258
"""Input tokens the emulator counts per image (what Gemini counts for a small image)."""


def prompt_tokens(ask: Ask) -> int:
    """The input tokens of a text request: its prompt's, and :data:`IMAGE_TOKENS` per image."""
    return token_count(ask.prompt) + IMAGE_TOKENS * ask.images


def prompt_digest(prompt: str) -> str:
    """A short hash of the prompt, part of every answer so different prompts answer differently."""
    return hashlib.blake2b(prompt.encode(), digest_size=4).hexdigest()


def answer_text(prompt: str, *, target_tokens: int | None, max_tokens: int | None) -> tuple[str, bool]:
    """The text answer to ``prompt`` and whether ``max_tokens`` cut it short.

    Args:
        prompt: the request's text.
        target_tokens: make the answer about this many tokens long (None: a short summary).
        max_tokens: the request's cap on output tokens.
    """
    prefix = f"Summary {prompt_digest(prompt)}:"
    words = _WORDS.findall(prompt[:_WORD_SCAN_CHARS]) or ["empty"]
    if target_tokens is None:
        text = f"{prefix} {' '.join(words[:SUMMARY_WORDS])}."
    else:
        chars = max(target_tokens * 4, len(prefix))
        cycle = " " + " ".join(words)
        text = (prefix + cycle * (chars // len(cycle) + 1))[:chars]
    if max_tokens is not None and token_count(text) > max_tokens:
        return text[: max_tokens * 4].rstrip(), True
    return text, False


def embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit-length vector for ``text``."""
    raw = hashlib.shake_256(text.encode()).digest(2 * dimensions)
    values = struct.unpack(f"<{dimensions}h", raw)
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    return [value / norm for value in values]


def encode_embedding(vector: list[float], encoding_format: str) -> list[float] | str:
    """The vector as the wire carries it: floats, or base64 of little-endian float32 (OpenAI's format)."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def compose_reply(ask: Ask, config: GatewayConfig, forced_tokens: int | None) -> Reply:
    """Answer ``ask`` under ``config``; ``forced_tokens`` (from a prompt directive) overrides the length."""
    if ask.inputs is not None:
        dimensions = ask.dimensions or config.embedding_dim
        input_tokens = sum(token_count(text) for text in ask.inputs)
        vectors = [embedding(text, dimensions) for text in ask.inputs]
        return Reply(text="", stopped_by_max_tokens=False, input_tokens=input_tokens, output_tokens=0, vectors=vectors)
    input_tokens = prompt_tokens(ask)
    if ask.json_mode is None:
        target = forced_tokens if forced_tokens is not None else config.output_tokens
        basis = f"{ask.prompt}\n{ask.image_digest}" if ask.image_digest else ask.prompt
        text, stopped = answer_text(basis, target_tokens=target, max_tokens=ask.max_tokens)
    else:
        # Structured output stays valid JSON whatever the token cap: truncated JSON would test nothing useful.
        answer = _json_answer(ask)
        text = _loose(answer) if config.loose_answers else json.dumps(answer, ensure_ascii=False)
        stopped = False
    return Reply(
        text=text,
        stopped_by_max_tokens=stopped,
        input_tokens=input_tokens,
        output_tokens=token_count(text) + config.reasoning_tokens,
        cached_tokens=int(input_tokens * config.cached_tokens),
        cache_creation_tokens=int(input_tokens * config.cache_creation_tokens),
        reasoning_tokens=config.reasoning_tokens,
    )


def _loose(answer: Any) -> str:
    """``answer`` as a model that ignores structured output writes it: one string field (a label) as words around
    it in upper case; any other object with its keys capitalised, in prose and a code fence."""
    if isinstance(answer, dict) and len(answer) == 1 and isinstance(next(iter(answer.values())), str):
        return f"The answer is: {str(next(iter(answer.values()))).upper()}."
    if isinstance(answer, dict):
        answer = {str(key).title(): value for key, value in answer.items()}
    return f"Here is what I found:\n```json\n{json.dumps(answer, ensure_ascii=False, indent=2)}\n```"


def _json_answer(ask: Ask) -> Any:
    if ask.json_mode == "schema" and ask.schema is not None:
        return value_for_schema(ask.schema, ask.prompt)
    summary, _ = answer_text(ask.prompt, target_tokens=None, max_tokens=None)
    return {"summary": summary, "digest": prompt_digest(ask.prompt)}
