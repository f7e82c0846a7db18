"""Runs `gateway.admin.server.run_admin` the way the supervisor does, for tests: a child process gets a bound
listener and its end of a control socketpair (by fd), the resolved config (from a JSON file), and runs the
entry.

    python -m tests.approvals.admin_launcher CONFIG.json CONTROL_FD LISTENER_FD
"""

from __future__ import annotations

import json
import socket
import sys

from gateway.admin.server import run_admin
from gateway.supervisor.context import WorkerContext


def main(argv: list[str]) -> int:
    config_path, control_fd, listener_fd = argv[1], int(argv[2]), int(argv[3])
    with open(config_path, encoding="utf-8") as fh:
        config = json.load(fh)
    control = socket.socket(fileno=control_fd)
    listener = socket.socket(fileno=listener_fd)
    listener.setblocking(False)
    context = WorkerContext(
        worker_id=-1, generation=1, listeners={"admin": listener}, config=config, control=control
    )
    return run_admin(context)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
