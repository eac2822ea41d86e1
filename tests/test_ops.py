"""Every op of the Op enum has each thing an op needs (docs/architecture.md: "Adding an op").

The test iterates engine.Op, the enum the engine compiles, and for each op builds a node,
backpropagates and replays it against PyTorch float64: a missing line in a dispatcher shows
as a wrong number, and the failure names the op and the place to add it.
"""
import ast
from pathlib import Path

import pytest

from conftest import close
from micrograd_cy import Value, engine
from op_table import OPS, UNARY

pytestmark = pytest.mark.torch
STUB = Path(engine.__file__).resolve().parent / "engine.pyi"


def _stubbed_methods():
    tree = ast.parse(STUB.read_text())
    value = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Value")
    return {n.name for n in value.body if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("op", list(engine.Op), ids=lambda op: op.name)
def test_every_op_has_its_rules_method_stub_name_and_oracle_row(op, torch):
    where = f"Op.{op.name}"
    assert op.name in OPS, f"{where} has no row in tests/op_table.py's OPS"
    row = OPS[op.name]
    assert engine._OP_NAMES.get(int(op)) is not None, f"{where}: no name in ops.pxi's _OP_NAMES"
    if row.ours is None:
        return  # not built by an op: its own tests (named in the row) check it
    unary = UNARY.get(row.shows)
    if unary is not None and unary.method is not None:
        assert hasattr(Value, unary.method), f"{where}: no method Value.{unary.method} (engine.pyx)"
        assert unary.method in _stubbed_methods(), f"{where}: no line for {unary.method} in engine.pyi"

    first, then = row.at
    leaves = [Value(x) for x in first]
    out = row.ours(leaves)
    assert out._op.startswith(row.shows), f"{where}: its nodes show {out._op!r}, not {row.shows!r}"

    def oracle(xs):
        tensors = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
        ref = (row.theirs or row.ours)(tensors)
        ref.backward()
        return ref.item(), [0.0 if t.grad is None else t.grad.item() for t in tensors]

    data, grads = oracle(first)
    assert close(out.data, data), \
        f"{where}: built as {out.data}, PyTorch {data}: its _fwd rule, or no line for it in ops.pxi's _eval1/_eval2?"
    out.backward()
    for leaf, g in zip(leaves, grads):
        assert close(leaf.grad, g), \
            f"{where}: grad {leaf.grad}, PyTorch {g}: no line for it in ops.pxi's _backprop?"
    for leaf, x in zip(leaves, then):
        leaf.data, leaf.grad = x, 0.0
    out.forward()
    data, grads = oracle(then)
    assert close(out.data, data), \
        f"{where}: forward() gave {out.data}, PyTorch {data}: no line for it in ops.pxi's _eval1/_eval2/_eval?"
    out.backward()
    for leaf, g in zip(leaves, grads):
        assert close(leaf.grad, g), f"{where}: grad after forward() {leaf.grad}, PyTorch {g}"


def test_the_table_names_only_ops_the_engine_has():
    assert set(OPS) == {op.name for op in engine.Op}, set(OPS) ^ {op.name for op in engine.Op}
    shown = {row.shows for row in OPS.values()}
    assert set(UNARY) <= shown, set(UNARY) - shown


def test_an_op_shows_its_own_name_unless_micrograd_spells_it():
    micrograd = {"LEAF": "", "CUSTOM": "", "ADD": "+", "SUB": "-", "MUL": "*", "DIV": "/",
                 "POW": "**", "POWV": "**", "RELU": "ReLU", "GIVEN": "", "NET": "mlp"}
    for op in engine.Op:
        assert engine._OP_NAMES[int(op)] == micrograd.get(op.name, op.name.lower()), op.name
