"""The version users see (``aiquery --version``, the User-Agent) is the one the package is built with."""

from __future__ import annotations

import sys
from pathlib import Path

import aiquery
from aiquery.engine.prepared import USER_AGENT
from aiquery.version import __version__

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_version_module_matches_pyproject() -> None:
    with PYPROJECT.open("rb") as handle:
        built = tomllib.load(handle)["project"]["version"]
    assert __version__ == built
    assert aiquery.__version__ == built
    assert USER_AGENT.startswith(f"aiquery/{built} ")
