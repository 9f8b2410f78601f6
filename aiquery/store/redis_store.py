"""An answer store on a Redis server, for answers shared by several applications or drivers.

Each answer is one string key, ``<namespace>:answer:<fingerprint>``, set with the store's time-to-live, so Redis
expires it. The namespace is ``[cache] namespace``, ``aiquery`` unless set: applications that name the same one
share their answers, a team or user with a namespace of its own keeps a store apart on a shared server. The size
bound is the server's: give it a ``maxmemory`` and an eviction policy such as ``allkeys-lru`` (aiquery does not
scan a shared server to count bytes). Needs the ``redis`` package (``pip install "aiquery[redis]"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiquery.redis_url import DEFAULT_NAMESPACE, without_credentials

__all__ = ["KEY_PREFIX", "RedisStore", "key_prefix", "without_credentials"]

KEY_PREFIX = f"{DEFAULT_NAMESPACE}:answer:"
"""The prefix of answers in the default namespace."""
TIMEOUT_S = 2.0


def key_prefix(namespace: str) -> str:
    """The prefix of every answer key in ``namespace``."""
    return f"{namespace}:answer:"


class RedisStore:
    """Answers on a Redis server named by URL (``redis://host:port/db``, ``rediss://`` for TLS).

    Args:
        url: the server.
        ttl: seconds an answer stays fresh (Redis expires it then).
        namespace: the first part of every key (``[cache] namespace``).
    """

    def __init__(self, url: str, *, ttl: float, namespace: str = DEFAULT_NAMESPACE) -> None:
        import redis

        self.ttl = max(1, int(ttl))
        self.prefix = key_prefix(namespace)
        self._redis: Any = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)

    def get_many(self, fingerprints: Sequence[str]) -> dict[str, str]:
        prefix = self.prefix
        values = self._redis.mget([prefix + key for key in fingerprints])
        # Bytes that are not UTF-8 are a value to discard, not a failed lookup: replaced, they fail to decode later.
        return {
            key: value.decode(errors="replace") for key, value in zip(fingerprints, values, strict=True) if value
        }

    def put_many(self, answers: Mapping[str, str]) -> None:
        prefix = self.prefix
        pipeline = self._redis.pipeline(transaction=False)
        for key, text in answers.items():
            pipeline.set(prefix + key, text, ex=self.ttl)
        pipeline.execute()

    def delete_many(self, fingerprints: Sequence[str]) -> None:
        if fingerprints:
            self._redis.delete(*[self.prefix + key for key in fingerprints])

    def close(self) -> None:
        self._redis.close()
