"""What code written against micrograd expects of a Value, in the cases another drop-in
(engine.c, a C rewrite of micrograd's engine) checks its own with: the constructor's
`Value(data, _children, _op)` forms, the attribute types every node shows, and each op's
gradient on small numbers, with int leaves too, against PyTorch float64, exactly."""
import pytest

from micrograd_cy import Value


def micrograd_shape(v):
    """What a micrograd user's code reads off any node, before and after backward()."""
    assert type(v.data) is float and type(v.grad) is float
    assert v.backward() is None and type(v.grad) is float
    assert type(v._prev) is set and type(v._op) is str
    assert all(type(child) is Value for child in v._prev)


def test_the_constructor_takes_micrograds_arguments_by_position_and_by_name():
    a, b = Value(1), Value(2)
    by_position = Value(3, (a, b), "op")
    by_name = Value(3, _children=(a, b), _op="op")
    for v in (by_position, by_name):
        assert (v.data, v._prev, v._op) == (3.0, {a, b}, "op")
        micrograd_shape(v)
    only_op = Value(42, _op="Operation")  # a leaf may carry an op name, as in micrograd
    assert (only_op.data, only_op._prev, only_op._op) == (42.0, set(), "Operation")
    micrograd_shape(only_op)
    leaf = Value(42)
    assert (leaf._prev, leaf._op) == (set(), "")
    micrograd_shape(leaf)


def test_data_and_grad_take_ints_and_floats_and_read_back_floats():
    v = Value(0.5)
    for number in (100, 100.0, -7, 2**53):
        v.data = number
        v.grad = number
        assert v.data == number and v.grad == number
        assert type(v.data) is float and type(v.grad) is float
    micrograd_shape(v)


# Each case: its leaves (ints where micrograd code passes ints) and the expression, written
# once and run on Values and on PyTorch float64 tensors alike.
CASES = {
    "a + b": ((1, 2), lambda a, b: a + b),
    "a + b, b negative": ((1, -1), lambda a, b: a + b),
    "a + int": ((1,), lambda a: a + 1),
    "a + float": ((1,), lambda a: a + 1.0),
    "int + a": ((1,), lambda a: 1 + a),
    "float + a": ((1,), lambda a: 1.0 + a),
    "a + a": ((1.0,), lambda a: a + a),
    "a - b": ((1.0, 2), lambda a, b: a - b),
    "float - a": ((2,), lambda a: 1.0 - a),
    "a * b": ((1, 2.0), lambda a, b: a * b),
    "float * a": ((1.0,), lambda a: 2.0 * a),
    "a / b": ((1, 2.0), lambda a, b: a / b),
    "int / a": ((2.0,), lambda a: 1 / a),
    "-a": ((2.0,), lambda a: -a),
    "a ** 2": ((2.0,), lambda a: a ** 2),
    "relu, positive": ((2.0,), lambda a: a.relu()),
    "relu, negative": ((-2.0,), lambda a: a.relu()),
    # micrograd's test_engine.py sanity check, built up a line at a time
    "z = 2x + 2 + x": ((-4.0,), lambda x: 2 * x + 2 + x),
    "q = relu(z) + z x": ((-4.0,), lambda x: (2 * x + 2 + x).relu() + (2 * x + 2 + x) * x),
    "y = relu(z z) + q + q x": ((-4.0,), lambda x: sanity_y(x)),
}


def sanity_y(x):
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    return h + q + q * x


@pytest.mark.parametrize("case", CASES)
def test_each_case_gives_pytorchs_value_and_gradients_exactly(case, torch):
    leaves, expression = CASES[case]
    ours = [Value(x) for x in leaves]
    theirs = [torch.tensor(float(x), dtype=torch.float64, requires_grad=True) for x in leaves]
    out, ref = expression(*ours), expression(*theirs)
    micrograd_shape(out)  # backward() among its checks
    ref.backward()
    assert out.data == ref.item(), (out.data, ref.item())
    assert [v.grad for v in ours] == [t.grad.item() for t in theirs]

