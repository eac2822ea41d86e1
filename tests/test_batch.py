"""Value.evaluate: a graph built once, evaluated on many rows of inputs in one call."""
import math
import numbers
import random

import numpy as np
import pytest

from conftest import close, run_probe
from micrograd_cy import Value, nn
from micrograd_cy.engine import _check_invariants


def model_and_graph(sizes=(16, 16, 1), nin=2, seed=3):
    random.seed(seed)
    model = nn.MLP(nin, list(sizes))
    x = [Value(0.0) for _ in range(nin)]
    return model, x, model(x)


def rows(n, k=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-2.0, 2.0, size=(n, k))


def test_each_row_equals_forward_on_that_row_bit_for_bit():
    model, x, out = model_and_graph()
    grid = rows(300)
    got = Value.evaluate(out, x, grid)
    assert got.shape == (300,)
    for r, row in enumerate(grid):
        for leaf, v in zip(x, row):
            leaf.data = float(v)
        assert out.forward().data == got[r]
        assert model(row.tolist()).data == got[r]  # and a graph built for the row


def test_several_outputs_give_a_column_each_and_lists_work_as_rows():
    model, x, outs = model_and_graph((5, 3))
    grid = rows(40).tolist()
    got = Value.evaluate(outs, x, grid)
    assert got.shape == (40, 3)
    for r, row in enumerate(grid):
        assert [o.data for o in model(row)] == got[r].tolist()
    # one input: a row may be a bare number
    a = Value(0.0)
    y = (a * a).tanh() + a.exp()
    assert Value.evaluate(y, [a], [0.5, -1.0]).tolist() == [
        math.tanh(0.25) + math.exp(0.5), math.tanh(1.0) + math.exp(-1.0)]
    assert Value.evaluate(y, a, [[0.5]]).shape == (1,)  # inputs may be one Value


def test_evaluate_follows_pytorch_on_a_batch(torch):
    model, x, out = model_and_graph()
    grid = rows(500, seed=7)
    got = Value.evaluate(out, x, grid)
    h = torch.tensor(grid, dtype=torch.float64)
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            W = torch.tensor([[p.data for p in n.w] for n in layer.neurons], dtype=torch.float64)
            b = torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64)
            h = h @ W.T + b
            if i < len(model.layers) - 1:
                h = torch.relu(h)
    ref = h[:, 0].numpy()
    assert all(close(g, r) for g, r in zip(got, ref)), np.abs(got - ref).max()


def test_the_graph_is_left_as_forward_leaves_it():
    model, x, out = model_and_graph()
    x[0].data, x[1].data = 0.3, -0.7
    out.forward()
    before = out.data
    for p in model.parameters():
        p.grad = 1.5
    out.backward()
    leaf_grads = [p.grad for p in model.parameters()]
    Value.evaluate(out, x, rows(50))
    assert (x[0].data, x[1].data) == (0.3, -0.7) and out.data == before
    assert [p.grad for p in model.parameters()] == leaf_grads  # leaves keep theirs
    assert out.grad == 0.0  # interior grads restart, as after forward()
    out.backward()
    assert [p.grad for p in model.parameters()] != leaf_grads
    assert _check_invariants() is None


def test_an_empty_batch_gives_an_empty_array():
    model, x, out = model_and_graph((3, 2))
    assert Value.evaluate(out, x, []).shape == (0, 2)
    assert Value.evaluate(out[0], x, np.empty((0, 2))).shape == (0,)


@pytest.mark.parametrize("rows", [
    lambda: ([r, r + 1.0] for r in range(4)),          # a generator of lists
    lambda: map(lambda r: (r, r + 1.0), range(4)),     # a map of tuples
    lambda: [map(float, (r, r + 1)) for r in range(4)],  # a list of maps
    lambda: (iter((r, r + 1.0)) for r in range(4)),    # a generator of iterators
])
def test_any_iterable_of_rows_of_numbers_is_taken(rows):
    model, x, out = model_and_graph((4, 1))
    want = Value.evaluate(out, x, [[r, r + 1.0] for r in range(4)])
    assert np.array_equal(Value.evaluate(out, x, rows()), want)


