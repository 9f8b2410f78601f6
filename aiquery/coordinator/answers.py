"""The application's answer stores, and which worker is sending which request right now.

A worker admitting a chunk looks its fingerprints up. The store's answers come back; of the rest, each
fingerprint nobody is sending is *claimed* by that worker (it sends the request), and one another worker has
claimed is to be *waited* for: identical requests in flight anywhere in the application are sent once. The owner
ships the answer as soon as it has it (stored, claim released: the waiters find it at their next sync), or
releases the claim when its call fails (errors are never stored: a waiter then claims it and sends it itself). A
worker that disconnects loses its claims at once, so its waiters take over.

Answers cross the driver as the text the workers encoded; the driver never decodes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aiquery.store.base import SafeStore

__all__ = ["AnswerDesk"]


class AnswerDesk:
    """Stores by key (as plans name them) and the claims of in-flight requests. Used on the coordinator's loop."""

    def __init__(self) -> None:
        self._stores: dict[str, SafeStore] = {}
        self._owner: dict[str, str] = {}
        self._owned: dict[str, set[str]] = {}
        self.hits = 0
        self.lookups = 0

    def add_store(self, key: str, store: SafeStore) -> None:
        """Serve ``store`` under ``key`` (a store already served under it stays)."""
        self._stores.setdefault(key, store)

    def store(self, key: str) -> SafeStore | None:
        return self._stores.get(key)

    @property
    def failures(self) -> int:
        """Failed lookups and writes of every store."""
        return sum(store.failures for store in self._stores.values())

    def lookup(self, worker: str, key: str, fingerprints: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        """Answers the store has; of the others, those to wait for (claimed by another worker). The rest are
        claimed for ``worker``: it sends them."""
        found = self._found(key, fingerprints)
        waiting = []
        for fingerprint in fingerprints:
            if fingerprint not in found and not self._claim(worker, fingerprint):
                waiting.append(fingerprint)
        return found, waiting

    def wait(self, worker: str, key: str, fingerprints: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        """For fingerprints ``worker`` waits on: answers stored since, and those it now owns (their owner gave up)."""
        found = self._found(key, fingerprints)
        owned = [fp for fp in fingerprints if fp not in found and self._claim(worker, fp)]
        return found, owned

    def answered(self, worker: str, key: str, answers: dict[str, str]) -> None:
        """Store answers a worker got, and release their claims."""
        store = self._stores.get(key)
        if store is not None:
            store.put_many(answers)
        self.release(worker, answers)

    def release(self, worker: str, fingerprints: Iterable[str]) -> None:
        """Release claims ``worker`` holds (its calls ended)."""
        owned = self._owned.get(worker)
        for fingerprint in fingerprints:
            if self._owner.get(fingerprint) == worker:
                del self._owner[fingerprint]
                if owned is not None:
                    owned.discard(fingerprint)

    def forget(self, worker: str) -> None:
        """The worker is gone: its claims are free for the workers waiting on them."""
        for fingerprint in self._owned.pop(worker, set()):
            if self._owner.get(fingerprint) == worker:
                del self._owner[fingerprint]

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()

    def _found(self, key: str, fingerprints: Sequence[str]) -> dict[str, str]:
        store = self._stores.get(key)
        if store is None or not fingerprints:
            return {}
        found = store.get_many(fingerprints)
        self.lookups += len(fingerprints)
        self.hits += len(found)
        return found

    def _claim(self, worker: str, fingerprint: str) -> bool:
        owner = self._owner.get(fingerprint)
        if owner is None:
            self._owner[fingerprint] = worker
            self._owned.setdefault(worker, set()).add(fingerprint)
            return True
        return owner == worker
