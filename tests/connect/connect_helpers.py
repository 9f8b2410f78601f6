"""What tests/connect shares besides its fixtures: the running server's description."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ConnectServerProcess:
    """A running ``aiquery connect-server``: the URL and token its clients use, its port, its logs."""

    url: str
    token: str
    port: int
    log_path: Path
    """The command's stderr (its own messages and any Python traceback)."""
    spark_log_path: Path
    """Spark's output (``--spark-log``)."""
    process: subprocess.Popen[str]

    def remote(self, **options: str) -> str:
        """The URL with further Connect parameters (``user_id=alice``) or another ``token``."""
        base, _, _ = self.url.partition("/;")
        parameters = {"token": self.token, **options}
        return base + "/;" + ";".join(f"{key}={value}" for key, value in parameters.items())
