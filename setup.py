"""Build the compiled engine.

Switches, read here and only here:
  MICROGRAD_CY_TRACE=1     tracing build (linetrace/profile, CYTHON_TRACE=1) so cProfile,
                           line_profiler and coverage see inside engine.pyx; slower.
  MICROGRAD_CY_ANNOTATE=1  also write Cython's annotated HTML (build/cython/micrograd_cy/engine.html).
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

TRACE = os.environ.get("MICROGRAD_CY_TRACE") == "1"
ANNOTATE = os.environ.get("MICROGRAD_CY_ANNOTATE") == "1"

directives = {}  # the engine's own are in the header of engine.pyx
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

# each mode generates its C in a folder of its own, so a switch never reuses the other's
BUILD_DIR = os.path.join("build", "cython-trace" if TRACE else "cython")
if ANNOTATE:
    print(f"micrograd_cy: annotated HTML in {BUILD_DIR}/micrograd_cy/engine.html")

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=ANNOTATE,
        build_dir=BUILD_DIR,
    ),
)
