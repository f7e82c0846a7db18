"""A second (third...) process using the same approval store file, for the multi-process store tests.

    python -m tests.approvals.store_process request DB GO_FILE      file the same request as the others
    python -m tests.approvals.store_process hold DB ID TIMEOUT      wait for a decision like a worker does
    python -m tests.approvals.store_process decide DB ID VERB GO_FILE   approve or deny as reviewer "carol"

Each prints one JSON line with its result; `hold` first prints {"waiting": true} once it is registered.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass

from gateway.enforcement import approvals
from gateway.enforcement.approvals import ApprovalRefused
from gateway.enforcement.decisions import ApprovalSpec, Resource
from gateway.store.approvals_gate import DecisionWatcher
from gateway.store.approvals_sqlite import SqliteApprovalStore

SPEC = ApprovalSpec("pii", ("security-oncall",), 3600.0, 5.0)


@dataclass(frozen=True)
class Reviewer:
    sub: str
    groups: tuple[str, ...]


def _wait_for_go(path: str) -> None:
    deadline = time.monotonic() + 20
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit("no go signal")
        time.sleep(0.001)


def main(argv: list[str]) -> int:
    command, db = argv[1], argv[2]
    store = SqliteApprovalStore(db)
    if command == "request":
        _wait_for_go(argv[3])
        candidate = approvals.new_request(
            approvals.Requester("alice", None, ("analysts",), None, f"pid{os.getpid()}"),
            "consume",
            Resource.topic("customers.pii.x"),
            SPEC,
            time.time(),
        )
        record, created = store.request_or_existing(candidate)
        print(json.dumps({"id": record.id, "created": created}), flush=True)
    elif command == "hold":
        request_id, timeout = argv[3], float(argv[4])

        async def hold() -> None:
            watcher = DecisionWatcher(store, poll_interval_s=0.15)
            task = asyncio.get_running_loop().create_task(watcher.wait(request_id, timeout))
            await asyncio.sleep(0)  # the waiter registers synchronously on its first step
            print(json.dumps({"waiting": True}), flush=True)
            started = time.monotonic()
            record = await task
            print(
                json.dumps(
                    {
                        "status": record.status if record else None,
                        "woke_at": time.time(),
                        "waited_s": time.monotonic() - started,
                        "polls": watcher.polls,
                    }
                ),
                flush=True,
            )

        asyncio.run(hold())
    elif command == "decide":
        request_id, verb = argv[3], argv[4]
        _wait_for_go(argv[5])
        try:
            record = getattr(store, verb)(
                request_id, Reviewer("carol", ("security-oncall",)), f"{verb} race", time.time()
            )
            print(json.dumps({"won": True, "status": record.status}), flush=True)
        except ApprovalRefused as exc:
            print(json.dumps({"won": False, "code": exc.code}), flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
