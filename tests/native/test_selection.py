"""gateway.native picks the extension or the reference as the environment says, and never fails silently.

Selection happens at import, so each case runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.native import extensions_disabled

REPO_ROOT = Path(__file__).resolve().parents[2]

REPORT = """
import json, gateway.native as native
print(json.dumps({"implementation": native.IMPLEMENTATION, "error": native.NATIVE_LOAD_ERROR,
                  "crc32c_module": native.crc32c.__module__, "check": native.crc32c(b"123456789")}))
"""
# Make the extension unimportable the way a missing build would (None in sys.modules means ImportError).
BROKEN_BUILD = "import sys; sys.modules['gateway.native._kafka'] = None\n"
CHECK = """
from tests.native.extension_check import assert_native_loaded
try:
    assert_native_loaded()
except RuntimeError as exc:
    print("raised:", exc)
else:
    print("passed")
"""


def run_python(code: str, **env_overrides: str) -> str:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("STREAMGATE_NO_EXTENSIONS", "STREAMGATE_ALLOW_REFERENCE")
    }
    env.update(env_overrides)
    completed = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def test_native_is_selected_by_default() -> None:
    report = json.loads(run_python(REPORT))
    assert report == {
        "implementation": "native",
        "error": None,
        "crc32c_module": "gateway.native._kafka",
        "check": 0xE3069283,
    }


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_switch_selects_the_reference(value: str) -> None:
    report = json.loads(run_python(REPORT, STREAMGATE_NO_EXTENSIONS=value))
    assert report == {
        "implementation": "reference",
        "error": None,
        "crc32c_module": "gateway.native.reference",
        "check": 0xE3069283,
    }


def test_failed_native_import_falls_back_but_records_the_error() -> None:
    report = json.loads(run_python(BROKEN_BUILD + REPORT))
    assert report["implementation"] == "reference"
    assert report["crc32c_module"] == "gateway.native.reference"
    assert (
        report["error"] == "ModuleNotFoundError: import of gateway.native._kafka halted; None in sys.modules"
    )


def test_session_check_fails_on_a_silent_fallback() -> None:
    output = run_python(BROKEN_BUILD + CHECK)
    assert output.startswith(
        "raised: gateway.native fell back to the pure-Python reference: ModuleNotFoundError"
    )
    assert "gateway.native._kafka" in output


@pytest.mark.parametrize("switch", ["STREAMGATE_NO_EXTENSIONS", "STREAMGATE_ALLOW_REFERENCE"])
def test_session_check_accepts_an_explicit_reference(switch: str) -> None:
    assert run_python(BROKEN_BUILD + CHECK, **{switch: "1"}) == "passed"


def test_session_check_passes_with_the_extension() -> None:
    assert run_python(CHECK) == "passed"


@pytest.mark.parametrize(
    ("value", "disabled"),
    [("1", True), ("true", True), (" On ", True), ("0", False), ("", False), ("false", False), ("no", False)],
)
def test_switch_values(value: str, disabled: bool) -> None:
    assert extensions_disabled({"STREAMGATE_NO_EXTENSIONS": value}) is disabled
    assert extensions_disabled({}) is False
