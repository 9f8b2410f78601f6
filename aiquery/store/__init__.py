"""The answer store: an answer once paid for is not paid for again while it is fresh.

:mod:`.base` defines fingerprints and stored answers; :mod:`.disk` is the default store (SQLite under the usage
folder, on the driver); :mod:`.redis_store` shares answers between applications. The driver's coordinator owns
the application's store; workers reach it through their syncs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiquery.config import CacheSettings
from aiquery.store.base import FINGERPRINT_SCHEME, AnswerStore, SafeStore, StoredAnswer, fingerprint

__all__ = [
    "FINGERPRINT_SCHEME",
    "AnswerStore",
    "SafeStore",
    "StoredAnswer",
    "fingerprint",
    "open_store",
    "redis_store_key",
]


def open_store(settings: CacheSettings, default_folder: str | Path) -> SafeStore:
    """The store the settings name: their Redis URL, else a SQLite file in ``default_folder``.

    A store that cannot be opened is a store that fails: every lookup is a miss (with one warning).
    """
    from aiquery.store.redis_store import RedisStore, without_credentials

    if settings.url:
        where = without_credentials(settings.url)
        try:
            return SafeStore(RedisStore(settings.url, ttl=settings.ttl, namespace=settings.namespace), where)
        except Exception as error:  # e.g. the redis package is missing: a broken store, not a failed session
            return SafeStore(_Broken(error), where)
    from aiquery.store.disk import DiskStore

    try:
        return SafeStore(DiskStore(default_folder, ttl=settings.ttl, max_bytes=settings.max_size), str(default_folder))
    except Exception as error:  # an unwritable folder, say
        return SafeStore(_Broken(error), str(default_folder))


def redis_store_key(settings: CacheSettings) -> str:
    """How the coordinator names the Redis store of ``settings`` (it travels in query plans): the server and the
    namespace, never the credentials, nor anything derived from them."""
    from aiquery.redis_url import without_credentials

    assert settings.url is not None
    identity = f"{without_credentials(settings.url)}\n{settings.namespace}"
    return "redis:" + hashlib.sha256(identity.encode()).hexdigest()[:24]


class _Broken:
    """A store that could not be opened: every call raises what opening it raised."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_many(self, fingerprints: object) -> dict[str, str]:
        raise self.error

    def put_many(self, answers: object) -> None:
        raise self.error

    def close(self) -> None:
        pass
