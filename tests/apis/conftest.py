"""The adapter tests import their helper as `sdk_types`, whichever import mode pytest runs in."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
