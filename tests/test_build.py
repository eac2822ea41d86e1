"""The engine that runs is the compiled one, and the package exposes micrograd's names."""
import importlib.machinery
import os
import sys

import pytest

import micrograd_cy
import micrograd_cy.engine
import micrograd_cy.nn


def test_engine_is_an_extension_module():
    path = micrograd_cy.engine.__file__
    assert path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), path
    assert isinstance(micrograd_cy.engine.__loader__, importlib.machinery.ExtensionFileLoader)


def test_value_is_a_compiled_type():
    v = micrograd_cy.Value(1.0)
    # a C struct of 64 bytes; its attributes, if it gets any, live in a side object its last
    # field points to (Python finds them through the type's dict offset)
    assert type(v).__basicsize__ == 64 and type(v).__dictoffset__ == 56 and vars(v) == {}
    assert type(vars(micrograd_cy.Value)["__init__"]).__name__ == "wrapper_descriptor"


def test_nn_uses_the_compiled_value():
    assert micrograd_cy.nn.Value is micrograd_cy.engine.Value


def test_public_names_match_upstream():
    import micrograd.engine as up_engine
    import micrograd.nn as up_nn
    for name in ["Module", "Neuron", "Layer", "MLP"]:
        assert hasattr(micrograd_cy.nn, name)
    up_value_names = {n for n in vars(up_engine.Value) if not n.startswith("__") or n in
                      {"__add__", "__mul__", "__pow__", "__neg__", "__radd__", "__sub__", "__rsub__",
                       "__rmul__", "__truediv__", "__rtruediv__", "__repr__"}}
    missing = {n for n in up_value_names if not hasattr(micrograd_cy.Value, n)}
    assert not missing
    up_module_names = {n for n in vars(up_nn.Module) if not n.startswith("_")}
    assert up_module_names <= set(dir(micrograd_cy.nn.Module))


def test_signatures_are_embedded():
    import inspect
    assert str(inspect.signature(micrograd_cy.Value)) == "(data, _children=(), _op='', label='', grads=None)"
    assert str(inspect.signature(micrograd_cy.Value.dot)) == "(weights, inputs, bias=None, relu=False)"
    assert str(inspect.signature(micrograd_cy.Value.backward)) == "(self, /)"


def test_install_as_micrograd(monkeypatch):
    for name in ["micrograd", "micrograd.engine", "micrograd.nn"]:
        monkeypatch.delitem(sys.modules, name, raising=False)
    micrograd_cy.install_as_micrograd()
    import micrograd
    from micrograd.engine import Value
    from micrograd.nn import MLP
    assert micrograd is micrograd_cy
    assert Value is micrograd_cy.Value
    assert MLP is micrograd_cy.nn.MLP
    out = MLP(2, [4, 1])([1.0, -2.0])
    assert type(out) is micrograd_cy.Value


def test_the_type_stub_matches_the_compiled_module():
    """engine.pyi (shipped with py.typed) names every public name of the compiled module and
    what each of its classes has, with the same parameters, so editors and type checkers
    see the real thing."""
    import ast
    from pathlib import Path

    from micrograd_cy import engine
    package = Path(engine.__file__).resolve().parent
    assert (package / "py.typed").exists() and (package / "engine.pyi").exists()
    tree = ast.parse((package / "engine.pyi").read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    names = set(classes) | {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    public = {name for name in vars(engine) if not name.startswith("_") and name != "numbers"}
    assert names >= public, f"not in engine.pyi: {public - names}"
    for cls in ["Value", "Net", "Optimizer", "SGD", "Adam", "AdamW"]:
        _check_stubbed_class(getattr(engine, cls), classes[cls])


def _check_stubbed_class(compiled_class, stub):
    import ast
    import inspect
    stubbed = {}
    for node in stub.body:
        if isinstance(node, ast.FunctionDef):
            args = node.args
            stubbed[node.name] = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
        elif isinstance(node, ast.AnnAssign):
            stubbed[node.target.id] = None
    compiled = {name for name in vars(compiled_class)
                if name not in ("__doc__", "__new__", "__reduce_cython__", "__setstate_cython__",
                                "__pyx_vtable__")}
    name = compiled_class.__name__
    assert set(stubbed) == compiled, (name, set(stubbed) ^ compiled)
    init = stubbed.pop("__init__", None)
    if init is not None and name == "Value":
        assert list(inspect.signature(compiled_class).parameters) == init[1:]
    for attr, params in stubbed.items():
        try:
            signature = inspect.signature(getattr(compiled_class, attr))
        except (ValueError, TypeError):
            continue  # a property, or a slot wrapper without a text signature
        if attr.startswith("__") and attr.endswith("__"):
            # a slot (__add__...): CPython names its parameters (3.13 gives them text
            # signatures, `(self, object, /)`), so only their number is ours to match;
            # one without a text signature shows (self, /, *args, **kwargs)
            if any(p.kind == p.VAR_POSITIONAL for p in signature.parameters.values()):
                continue
            assert len(signature.parameters) == len(params), (name, attr, signature, params)
            continue
        assert list(signature.parameters) == params, (name, attr, signature, params)


@pytest.mark.slow
def test_coverage_sees_inside_the_engine_on_the_tracing_build(tmp_path):
    """The README's coverage command: the tracing build, then coverage with Cython's plugin,
    reports lines of engine.pyx and the .pxi files it includes."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    pytest.importorskip("Cython")
    pytest.importorskip("coverage")
    root = Path(__file__).resolve().parents[1]
    for name in ["setup.py", "pyproject.toml", "README.md", ".coveragerc"]:
        shutil.copy(root / name, tmp_path)
    shutil.copytree(root / "micrograd_cy", tmp_path / "micrograd_cy",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "*.html", "__pycache__"))
    env = dict(os.environ, MICROGRAD_CY_TRACE="1")
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp_path,
                           env=env, capture_output=True, text=True)
    assert build.returncode == 0 and "micrograd_cy: tracing build" in build.stdout, build.stderr[-2000:]
    (tmp_path / "use.py").write_text(
        "from micrograd_cy import Value\n"
        "a = Value(2.0); b = (a * a + 1).tanh(); b.backward(); b.forward()\n")
    for args in [["run", "use.py"], ["json", "-o", "cov.json"]]:
        out = subprocess.run([sys.executable, "-m", "coverage", *args], cwd=tmp_path,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    import json
    files = json.loads((tmp_path / "cov.json").read_text())["files"]
    for name in ["engine.pyx", "ops.pxi", "order.pxi", "build.pxi", "memory.pxi"]:
        summary = files[f"micrograd_cy/{name}"]["summary"]
        assert summary["num_statements"] > 0 and summary["covered_lines"] > 0, (name, summary)
