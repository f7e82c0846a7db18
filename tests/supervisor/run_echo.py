"""Launch a Supervisor with the echo test worker: `python -m tests.supervisor.run_echo --config PATH ...`.

Logs are JSON lines on stderr (the tests read them as events); the process exit code is Supervisor.run()'s.
The config file is JSON; `load_config` rejects unreadable files, invalid JSON and a non-integer "generation"
with a message that names the file and the problem but never echoes the file's content.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.logsetup import configure_logging
from gateway.supervisor import ListenerSpec, Supervisor


class ConfigError(Exception):
    """A config file problem; str() names the file and the problem, never a value."""


def config_loader(path: Path) -> Callable[[], dict[str, Any]]:
    def load_config() -> dict[str, Any]:
        try:
            text = path.read_text()
        except OSError as error:
            raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
        try:
            config = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(
                f"config file {path} is not valid JSON (line {error.lineno}, column {error.colno})"
            ) from None
        if not isinstance(config, dict):
            raise ConfigError(f"config file {path} must hold a JSON object")
        if not isinstance(config.get("generation", 0), int):
            raise ConfigError(f"config file {path}: key 'generation' must be an integer")
        return config

    return load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--heartbeat-timeout", type=float, default=30.0)
    parser.add_argument("--worker-entry", default="tests.supervisor.echo_worker:main")
    args = parser.parse_args(argv)
    configure_logging("json", "INFO")
    supervisor = Supervisor(
        listeners=[ListenerSpec("echo", "127.0.0.1", args.port)],
        workers=args.workers,
        worker_entry=args.worker_entry,
        load_config=config_loader(args.config),
        drain_timeout=args.drain_timeout,
        heartbeat_timeout=args.heartbeat_timeout,
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
