"""A newcomer's machine: the test command works where the optional programs are missing."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_memcheck_test_skips_with_its_reason_where_valgrind_is_missing(tmp_path):
    # a PATH that holds this Python and nothing else: no valgrind, no dot
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = dict(os.environ, PATH=str(bin_dir))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-q", "-m", "not torch",
         str(ROOT / "tests" / "test_reliability.py") + "::test_valgrind_memcheck_is_clean"],
        cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout and "valgrind is not installed" in run.stdout, run.stdout


def test_python_m_from_the_clone_runs_or_says_in_one_line_what_to_type():
    # in the clone after the quick start (an in-place build) it runs; where the engine was
    # installed elsewhere and the clone's folder is unbuilt, it says what to type
    out = subprocess.run([sys.executable, "-m", "micrograd_cy", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    if out.returncode == 0:
        assert "usage: micrograd-cy" in out.stdout
    else:
        assert out.stderr.strip().count("\n") == 0 and "pip install -e ." in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


NO_TORCH = "import sys; sys.modules['torch'] = None; import pytest; sys.exit(pytest.main(sys.argv[1:]))"


def test_without_pytorch_the_suite_stops_unless_told_to_leave_its_tests_out(tmp_path):
    # the other Pythons have no PyTorch wheel: nox runs them with -m "not torch"; without the
    # flag a missing oracle is an error, never a quietly smaller suite
    graph = str(ROOT / "tests" / "test_graph.py")
    common = [sys.executable, "-c", NO_TORCH, "-p", "no:cacheprovider", "-q", "--rootdir", str(ROOT)]
    stopped = subprocess.run([*common, graph], cwd=tmp_path, capture_output=True, text=True)
    assert stopped.returncode == 4, stopped.stdout + stopped.stderr
    assert "-m \"not torch\"" in stopped.stderr and "PyTorch" in stopped.stderr
    ran = subprocess.run([*common, "-m", "not torch", graph], cwd=tmp_path, capture_output=True,
                         text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert " passed" in ran.stdout and "2 deselected" in ran.stdout, ran.stdout
    listed = subprocess.run([*common, "-m", "not torch", "--co", str(ROOT / "tests")],
                            cwd=tmp_path, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "test_ops_torch.py" not in listed.stdout and "test_packaging.py" in listed.stdout
