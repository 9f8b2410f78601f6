"""A Redis URL as ``[cache] url`` gives it: shown without its password, and judged for exposure.

An answer store on Redis holds every answer the applications that share it have paid for, and a worker takes
what it finds there as the endpoint's answer. A server reached over the network with no password and no TLS lets
anyone on that network read those answers or plant their own, so such a URL is refused unless the file says
``[cache] insecure = true``. redis-py takes a password from the URL's user part (``redis://user:pw@host``) or
from a ``password=`` query parameter: both count, and both are hidden when a URL is shown.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["DEFAULT_NAMESPACE", "exposure", "malformed", "redacted", "without_credentials"]

DEFAULT_NAMESPACE = "aiquery"
"""The key prefix of answers (``aiquery:answer:<fingerprint>``) unless ``[cache] namespace`` names another."""
HIDDEN = "***"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


def redacted(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{HIDDEN}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key == "password" for key, _ in pairs):
            query = urlencode([(key, HIDDEN if key == "password" else value) for key, value in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def without_credentials(url: str) -> str:
    """The URL with no user name, password or parameters (for messages, logs and a store's identity)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address is written in brackets
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def malformed(url: str) -> bool:
    """Whether ``url`` cannot be taken apart (a port that is not a number, a bracket left open)."""
    try:
        urlsplit(url).port  # noqa: B018 - parsing the port is the check
    except ValueError:
        return True
    return False


def exposure(url: str) -> str | None:
    """Why a store at ``url`` is open to its network (no TLS, no password, not this machine), or None if not."""
    parts = urlsplit(url)
    if parts.scheme in ("rediss", "unix"):  # TLS, or a socket file of this machine
        return None
    if parts.password or any(key == "password" for key, _ in parse_qsl(parts.query)):
        return None
    host = (parts.hostname or "").lower()
    if not host or _is_loopback(host):  # redis-py takes a URL without a host for localhost
        return None
    return f"{host} is reached over the network without TLS (rediss://) and without a password"


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
