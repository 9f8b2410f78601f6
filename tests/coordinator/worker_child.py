"""A worker process for the coordinator tests: sends slow requests through a CoordinatorClient, then waits.

    python worker_child.py HOST PORT SECRET JOURNAL GATEWAY_URL TOKEN TASK COUNT [STORE]

Prints "sent" once its COUNT requests are begun (acknowledged by the driver, or journaled in JOURNAL when
AIQUERY_TEST_SAME_MACHINE=1 says the worker shares the driver's machine) and on their way; the test kills it.
"""

from __future__ import annotations

import asyncio
import os
import sys

from aiquery.config import Secret, Settings
from aiquery.coordinator.client import CoordinatorClient
from aiquery.coordinator.protocol import CoordinatorAddress
from aiquery.engine.engine import CallSite, Engine
from aiquery.engine.governor import TaskInfo


async def main() -> None:
    host, port, secret, journal, url, token, task, count = sys.argv[1:9]
    store = sys.argv[9] if len(sys.argv) > 9 else None
    same_machine = os.environ.get("AIQUERY_TEST_SAME_MACHINE") == "1"
    address = CoordinatorAddress(
        host=host, port=int(port), secret=Secret(secret), application="child", same_machine=same_machine
    )
    client = CoordinatorClient(address, journal, store)
    client.start_task(TaskInfo(task_attempt_id=int(task), stage_id=1, query="child"))
    engine = Engine(governor=client)
    engine.context = {"task_attempt_id": int(task), "query_tag": "child"}
    settings = Settings(host=url, environ={"DATABRICKS_TOKEN": token}).with_endpoint("child-chat", api="chat")
    site = CallSite(endpoint=settings.endpoint("child-chat"))
    running = asyncio.ensure_future(engine.run(site, [f"slow {i}" for i in range(int(count))]))
    while engine.busy_calls < int(count) or client.syncs.pending:  # noqa: ASYNC110 - polls another task's state
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    print("sent", flush=True)
    await running


asyncio.run(main())
