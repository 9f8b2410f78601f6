"""The application's coordinator: one service in the driver that every Python worker reaches.

:mod:`.server` runs in the driver (started by :func:`aiquery.register`); :mod:`.client` is the workers'
:class:`~aiquery.engine.governor.Governor`; :mod:`.protocol` is what they say to each other.
"""

from __future__ import annotations

from aiquery.coordinator.protocol import CoordinatorAddress

__all__ = ["CoordinatorAddress"]
