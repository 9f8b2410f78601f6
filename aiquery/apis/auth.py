"""How a token travels, by an endpoint's ``auth`` style.

``bearer`` (the Databricks gateway, OpenAI) is ``Authorization: Bearer <token>``; every other style an adapter
declares (``Adapter.auth``) is the name of the header its provider reads the key from, so an API with a new style
needs no code here.
"""

from __future__ import annotations

__all__ = ["NO_AUTH", "auth_header"]

NO_AUTH = "none"
"""The style of an endpoint that sends no credential."""


def auth_header(style: str, token: str) -> tuple[str, str] | None:
    """The (name, value) header carrying ``token`` under ``style``, or None for ``none``."""
    if style == NO_AUTH:
        return None
    if style == "bearer":
        return "Authorization", f"Bearer {token}"
    return style, token
