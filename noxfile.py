"""Every supported Python (requires-python says 3.9+): `nox` builds and installs the package
on each CPython from 3.9 to 3.13 found on this machine and runs the tests there.

PyTorch, the tests' oracle, is installed on TORCH_PYTHON only (pyproject.toml pins its CPU
build, which has a wheel there): that session runs the default selection (pyproject.toml's
-m "not slow"), the others the same less the tests that need PyTorch (-m "not torch and (not
slow)"); .ci/run runs the slow tests once, before nox. A Python that is not on the machine is
skipped, and nox says so ("Python interpreter 3.x not found"). `nox -s "tests-3.12"` runs one;
arguments after `--` go to pytest (`nox -- -m slow`).
"""
import os

import nox

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
TORCH_PYTHON = "3.11"

nox.options.sessions = ["tests"]
nox.options.error_on_missing_interpreters = False

# pyenv's shims answer for the versions it has activated only; each version's own bin
# folder answers for itself, so nox finds every pythonX.Y that pyenv installed
_pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
_bins = [os.path.join(_pyenv, "versions", v, "bin")
         for v in sorted(os.listdir(os.path.join(_pyenv, "versions")))] \
    if os.path.isdir(os.path.join(_pyenv, "versions")) else []
os.environ["PATH"] = os.pathsep.join([*_bins, os.environ.get("PATH", "")])


@nox.session(python=PYTHONS)
def tests(session):
    """Build and install the package and run the default tests, less -m "not torch" off TORCH_PYTHON."""
    with_torch = session.python == TORCH_PYTHON
    session.install(".[test]" if with_torch else ".[test-core]")
    args = list(session.posargs)
    if not with_torch:  # one -m: pytest keeps only the last, replacing pyproject's "not slow"
        expr = args.pop(args.index("-m") + 1) if "-m" in args else "not slow"
        if "-m" in args:
            args.remove("-m")
        args = ["-m", f"not torch and ({expr})", *args]
    session.run("pytest", "-p", "no:cacheprovider", *args)
