"""Build the compiled engine.

Switches, read here and only here:
  MICROGRAD_CY_TRACE=1     tracing build (linetrace/profile, CYTHON_TRACE=1, legacy tracing
                           hooks on 3.13 too) so cProfile, line_profiler and coverage see
                           inside engine.pyx; slower.
  MICROGRAD_CY_DEBUG=1     debug build: checks the engine's invariants after every public call
                           and can fail allocations on demand (micrograd_cy/debug.pxi); slower.
  MICROGRAD_CY_ANNOTATE=1  also write Cython's annotated HTML (build/cython/micrograd_cy/engine.html).
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

TRACE = os.environ.get("MICROGRAD_CY_TRACE") == "1"
DEBUG = os.environ.get("MICROGRAD_CY_DEBUG") == "1"
ANNOTATE = os.environ.get("MICROGRAD_CY_ANNOTATE") == "1"

directives = {}  # the engine's own are in the header of engine.pyx
macros = []
if TRACE:
    directives.update(linetrace=True, profile=True)
    macros.append(("CYTHON_TRACE", "1"))
    # Cython 3.1+ traces through sys.monitoring on CPython 3.13+, whose events coverage's
    # Cython plugin never sees (it reported no line of the engine there): the legacy hooks
    macros.append(("CYTHON_USE_SYS_MONITORING", "0"))
if DEBUG:
    macros.append(("MGCY_DEBUG", "1"))
MODE = "-".join(name for name, on in [("tracing", TRACE), ("debug", DEBUG)] if on) or "optimized"
print(f"micrograd_cy: {MODE} build{', annotated' if ANNOTATE else ''}")

extensions = [
    Extension(
        "micrograd_cy.engine",
        ["micrograd_cy/engine.pyx"],
        define_macros=macros,
        # no fused multiply-adds: a * b + c rounds twice in every copy of a rule (the nodes',
        # the rows' vectorized ones), so that they agree to the bit whatever -march says
        extra_compile_args=["-ffp-contract=off"] + ([] if TRACE or DEBUG else ["-O3"]),
    )
]

# each mode generates its C in a folder of its own, so a switch never reuses the other's; the
# tracing build keeps its C beside the .pyx (git ignores it), where Cython's coverage plugin
# (.coveragerc) finds it
BUILD_DIR = None if TRACE else os.path.join("build", "cython" if MODE == "optimized" else f"cython-{MODE}")
if ANNOTATE:
    print(f"micrograd_cy: annotated HTML in {BUILD_DIR or '.'}/micrograd_cy/engine.html")

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=ANNOTATE,
        build_dir=BUILD_DIR,
    ),
)
