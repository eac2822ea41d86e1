"""Run the engine under valgrind memcheck and fail on any memory error that is ours.

    python tools/memcheck.py [--scale N] [--rows]

Runs tools/memcheck_workload.py (every public path of the engine, errors, deep and wide
graphs, training, pickling) with PYTHONMALLOC=malloc under valgrind memcheck, and reads
valgrind's XML report. It fails (exit 1) on:
  - any invalid read, write or free, or overlapping copy, anywhere;
  - any definite leak (on CPython 3.12+: any with a frame in the engine that was not
    allocated unmarshalling an imported module's code, since those versions leave their
    interned strings allocated at exit);
  - any other report (an uninitialised value) with a frame, or an origin, in the engine.
CPython's own uninitialised-value reports (int.from_bytes on bytes from the getrandom
syscall, which this valgrind does not model) are listed but do not fail the run.

--rows runs tools/memcheck_rows.py instead (the rows' program: Value.backward_rows, evaluate,
gather), which imports numpy: numpy's start-up reports invalid reads in the dynamic loader and
definite leaks of its own, so that run fails on every report with a frame in the engine, of
any kind, and lists the others.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ALWAYS_FATAL = {"InvalidRead", "InvalidWrite", "InvalidFree", "MismatchedFree", "Overlap",
                "InvalidJump", "InvalidMemPool", "Leak_DefinitelyLost", "SyscallParam"}


def ours(error):
    """Whether a frame of the error (or of its origin) lies in the engine."""
    for frame in error.iter("frame"):
        where = " ".join((frame.findtext(tag) or "") for tag in ("obj", "file", "fn"))
        if "micrograd_cy" in where or "engine.c" in where or "engine.pyx" in where:
            return True
    return False


def unmarshalled(error):
    """Whether the block was allocated while unmarshalling a module's code (an import): the
    interned strings CPython 3.12+ keeps to the end, whoever asked for the import (the
    engine's module init imports numbers, so its frame can lie below)."""
    return any(frame.findtext("fn") == "r_object" for frame in error.iter("frame"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="workload size (default 1)")
    parser.add_argument("--rows", action="store_true",
                        help="the rows' program's workload (imports numpy)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("memcheck: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "memcheck.xml")
        cmd = ["valgrind", "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite",
               "--track-origins=yes", "--num-callers=40", "--xml=yes", f"--xml-file={report}",
               sys.executable,
               os.path.join(HERE, "memcheck_rows.py" if args.rows else "memcheck_workload.py")]
        env = dict(os.environ, PYTHONMALLOC="malloc", MEMCHECK_SCALE=str(args.scale))
        run = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if run.returncode != 0 or "workload done" not in run.stdout:
            print(f"memcheck: the workload failed (exit {run.returncode}):\n{run.stderr[-3000:]}",
                  file=sys.stderr)
            return 1
        errors = ET.parse(report).getroot().findall("error")
    fatal, tolerated = [], []
    for e in errors:
        kind = e.findtext("kind")
        if args.rows:
            (fatal if ours(e) else tolerated).append(e)
            continue
        if kind == "Leak_DefinitelyLost" and sys.version_info >= (3, 12) and \
                (not ours(e) or unmarshalled(e)):
            # CPython 3.12+ no longer frees its interned strings at exit: valgrind reports
            # each as definitely lost, allocated by the interpreter with no engine frame, or
            # by unmarshalling a module the engine's init imports
            tolerated.append(e)
            continue
        (fatal if kind in ALWAYS_FATAL or ours(e) else tolerated).append(e)
    for e in fatal:
        what = e.findtext("what") or e.findtext("xwhat/text")
        top = [f.findtext("fn") or "?" for f in e.iter("frame")][:8]
        print(f"memcheck: {e.findtext('kind')}: {what}\n    at {' <- '.join(top)}")
    print(f"memcheck: {len(errors)} reports; {len(fatal)} ours or fatal, "
          f"{len(tolerated)} {'numpy' if args.rows else 'CPython'}-internal reports tolerated")
    return 1 if fatal else 0


if __name__ == "__main__":
    sys.exit(main())
