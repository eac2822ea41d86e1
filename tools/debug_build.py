"""Build the package with the engine's debug variant into a folder of its own.

    python tools/debug_build.py OUT

OUT/micrograd_cy is then micrograd_cy with a debug engine (MGCY_DEBUG=1: the invariants
of micrograd_cy/memory.pxi checked after every public call, allocations that fail on
demand through engine._fail_allocations); put OUT first on PYTHONPATH to use it. Needs
Cython and a C compiler, nothing else: tests/test_debug_build.py runs the fuzzers on it.
(`MICROGRAD_CY_DEBUG=1 pip install -e .` builds the same variant in place.)
"""
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "micrograd_cy"


def build(out):
    target = Path(out) / "micrograd_cy"
    target.mkdir(parents=True, exist_ok=True)
    for pattern in ["*.py", "*.pyx", "*.pxd", "*.pxi"]:
        for path in PACKAGE.glob(pattern):
            shutil.copy(path, target)
    subprocess.run([sys.executable, "-m", "cython", "-3", "--module-name", "micrograd_cy.engine",
                    str(target / "engine.pyx"), "-o", str(target / "engine.c")],
                   check=True, capture_output=True, text=True)
    compiler = (sysconfig.get_config_var("CC") or "cc").split()
    library = target / f"engine{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(compiler + ["-shared", "-fPIC", "-O1", "-g", "-DMGCY_DEBUG=1",
                               f"-I{sysconfig.get_paths()['include']}", str(target / "engine.c"),
                               "-o", str(library)], check=True, capture_output=True, text=True)
    return library


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(build(sys.argv[1]))
