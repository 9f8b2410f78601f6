"""The one registry of wire formats: an API's adapter, found by the name an endpoint's ``api`` gives.

Registering an adapter also tells configuration about it (:mod:`aiquery.config.api_catalog`), so ``api`` is
checked and the default ``base_url`` built from the same object; configuration, a layer below, never imports this
package. :mod:`aiquery.apis` registers the built-in adapters when imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from aiquery.apis.base import Adapter
from aiquery.config.api_catalog import register_wire_format, unregister_wire_format
from aiquery.errors import ConfigError

__all__ = ["ADAPTERS", "get_adapter", "register", "unregister"]

_ADAPTERS: dict[str, Adapter] = {}

ADAPTERS: Mapping[str, Adapter] = MappingProxyType(_ADAPTERS)
"""One shared adapter per configured API name, in registration order (read-only: use :func:`register`)."""


def register(adapter: Adapter) -> None:
    """Make ``adapter`` the wire format of endpoints with ``api = adapter.api``.

    Raises:
        ValueError: another adapter already has that name.
    """
    if adapter.api in _ADAPTERS:
        raise ValueError(f"an adapter for api {adapter.api!r} is already registered")
    _ADAPTERS[adapter.api] = adapter
    register_wire_format(adapter)


def unregister(api: str) -> None:
    """Forget the adapter of ``api`` (a test's own wire format, once the test is done)."""
    _ADAPTERS.pop(api, None)
    unregister_wire_format(api)


def get_adapter(api: str) -> Adapter:
    """The adapter for a configured API name.

    Raises:
        ConfigError: ``api`` is not one of :data:`ADAPTERS`.
    """
    try:
        return _ADAPTERS[api]
    except KeyError:
        raise ConfigError(f"unknown api {api!r}; allowed: {', '.join(_ADAPTERS)}") from None
