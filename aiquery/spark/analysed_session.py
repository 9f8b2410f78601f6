"""The session whose query is being analysed: its settings, its id, and (on a Spark Connect server) who it serves.

A builder registered in Spark's built-in function registry serves every session of the application: a Spark Connect
server's sessions included. Spark runs analysis inside ``SparkSession.withActive``, and the JVM calls the builder
back on that thread (py4j pins the callback to it), so the JVM's active session at ``apply()`` is the caller's:
its ``SET aiquery.*`` settings, its spending cap, its Connect user. Outside an analysis (the DataFrame API on a
classic session) the registering session stands in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["AnalysedSession", "ConnectIdentity", "analysed_session", "connect_service"]

QUERY_TAG_SETTING = "aiquery.query_tag"


@dataclass(frozen=True)
class ConnectIdentity:
    """A Spark Connect session as its server knows it: the user id the client declared, and the session id."""

    user_id: str
    session_id: str


@dataclass(frozen=True)
class AnalysedSession:
    """The session under analysis: its JVM ``RuntimeConfig``, its id (the owner of its cap), its Connect identity."""

    conf: Any
    owner: str
    connect: ConnectIdentity | None = None

    def get(self, name: str) -> str | None:
        """The session's setting ``name``, or None when unset."""
        value = self.conf.getOption(name)
        return str(value.get()) if value.isDefined() else None

    @property
    def query_tag(self) -> str | None:
        """``SET aiquery.query_tag = ...``: the tag this session's requests carry in the usage table."""
        return self.get(QUERY_TAG_SETTING) or None


_identities: dict[str, ConnectIdentity] = {}
"""Connect identity by session id (sessionUUID): looked up once per Connect session (a session without one is looked
up each time: it may be a Connect session whose holder is not registered yet)."""
_visited: set[tuple[str, str]] = set()
"""Connect sessions (user id, session id) already looked at: each is asked for once. Asking the session manager
for a session marks it used, so asking for every session at each lookup would keep abandoned ones from ever
expiring."""
_identities_lock = threading.Lock()
MAX_REMEMBERED = 10_000
"""Sessions whose identity is remembered; past that the memory starts again (a lookup is cheap, unbounded is not)."""


def analysed_session(jvm: Any, fallback: Any) -> AnalysedSession:
    """The session under analysis (the JVM's active session; ``fallback``, a JVM session, outside an analysis)."""
    active = jvm.org.apache.spark.sql.SparkSession.getActiveSession()
    session = active.get() if active.isDefined() else fallback
    owner = _owner(jvm, session)
    with _identities_lock:
        identity = _identities.get(owner)
    if identity is None:
        identity = _connect_identity(jvm, session, owner)
    return AnalysedSession(conf=session.conf(), owner=owner, connect=identity)


CONNECT_SERVICE = "org.apache.spark.sql.connect.service.SparkConnectService$"


def connect_service(jvm: Any) -> Any | None:
    """Spark's Connect service object (``SparkConnectService``'s companion) in this JVM; None without its JAR."""
    try:
        service_class = jvm.java.lang.Class.forName(
            CONNECT_SERVICE, True, jvm.java.lang.Thread.currentThread().getContextClassLoader()
        )
    except Exception:  # py4j wraps the ClassNotFoundException: a classic application without the Connect JAR
        return None
    return service_class.getField("MODULE$").get(None)


def _owner(jvm: Any, session: Any) -> str:
    """The session's id: its UUID (a Spark without one: its JVM identity)."""
    try:
        return str(session.sessionUUID())
    except Exception:
        return f"jvm-{jvm.java.lang.System.identityHashCode(session)}"


def _connect_identity(jvm: Any, session: Any, owner: str) -> ConnectIdentity | None:
    """The Connect session whose Spark session is ``session`` (id ``owner``), from the running Connect service's
    session manager; None without a Connect service in this JVM, or for a session it did not create. Every
    session not looked at before is remembered on the way."""
    service = connect_service(jvm)
    try:
        if service is None or not service.started():
            return None
        manager = service.sessionManager()
        infos = manager.listActiveSessions()
        key_class = jvm.org.apache.spark.sql.connect.service.SessionKey
        for index in range(infos.size()):
            info = infos.apply(index)
            key = (str(info.userId()), str(info.sessionId()))
            with _identities_lock:
                if key in _visited:
                    continue
            holder = manager.getIsolatedSessionIfPresent(key_class(*key))
            if holder.isDefined():
                _remember(key, _owner(jvm, holder.get().session()))
    except Exception:  # a Connect service of another shape (another Spark's session manager): no identity
        return None
    with _identities_lock:
        return _identities.get(owner)


def _remember(key: tuple[str, str], owner: str) -> None:
    with _identities_lock:
        if len(_identities) >= MAX_REMEMBERED:
            _identities.clear()
            _visited.clear()
        _identities[owner] = ConnectIdentity(user_id=key[0], session_id=key[1])
        _visited.add(key)
