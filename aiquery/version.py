"""The package's version, in a module that imports nothing, so any layer can name it (the engine's User-Agent).

It must equal ``version`` in pyproject.toml (tests/test_version.py checks that).
"""

__version__ = "0.1.0"
