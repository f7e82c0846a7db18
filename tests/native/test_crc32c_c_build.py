"""The CRC32C header compiles warning-free as the portable build (what non-x86 targets get) and agrees.

The extension on this machine uses SSE4.2, so the preprocessor branch without it is only exercised here:
the header is compiled on its own with SG_CRC32C_PORTABLE_ONLY and -Werror, and the resulting program's
checksums are compared with the reference implementation.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.native import reference

HEADER = Path(__file__).resolve().parents[2] / "_native" / "crc32c.h"

DRIVER = r"""
#include "crc32c.h"
#include <stdio.h>

int main(void) {
    static unsigned char data[1 << 20];
    size_t length = fread(data, 1, sizeof data, stdin);
    sg_crc32c_init();
    /* the whole input, then chained over two halves: both must print the same value */
    uint32_t whole = sg_crc32c(0, data, length);
    uint32_t chained = sg_crc32c(sg_crc32c(0, data, length / 2), data + length / 2, length - length / 2);
    printf("%s %u %u %u\n", sg_crc32c_backend(), whole, chained, sg_crc32c_portable(0, data, length));
    return 0;
}
"""


@pytest.fixture(scope="module")
def portable_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("no C compiler on PATH, but the native extension needs one to be built")
    workdir = tmp_path_factory.mktemp("crc32c_build")
    (workdir / "driver.c").write_text(DRIVER)
    program = workdir / "crc32c_portable"
    command = [compiler, "-std=c99", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
    command += [
        "-DSG_CRC32C_PORTABLE_ONLY",
        f"-I{HEADER.parent}",
        "-o",
        str(program),
        str(workdir / "driver.c"),
    ]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    return program


@pytest.mark.parametrize("size", [0, 1, 9, 1000, 70_000])
def test_portable_build_matches_reference(portable_program: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    output = subprocess.run(
        [str(portable_program)], input=data, capture_output=True, check=True, timeout=30
    ).stdout.split()
    expected = str(reference.crc32c(data)).encode()
    assert output == [b"slicing-by-8", expected, expected, expected]
