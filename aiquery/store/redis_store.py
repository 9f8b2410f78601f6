"""An answer store on a Redis server, for answers shared by several applications or drivers.

Each answer is one string key, ``aiquery:answer:<fingerprint>``, set with the store's time-to-live, so Redis
expires it. The size bound is the server's: give it a ``maxmemory`` and an eviction policy such as
``allkeys-lru`` (aiquery does not scan a shared server to count bytes). Needs the ``redis`` package
(``pip install "aiquery[redis]"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["KEY_PREFIX", "RedisStore", "without_credentials"]

KEY_PREFIX = "aiquery:answer:"
TIMEOUT_S = 2.0


class RedisStore:
    """Answers on a Redis server named by URL (``redis://host:port/db``, ``rediss://`` for TLS).

    Args:
        url: the server.
        ttl: seconds an answer stays fresh (Redis expires it then).
    """

    def __init__(self, url: str, *, ttl: float) -> None:
        import redis

        self.ttl = max(1, int(ttl))
        self._redis: Any = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)

    def get_many(self, fingerprints: Sequence[str]) -> dict[str, str]:
        values = self._redis.mget([KEY_PREFIX + key for key in fingerprints])
        return {key: value.decode() for key, value in zip(fingerprints, values, strict=True) if value}

    def put_many(self, answers: Mapping[str, str]) -> None:
        pipeline = self._redis.pipeline(transaction=False)
        for key, text in answers.items():
            pipeline.set(KEY_PREFIX + key, text, ex=self.ttl)
        pipeline.execute()

    def close(self) -> None:
        self._redis.close()


def without_credentials(url: str) -> str:
    """The URL with any user name and password taken out (for messages and logs)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
