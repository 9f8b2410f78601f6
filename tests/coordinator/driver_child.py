"""A driver process for the coordinator tests: a coordinator whose workers share its machine, until it is killed.

    python driver_child.py SPOOL

Prints "HOST PORT SECRET PID" once it listens (PID is its own: the driver a same-machine worker watches).
"""

from __future__ import annotations

import sys
import time

from aiquery.coordinator.server import Coordinator

coordinator = Coordinator(bind_host="127.0.0.1", advertised_host="127.0.0.1", application="driver-child",
                          parallelism=2, same_machine=True)  # fmt: skip
address = coordinator.start()
coordinator.add_journal(sys.argv[1])
print(address.host, address.port, address.secret.reveal(), address.driver_pid, flush=True)
while True:
    time.sleep(60)
