"""A real Supervisor with the admin process as its auxiliary singleton (as `streamgate run` will start it) and
one echo test worker: `python -m tests.approvals.supervised_admin CONFIG.json ADMIN_PORT`. JSON logs on
stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gateway.logsetup import configure_logging
from gateway.supervisor import ListenerSpec, Supervisor


def main(argv: list[str]) -> int:
    config_path, admin_port = Path(argv[1]), int(argv[2])

    def load_config() -> dict[str, Any]:
        return dict(json.loads(config_path.read_text()))

    configure_logging("json", "INFO")
    supervisor = Supervisor(
        listeners=[ListenerSpec("echo", "127.0.0.1", 0)],
        workers=1,
        worker_entry="tests.supervisor.echo_worker:main",
        load_config=load_config,
        drain_timeout=5.0,
        auxiliary=[("gateway.admin.server:run_admin", [ListenerSpec("admin", "127.0.0.1", admin_port)])],
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
