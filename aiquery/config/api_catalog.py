"""The wire formats an endpoint's ``api`` may name, as configuration sees them.

The formats are the adapters of :mod:`aiquery.apis`, a layer above configuration. Each one registers itself here
(:func:`aiquery.apis.registry.register`, run when that package is imported, which the package root does), so
configuration checks ``api``, ``auth`` and API-specific options, and builds an endpoint's default ``base_url``,
from the adapter itself without importing the layer above.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

from aiquery.errors import ConfigError

__all__ = [
    "APIS",
    "EndpointOption",
    "WireFormat",
    "auth_styles",
    "register_wire_format",
    "unregister_wire_format",
    "wire_format",
    "wire_formats",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class EndpointOption:
    """An endpoint option that only one API's endpoints take, and the form its value must have."""

    pattern: str
    """A regular expression the whole (string) value must match."""
    expected: str
    """What the error for a value of the wrong form says is expected."""

    def accepts(self, value: object) -> bool:
        """Whether ``value`` is a string of the required form."""
        return isinstance(value, str) and re.fullmatch(self.pattern, value) is not None


class WireFormat(Protocol):
    """What configuration reads from an adapter (:class:`aiquery.apis.base.Adapter` has all of it)."""

    api: ClassVar[str]
    gateway_path: ClassVar[str]
    auth: ClassVar[str]
    endpoint_options: ClassVar[Mapping[str, EndpointOption]]


_FORMATS: dict[str, WireFormat] = {}


def register_wire_format(wire: WireFormat) -> None:
    """Let endpoints name ``wire.api`` (called by the registry of :mod:`aiquery.apis`)."""
    _FORMATS[wire.api] = wire


def unregister_wire_format(api: str) -> None:
    """Stop accepting ``api``."""
    _FORMATS.pop(api, None)


def wire_formats() -> Mapping[str, WireFormat]:
    """The registered formats by name, in registration order."""
    return dict(_FORMATS)


def wire_format(api: str, where: str) -> WireFormat:
    """The registered format ``api``.

    Raises:
        ConfigError: no format of that name is registered (``where`` starts the message).
    """
    try:
        return _FORMATS[api]
    except KeyError:
        raise ConfigError(f"{where}: api = {api!r} is invalid; expected one of {', '.join(_FORMATS)}") from None


def auth_styles() -> tuple[str, ...]:
    """The values ``auth`` may take: ``bearer``, every registered format's own style, and ``none``."""
    return tuple(dict.fromkeys(("bearer", *(wire.auth for wire in _FORMATS.values()), "none")))


class _GatewayPaths(Mapping[str, str]):
    """Each registered API's path on the Databricks AI Gateway, read live from the registrations."""

    def __getitem__(self, api: str) -> str:
        return _FORMATS[api].gateway_path

    def __iter__(self) -> Iterator[str]:
        return iter(list(_FORMATS))

    def __len__(self) -> int:
        return len(_FORMATS)

    def __repr__(self) -> str:
        return repr(dict(self))


APIS: Mapping[str, str] = _GatewayPaths()
"""Wire formats by name (kebab-case) and where each lives on the Databricks AI Gateway."""
