"""Log lines carry `worker` and `pid`, in text and in JSON, with structured fields as top-level JSON keys."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest

from gateway import logsetup


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logsetup._installed_handler = None
    logsetup.set_worker_id(None)


def test_json_lines_carry_worker_pid_and_structured_fields() -> None:
    stream = io.StringIO()
    logsetup.configure_logging("json", "info", stream=stream)

    logging.getLogger("gateway.test").info(
        "worker %d ready", 2, extra={"event": "worker_ready", "worker_id": 2}
    )
    logging.getLogger("gateway.test").debug("below the level")

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["worker"] == 0 and record["pid"] == os.getpid()
    assert record["msg"] == "worker 2 ready"
    assert record["event"] == "worker_ready" and record["worker_id"] == 2
    assert record["level"] == "INFO" and record["logger"] == "gateway.test"
    assert record["ts"].endswith("Z")


def test_set_worker_id_retags_following_lines() -> None:
    stream = io.StringIO()
    logsetup.configure_logging("json", "INFO", worker_id=None, stream=stream)
    logging.getLogger("x").info("from the master")
    logsetup.set_worker_id(3)
    logging.getLogger("x").info("from worker 3")

    workers = [json.loads(line)["worker"] for line in stream.getvalue().splitlines()]
    assert workers == [0, 3]


def test_text_lines_carry_worker_and_pid() -> None:
    stream = io.StringIO()
    logsetup.configure_logging("text", "WARNING", worker_id=4, stream=stream)

    logging.getLogger("gateway.worker").warning("slow upstream")

    line = stream.getvalue().strip()
    assert f"WARNING worker=4 pid={os.getpid()} gateway.worker: slow upstream" in line


def test_exceptions_are_kept_inside_one_json_line() -> None:
    stream = io.StringIO()
    logsetup.configure_logging("json", "INFO", stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("x").exception("failed")

    (line,) = stream.getvalue().splitlines()
    assert "RuntimeError: boom" in json.loads(line)["exc"]


def test_reconfiguring_replaces_the_previous_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    logsetup.configure_logging("json", "INFO", stream=first)
    logsetup.configure_logging("text", "INFO", stream=second)

    logging.getLogger("x").info("once")

    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1


@pytest.mark.parametrize(("fmt", "level"), [("xml", "INFO"), ("json", "LOUD")])
def test_unknown_format_or_level_is_refused(fmt: str, level: str) -> None:
    with pytest.raises(ValueError):
        logsetup.configure_logging(fmt, level, stream=io.StringIO())  # type: ignore[arg-type]
