"""The native checksum releases the GIL on large buffers (and only there), so other threads keep running.

Method: with a very long switch interval the interpreter never takes the GIL away from a running thread,
so after starting a worker the main thread only gets to run again once the worker releases the GIL (or
ends). The worker repeats its call until the main thread reports that it ran, or a round limit is hit.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from gateway.native.records import GIL_RELEASE_THRESHOLD
from tests.native.batches import build_batch
from tests.native.differential import native

LARGE = bytes(8 * 1024 * 1024)
SMALL = bytes(GIL_RELEASE_THRESHOLD - 1)
LARGE_BATCH = build_batch([(None, LARGE[: 4 * 1024 * 1024], [])])
ROUNDS = 500


@pytest.fixture
def long_switch_interval() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def main_thread_ran_during(work_once: Callable[[], object]) -> bool:
    main_ran, finished = threading.Event(), threading.Event()

    def worker() -> None:
        for _ in range(ROUNDS):
            if main_ran.is_set():
                break
            work_once()
        finished.set()

    thread = threading.Thread(target=worker)
    thread.start()  # returns only once the worker lets go of the GIL
    ran = not finished.is_set()
    if ran:
        main_ran.set()
    thread.join(timeout=60)
    assert not thread.is_alive()
    return ran


@pytest.mark.usefixtures("long_switch_interval")
@pytest.mark.parametrize(
    ("work_once", "releases"),
    [
        (lambda: native.crc32c(LARGE), True),
        (lambda: native.batch_crc_ok(LARGE_BATCH, 0), True),
        (lambda: native.crc32c(SMALL), False),
    ],
    ids=["crc32c-8MiB", "batch_crc_ok-4MiB", "crc32c-below-threshold"],
)
def test_gil_released_for_large_buffers_only(work_once: Callable[[], object], releases: bool) -> None:
    assert main_thread_ran_during(work_once) is releases
