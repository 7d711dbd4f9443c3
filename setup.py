"""Build the Cython hot path (fastpush._core).

FASTPUSH_DEBUG=1 builds with -O0 -g, C asserts, the FASTPUSH_DEBUG invariant
checks and Cython line tracing (for coverage); the default is a release build.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext

DEBUG = os.environ.get("FASTPUSH_DEBUG", "") not in ("", "0")

# One place for Cython directives: safety checks stay on, hot functions turn
# boundscheck/wraparound off locally where a profile says so.
DIRECTIVES = {
    "language_level": 3,
    "embedsignature": True,
    "freethreading_compatible": False,
    "linetrace": DEBUG,
    "profile": False,
}

if DEBUG:
    CFLAGS = ["-O0", "-g", "-UNDEBUG", "-DFASTPUSH_DEBUG=1"]
    MACROS = [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
else:
    CFLAGS = ["-O2", "-DNDEBUG"]
    MACROS = []


class build_ext(_build_ext):
    def finalize_options(self) -> None:
        from Cython.Build import cythonize

        self.distribution.ext_modules[:] = cythonize(
            self.distribution.ext_modules,
            compiler_directives=DIRECTIVES,
            annotate=DEBUG,
            include_path=["fastpush"],
        )
        super().finalize_options()


setup(
    ext_modules=[
        Extension(
            "fastpush._core",
            ["fastpush/_core.pyx"],
            include_dirs=["fastpush/includes"],
            extra_compile_args=CFLAGS,
            define_macros=MACROS,
            depends=[
                os.path.join(root, f)
                for root, _, files in os.walk("fastpush")
                for f in files
                if f.endswith((".pyx", ".pxd", ".pxi", ".h"))
            ],
        )
    ],
    cmdclass={"build_ext": build_ext},
)
