"""Configuration's defaults, in one place: every default value and the keys each table of the file may hold."""

from __future__ import annotations

from pathlib import Path

DEFAULT_CONFIG_PATH = Path("conf") / "aiquery.toml"
DEFAULT_TOKEN_ENV = "DATABRICKS_TOKEN"
DEFAULT_AUTH = "bearer"
DEFAULT_MAX_CONCURRENCY = 64
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_DEADLINE_S = 600.0
DEFAULT_MAX_RETRIES = 10
DEFAULT_MAX_RETRY_AFTER_S = 120.0
DEFAULT_USAGE_TABLE = "ai_gateway.usage"
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_RESPONSE_BYTES_LIMIT = 48 * 1024 * 1024
"""The largest ``max_response_bytes``: an answer travels to the coordinator's store and back in one 64 MiB frame,
with room left for its JSON escaping and the frame's own fields."""
DEFAULT_CACHE_TTL_S = 30 * 86_400.0
DEFAULT_CACHE_MAX_BYTES = 1 << 30
DEFAULT_CONTEXT_TOKENS = 32_000
"""A context window every current chat model has (most have 128,000 or more): set ``context_tokens`` for more."""
MIN_CONTEXT_TOKENS = 256
DEFAULT_CHAT_ENDPOINT = "databricks-meta-llama-3-3-70b-instruct"
DEFAULT_EMBEDDING_ENDPOINT = "databricks-gte-large-en"
"""The endpoints the AI Functions use unless ``[functions]`` names others: Databricks' foundation models."""
TEXT_FUNCTIONS = (
    "ai_agg",
    "ai_analyze_sentiment",
    "ai_classify",
    "ai_extract",
    "ai_filter",
    "ai_fix_grammar",
    "ai_gen",
    "ai_mask",
    "ai_summarize",
    "ai_translate",
)
"""The AI Functions a chat endpoint answers (``ai_similarity`` uses the embedding endpoint)."""
DEFAULT_CURRENCY = "USD"
# Databricks-provided embedding endpoints: unconfigured, they default to the embeddings API, not chat.
DATABRICKS_EMBEDDING_ENDPOINTS = frozenset(
    {"databricks-gte-large-en", "databricks-bge-large-en", "databricks-qwen3-embedding-0-6b"}
)

ENDPOINT_KEYS = frozenset(
    {
        "api",
        "model",
        "base_url",
        "token_env",
        "auth",
        "max_concurrency",
        "requests_per_minute",
        "tokens_per_minute",
        "timeout",
        "deadline",
        "max_retries",
        "max_retry_after",
        "verify_tls",
        "request_tags",
        "cache",
        "price",
        "currency",
        "anthropic_version",
        "context_tokens",
        "max_response_bytes",
        "batch",
    }
)
TOP_KEYS = frozenset({"endpoints", "usage", "requester", "coordinator", "cache", "functions"})
FUNCTION_KEYS = frozenset({"chat_endpoint", "embedding_endpoint", *TEXT_FUNCTIONS, "ai_similarity"})
CACHE_KEYS = frozenset({"enabled", "ttl", "url", "max_size", "namespace", "insecure"})
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}
USAGE_KEYS = frozenset({"enabled", "table", "path", "dir", "ingest_interval"})
COORDINATOR_KEYS = frozenset({"port"})
ENDPOINT_ROLES = frozenset({"chat_endpoint", "embedding_endpoint"})
