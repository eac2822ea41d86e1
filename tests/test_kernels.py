"""The per-node loops stay pure C: Cython's annotation scores each of their lines 0.

Regions between "# kernel: begin" and "# kernel: end" in engine.pyx are the forward and
backward kernels and the loops that run them once per node. A line there that touches
the Python C-API (a refcount, an object conversion, an exception check) gets a score
above zero in `cython -a`, and this test names it.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

PYX = Path(__file__).resolve().parents[1] / "micrograd_cy" / "engine.pyx"


def kernel_lines(source):
    lines, inside = set(), False
    for number, line in enumerate(source.splitlines(), 1):
        if "# kernel: begin" in line:
            inside = True
        elif "# kernel: end" in line:
            inside = False
        elif inside and line.strip() and not line.strip().startswith("#"):
            lines.add(number)
    return lines


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    pytest.importorskip("Cython")
    out = tmp_path_factory.mktemp("annotate")
    # compiled beside its .pxd, as the build does
    for name in ["engine.pyx", "engine.pxd"]:
        (out / name).write_text((PYX.parent / name).read_text())
    subprocess.run([sys.executable, "-m", "cython", "-a", str(out / "engine.pyx")],
                   check=True, capture_output=True)
    annotated = (out / "engine.html").read_text()
    return {int(line): int(score) for score, line in re.findall(
        r'<pre class="cython line score-(\d+)"[^>\n]*>[^\n]*?<span class="">(\d+)</span>:', annotated)}


def test_kernel_regions_exist():
    lines = kernel_lines(PYX.read_text())
    source = PYX.read_text().splitlines()
    text = "\n".join(source[n - 1] for n in sorted(lines))
    for name in ["cdef int _eval(", "cdef inline void _backprop(", "cdef inline int _eval2(", "while sp:",
                 "cdef inline void _give(", "_backprop(topo[i], ", "_backprop(node, &walk)",
                 "cdef inline PyObject* _next_reached(",
                 "err = _eval(topo[i])"]:
        assert name in text, f"{name} is not inside a kernel region"


def test_kernels_do_not_touch_python(scores):
    source = PYX.read_text().splitlines()
    lines = kernel_lines(PYX.read_text())
    assert lines <= scores.keys()
    dirty = [f"engine.pyx:{n}: score {scores[n]}: {source[n - 1].strip()}"
             for n in sorted(lines) if scores[n] > 0]
    assert not dirty, "kernel lines interact with Python:\n" + "\n".join(dirty)


def test_the_guard_can_fail(scores):
    # lines outside the kernels that build Python objects do score above zero
    source = PYX.read_text().splitlines()
    raising = [n for n, line in enumerate(source, 1) if 'raise MemoryError("out of memory' in line]
    assert raising and all(scores[n] > 0 for n in raising)
