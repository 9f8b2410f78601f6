"""A worker stand-in for the SIGKILL tests: writes usage records until it is killed.

Usage: python spool_child.py SPOOL_DIR MODE
  MODE "steady": completes 50 requests (flushing after 20 and 40), begins 7 more, prints "ready", sleeps.
  MODE "busy":   begins and ends requests r0, r1, ... one at a time, flushing every 25, until killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from usage_helpers import finish, record

from aiquery.usage.spool import SpoolWriter


def main(spool_dir: str, mode: str) -> None:
    writer = SpoolWriter(spool_dir)
    if mode == "steady":
        for i in range(50):
            rec = record(f"done-{i}")
            writer.begin(rec)
            writer.end(finish(rec))
            if i in (19, 39):
                writer.flush()
        for i in range(7):
            writer.begin(record(f"flying-{i}"))
        print("ready", flush=True)
        time.sleep(600)
    else:
        i = 0
        print("ready", flush=True)
        while True:
            rec = record(f"r{i}")
            writer.begin(rec)
            writer.end(finish(rec))
            i += 1
            if i % 25 == 0:
                writer.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
