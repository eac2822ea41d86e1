"""The fuzzers on the debug build: tools/debug_build.py compiles the engine with MGCY_DEBUG
(the invariants of memory.pxi checked after every public call, allocations that fail on
demand), and the property, stateful, hostile-input and out-of-memory tests run on it in a
child process."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ON_DEBUG = ["test_faults.py", "test_hostile.py", "test_state_machine.py", "test_ops_torch.py",
            "test_dropin.py", "test_batch.py", "test_net.py", "test_reentrancy.py",
            "test_attributes.py", "test_patching.py", "test_local_grads.py", "test_functional.py",
            "test_optim.py", "test_backward_rows.py", "test_gather.py"]


@pytest.fixture(scope="module")
def debug_package(tmp_path_factory):
    pytest.importorskip("Cython")
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import debug_build
    finally:
        sys.path.pop(0)
    out = tmp_path_factory.mktemp("debug")
    debug_build.build(out)
    return out


def run_on(package, *args):
    env = dict(os.environ, PYTHONPATH=str(package))
    return subprocess.run([sys.executable, *args], cwd=package, env=env, capture_output=True,
                          text=True)


@pytest.mark.slow  # the debug build takes a compile of its own
def test_the_debug_build_is_what_runs(debug_package):
    out = run_on(debug_package, "-c", "from micrograd_cy import engine; "
                                      "print(engine.__file__, engine._DEBUG)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(debug_package / "micrograd_cy" / Path(out.stdout.split()[0]).name),
                                  "True"]


@pytest.mark.slow
@pytest.mark.torch  # test_ops_torch.py runs there
def test_the_fuzzers_pass_on_the_debug_build(debug_package):
    tests = [str(ROOT / "tests" / name) for name in ON_DEBUG]
    out = run_on(debug_package, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                 "--rootdir", str(ROOT), *tests)
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and " failed" not in out.stdout
