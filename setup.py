"""Native extensions. Set STREAMGATE_NO_EXTENSIONS=1 at run time to use the pure-Python twins instead."""

import shlex
import subprocess

from Cython.Build import cythonize
from setuptools import Extension, setup


def _pkg_config(flag: str, package: str, default: list[str]) -> list[str]:
    """Compiler/linker flags from pkg-config (Debian's libhyperscan-dev ships libhs.pc)."""
    try:
        out = subprocess.run(["pkg-config", flag, package], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return default
    return shlex.split(out)


extensions = [
    Extension(
        "gateway.native._kafka",
        ["_native/kafka.pyx"],
        depends=["_native/crc32c.h"],
        extra_compile_args=["-O3"],
    ),
    Extension(
        "gateway.masking._scanner",
        ["_native/scanner.pyx"],
        depends=[
            "_native/mask_engine.h",
            "_native/mask_json.h",
            "_native/mask_sha256.h",
            "_native/mask_validators.h",
        ],
        include_dirs=["_native"]
        + [f[2:] for f in _pkg_config("--cflags-only-I", "libhs", ["-I/usr/include/hs"])],
        libraries=[f[2:] for f in _pkg_config("--libs-only-l", "libhs", ["-lhs"])],
        extra_compile_args=["-O3"],
    ),
]

setup(ext_modules=cythonize(extensions, language_level=3, compiler_directives={"boundscheck": False}))
