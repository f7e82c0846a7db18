"""Native extensions. Set STREAMGATE_NO_EXTENSIONS=1 at run time to use the pure-Python twins instead."""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "gateway.native._kafka",
        ["_native/kafka.pyx"],
        depends=["_native/crc32c.h"],
        extra_compile_args=["-O3"],
    ),
]

setup(ext_modules=cythonize(extensions, language_level=3, compiler_directives={"boundscheck": False}))
