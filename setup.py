"""Build the compiled engine.

Switches, read here and only here:
  MICROGRAD_CY_TRACE=1     tracing build (linetrace/profile, CYTHON_TRACE=1) so cProfile,
                           line_profiler and coverage see inside engine.pyx; slower.
  MICROGRAD_CY_ANNOTATE=1  also write Cython's annotated HTML next to engine.pyx.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

TRACE = os.environ.get("MICROGRAD_CY_TRACE") == "1"
ANNOTATE = os.environ.get("MICROGRAD_CY_ANNOTATE") == "1"

directives = {
    "language_level": 3,
    "embedsignature": True,
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
}
macros = []
if TRACE:
    directives.update(linetrace=True, profile=True)
    macros.append(("CYTHON_TRACE", "1"))
print(f"micrograd_cy: {'tracing' if TRACE else 'optimized'} build"
      f"{', annotated' if ANNOTATE else ''}")

extensions = [
    Extension(
        "micrograd_cy.engine",
        ["micrograd_cy/engine.pyx"],
        define_macros=macros,
        extra_compile_args=[] if TRACE else ["-O3"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=ANNOTATE,
        force=TRACE,  # a cached optimized .c must not pass for a tracing one
    ),
)
