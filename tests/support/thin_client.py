"""A virtual environment holding only ``pyspark-client`` and aiquery without extras: no JVM, no py4j.

The Spark Connect tests run their client scripts in it (``thin_client_python`` in tests/connect/conftest.py).
Built once per checkout and content: the folder's name is a hash of what goes in (pyproject.toml, the client's
version, the Python version), so a change of dependencies builds a new one and an unchanged checkout reuses it.
aiquery goes in editable (``--no-deps``: its dependencies are listed and installed beside ``pyspark-client``), so
the code under test is the checkout's. pip's cache makes a rebuild on this machine take about 20 s.

``python tests/support/thin_client.py`` builds it and prints its interpreter.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CHECKOUT = Path(__file__).resolve().parents[2]
FOLDER = CHECKOUT / ".venv-connect-client"
BUILD_TIMEOUT_S = 600


def client_requirement(pyspark_version: str) -> str:
    """The ``pyspark-client`` of the server's Spark: its newest release up to that version within the same
    minor (pyspark 4.2.1 has no pyspark-client 4.2.1 on PyPI; 4.2.0 speaks the same protocol)."""
    major, minor = pyspark_version.split(".")[:2]
    return f"pyspark-client>={major}.{minor}.0,<={pyspark_version}"


def dependencies() -> list[str]:
    """aiquery's own dependencies, without extras."""
    with (CHECKOUT / "pyproject.toml").open("rb") as handle:
        return list(tomllib.load(handle)["project"]["dependencies"])


def thin_client_python(pyspark_version: str) -> Path:
    """The interpreter of the environment for a server running ``pyspark_version``, built if needed."""
    requirements = [client_requirement(pyspark_version), *dependencies(), "setuptools>=77"]
    key = hashlib.sha256(
        "\n".join([*requirements, sys.version, (CHECKOUT / "pyproject.toml").read_text()]).encode()
    ).hexdigest()[:16]
    FOLDER.mkdir(exist_ok=True)
    target = FOLDER / key
    python = target / "bin" / "python"
    with open(FOLDER / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers build it once between them
        if (target / ".complete").exists():
            return python
        shutil.rmtree(target, ignore_errors=True)
        # The checkout's other hash folders are stale: built for another pyspark or pyproject.toml.
        for stale in FOLDER.iterdir():
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
        _build_step([sys.executable, "-m", "venv", str(target)], env)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _build_step([*pip, *requirements], env)
        _build_step([*pip, "--no-deps", "--no-build-isolation", "-e", str(CHECKOUT)], env)
        (target / ".complete").write_text("\n".join(requirements) + "\n")
    return python


def _build_step(command: list[str], env: dict[str, str]) -> None:
    """One step of the build; a failure says what failed and what pip said (PyPI unreachable, no such version)."""
    done = subprocess.run(command, env=env, timeout=BUILD_TIMEOUT_S, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"building the thin client environment failed ({' '.join(command[-3:])}, exit {done.returncode}); "
            f"it needs PyPI for pyspark-client: {done.stderr[-2000:]}"
        )


if __name__ == "__main__":
    import pyspark

    print(thin_client_python(pyspark.__version__))
