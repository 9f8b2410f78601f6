"""The answer store: an answer once paid for is not paid for again while it is fresh.

:mod:`.base` defines fingerprints and stored answers; :mod:`.disk` is the default store (SQLite under the usage
folder, on the driver); :mod:`.redis_store` shares answers between applications; :mod:`.guarded` keeps a slow or
failing store from stalling or failing a query. The driver's coordinator owns
the application's store; workers reach it through their syncs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiquery.config import CacheSettings
from aiquery.store.base import FINGERPRINT_SCHEME, AnswerStore, StoredAnswer, fingerprint
from aiquery.store.guarded import GuardedStore

__all__ = [
    "FINGERPRINT_SCHEME",
    "AnswerStore",
    "GuardedStore",
    "StoredAnswer",
    "fingerprint",
    "open_store",
    "redis_store_key",
]


def open_store(settings: CacheSettings, default_folder: str | Path) -> GuardedStore:
    """The store the settings name: their Redis URL, else a SQLite file in ``default_folder``.

    The store is opened on its own thread. A store that cannot be opened is a store that fails: every lookup is a
    miss (with one warning once the breaker opens), e.g. for an unwritable folder or a missing redis package.
    """
    from aiquery.store.redis_store import RedisStore, without_credentials

    if settings.url:
        url, namespace = settings.url, settings.namespace
        return GuardedStore(lambda: RedisStore(url, ttl=settings.ttl, namespace=namespace), without_credentials(url))
    from aiquery.store.disk import DiskStore

    return GuardedStore(
        lambda: DiskStore(default_folder, ttl=settings.ttl, max_bytes=settings.max_size, prepared=False),
        str(default_folder),
    )


def redis_store_key(settings: CacheSettings) -> str:
    """How the coordinator names the Redis store of ``settings`` (it travels in query plans): the server and the
    namespace, never the credentials, nor anything derived from them."""
    from aiquery.redis_url import without_credentials

    assert settings.url is not None
    identity = f"{without_credentials(settings.url)}\n{settings.namespace}"
    return "redis:" + hashlib.sha256(identity.encode()).hexdigest()[:24]