@pytest.mark.parametrize("bad, error, match", [
    ([[1.0, 2.0, 3.0]], ValueError, "rows of 2 numbers"),
    ([1.0, 2.0], ValueError, "rows of 2 numbers"),
    ([[1.0], [2.0, 3.0]], TypeError, "real numbers"),
    ([["a", 1.0]], TypeError, "real numbers"),
    ([[None, 1.0]], TypeError, "real numbers"),
    ([[1.0, 2.0], [float("nan"), 0.0]], ValueError, "row 1 holds NaN"),
    (np.zeros((2, 2, 2)), ValueError, "rows of 2 numbers"),
    ("12", TypeError, "real numbers"),
    ([[1 + 2j, 0.0]], TypeError, "real numbers"),
])
def test_bad_rows_get_a_clear_error(bad, error, match):
    model, x, out = model_and_graph((4, 1))
    with pytest.raises(error, match=match):
        Value.evaluate(out, x, bad)
    assert _check_invariants() is None


def test_bad_outputs_and_inputs_get_a_clear_error():
    model, x, out = model_and_graph((4, 1))
    other = Value(1.0)
    with pytest.raises(TypeError, match="outputs 0 is 'float'"):
        Value.evaluate([1.0], x, [[0.0, 0.0]])
    with pytest.raises(TypeError, match="outputs as a Value"):
        Value.evaluate(3, x, [[0.0, 0.0]])
    with pytest.raises(ValueError, match="at least one of its inputs"):
        Value.evaluate(out, [], [[]])
    with pytest.raises(TypeError, match="inputs 1 is 'int'"):
        Value.evaluate(out, [x[0], 2], [[0.0, 0.0]])
    with pytest.raises(ValueError, match="input 1 is not a leaf"):
        Value.evaluate(out, [x[0], x[1] * 2], [[0.0, 0.0]])
    with pytest.raises(ValueError, match="inputs 0 and 1 are the same Value"):
        Value.evaluate(out, [x[0], x[0]], [[0.0, 0.0]])
    with pytest.raises(ValueError, match="input 1 is not in the outputs' graph"):
        Value.evaluate(out, [x[0], other], [[0.0, 0.0]])
    given = Value(math.sin(x[0].data), (x[0],), "sin", grads=(1.0,))
    with pytest.raises(ValueError, match="cannot recompute .*grads="):
        Value.evaluate(given * out, x, [[0.0, 0.0]])
    assert _check_invariants() is None


def test_a_row_the_graph_cannot_take_names_the_row_and_leaves_the_graph_whole():
    a, b = Value(2.0), Value(1.0)
    y = (a / b).log() + b
    with pytest.raises(ValueError, match="row 2: math domain error"):
        Value.evaluate(y, [a, b], [[1.0, 1.0], [3.0, 2.0], [-1.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ZeroDivisionError, match="row 0: float division by zero"):
        Value.evaluate(y, [a, b], [[1.0, 0.0]])
    assert (a.data, b.data, y.data) == (2.0, 1.0, math.log(2.0) + 1.0)
    assert _check_invariants() is None


def test_numbers_whose_float_reenters_the_engine_cannot_break_it():
    model, x, out = model_and_graph((4, 1))

    class Sneaky:
        def __float__(self):
            Value.evaluate(out, x, [[0.1, 0.2]])  # the same graph, from inside the conversion
            (x[0] * 3.0).backward()
            return 0.25
    numbers.Real.register(Sneaky)

    got = Value.evaluate(out, x, [[Sneaky(), 0.5], [0.25, 0.5]])
    assert got[0] == got[1]
    assert _check_invariants() is None


def test_subclass_instances_can_be_the_inputs():
    class Pixel(Value):
        pass

    x = [Pixel(0.0), Pixel(0.0)]
    random.seed(5)
    model = nn.MLP(2, [3, 1])
    out = model(x)
    assert Value.evaluate(out, x, [[1.0, 2.0]])[0] == model([1.0, 2.0]).data


def test_without_numpy_it_says_what_to_install():
    out = run_probe("""
        import sys
        sys.modules["numpy"] = None  # as if not installed
        from micrograd_cy import Value
        a = Value(0.0)
        try:
            Value.evaluate(a * 2.0, [a], [[1.0]])
        except ImportError as e:
            print(e)
    """)
    assert out.strip() == "Value.evaluate() needs numpy: pip install numpy (or micrograd_cy[demo])"
