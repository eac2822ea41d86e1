"""The per-node loops stay pure C: Cython's annotation scores each of their lines 0.

Regions between "# kernel: begin" and "# kernel: end" in the engine's sources (engine.pyx
and the .pxi files it includes) are the forward and backward kernels and the loops that
run them once per node. A line there that touches the Python C-API (a refcount, an object
conversion, an exception check) gets a score above zero in `cython -a`, and this test
names it.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "micrograd_cy"
SOURCES = [PACKAGE / "engine.pyx"] + sorted(PACKAGE.glob("*.pxi"))


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
def annotated(tmp_path_factory):
    """A directory where `cython -a` has compiled the engine: engine.c and one page a file.
    It is a package of the engine's name, so that Cython names the C functions as the build."""
    pytest.importorskip("Cython")
    out = tmp_path_factory.mktemp("annotate") / "micrograd_cy"
    out.mkdir()
    (out / "__init__.py").write_text("")
    for path in SOURCES + [PACKAGE / "engine.pxd"]:  # compiled beside its .pxd, as the build does
        (out / path.name).write_text(path.read_text())
    subprocess.run([sys.executable, "-m", "cython", "-a", str(out / "engine.pyx")],
                   check=True, capture_output=True)
    return out


def test_the_c_names_the_engine_gives_attributes_are_cythons(annotated):
    """ops.pxi forces _eval, _backprop's adding copy and the chain rules' dispatch (_grad1,
    _grad2) inline, and build.pxi _binary, by their C names (a C declaration
    Cython cannot write): were Cython to name either otherwise, or to change its signature,
    the attribute would silently stop applying."""
    c = (annotated / "engine.c").read_text()
    value = "struct __pyx_obj_12micrograd_cy_6engine_Value *"
    declared = re.findall(r"static CYTHON_INLINE (?:int |void |struct \w+ \*)(\w+)\(([^)]*)\) "
                          r"__attribute__\(\(always_inline\)\)", c)
    adding = "struct __pyx_t_12micrograd_cy_6engine__Adding *"
    walking = "struct __pyx_t_12micrograd_cy_6engine__Walking *"
    assert declared == [("__pyx_f_12micrograd_cy_6engine__eval", "PyObject *"),
                        ("__pyx_fuse_0__pyx_f_12micrograd_cy_6engine__backprop",
                         f"PyObject *, {adding}"),
                        *[(f"__pyx_fuse_{k}__pyx_f_12micrograd_cy_6engine__{rule}",
                           f"PyObject *, unsigned char, double, {mode}")
                          for rule in ("unary_bwd", "binary_bwd")
                          for k, mode in enumerate((adding, walking))],
                        ("__pyx_f_12micrograd_cy_6engine__eval1",
                         "unsigned char, double, double, double *"),
                        ("__pyx_f_12micrograd_cy_6engine__eval2",
                         "unsigned char, double, double, double *"),
                        ("__pyx_f_12micrograd_cy_6engine__grad1",
                         "unsigned char, double, double, double, double, double *"),
                        ("__pyx_f_12micrograd_cy_6engine__grad2",
                         "unsigned char, double, double, double, double, double *, double *"),
                        ("__pyx_f_12micrograd_cy_6engine__binary",
                         f"unsigned char, {value}, {value}")]
    assert ("static CYTHON_INLINE void __pyx_fuse_0__pyx_f_12micrograd_cy_6engine__backprop("
            f"PyObject *__pyx_v_node, {adding}__pyx_v_m) {{") in c
    assert "static CYTHON_INLINE int __pyx_f_12micrograd_cy_6engine__eval(PyObject *__pyx_v_node) {" in c
    for rule in ("eval1", "eval2", "grad1", "grad2"):
        assert f"static CYTHON_INLINE int __pyx_f_12micrograd_cy_6engine__{rule}(unsigned char " \
               "__pyx_v_op, double __pyx_v_x," in c
    assert (f"static CYTHON_INLINE {value}__pyx_f_12micrograd_cy_6engine__binary(unsigned char "
            f"__pyx_v_op, {value}__pyx_v_a, {value}__pyx_v_b) {{") in c


@pytest.fixture(scope="module")
def scores(annotated):
    """{source file name: {line: score}}; Cython writes one page per included file."""
    out = annotated
    pages = {}
    for path in SOURCES:
        annotated = (out / path.with_suffix(".html").name).read_text()
        pages[path.name] = {int(line): int(score) for score, line in re.findall(
            r'<pre class="cython line score-(\d+)"[^>\n]*>[^\n]*?<span class="">(\d+)</span>:',
            annotated)}
    return pages


def test_kernel_regions_exist():
    text = "\n".join(line for path in SOURCES for n, line in enumerate(path.read_text().splitlines(), 1)
                     if n in kernel_lines(path.read_text()))
    for name in ["cdef inline int _eval(", "cdef inline void _backprop(", "cdef inline int _eval2(", "while sp:",
                 "cdef inline void _give(", "_backprop(topo[i], ", "_backprop(node, &walk)",
                 "cdef inline PyObject* _next_reached(", "cdef inline int _mul_d(",
                 "cdef inline int _dot_fwd(", "err = _eval(topo[i])",
                 "cdef inline void _step_fwd(", "cdef inline void _step_bwd(",
                 "cdef inline void _dot_bwd_lanes(", "_step_fwd(&p.steps[i], X, W, E)",
                 "_stash(node, code, saved, grads, &ns)", "cdef inline void _fold_one("]:
        assert name in text, f"{name} is not inside a kernel region"


def test_kernels_do_not_touch_python(scores):
    dirty = []
    for path in SOURCES:
        source = path.read_text().splitlines()
        lines = kernel_lines(path.read_text())
        assert lines <= scores[path.name].keys(), path.name
        dirty += [f"{path.name}:{n}: score {scores[path.name][n]}: {source[n - 1].strip()}"
                  for n in sorted(lines) if scores[path.name][n] > 0]
    assert not dirty, "kernel lines interact with Python:\n" + "\n".join(dirty)


def test_the_guard_can_fail(scores):
    # lines outside the kernels that build Python objects do score above zero
    path = PACKAGE / "order.pxi"
    source = path.read_text().splitlines()
    raising = [n for n, line in enumerate(source, 1) if 'raise MemoryError("out of memory' in line]
    assert raising and all(scores[path.name][n] > 0 for n in raising)
