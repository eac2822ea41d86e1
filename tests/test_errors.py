"""Bad input gets a clear Python exception and changes nothing; forward raises where Python does."""
import math
from fractions import Fraction

import numpy as np
import pytest

from micrograd_cy import Value


@pytest.mark.parametrize("bad,name", [("abc", "str"), (None, "NoneType"), (1j, "complex"),
                                      ([1.0], "list"), (Value(1.0), "Value")])
def test_constructor_rejects_non_reals_naming_the_type(bad, name):
    with pytest.raises(TypeError, match=repr(name)):
        Value(bad)


@pytest.mark.parametrize("good", [3, 2.5, True, np.float64(1.5), np.float32(0.25), np.int64(-7),
                                  np.int8(3), Fraction(1, 4), float("nan"), float("inf")])
def test_any_real_number_is_data(good):
    v = Value(good)
    assert type(v.data) is float
    assert v.data == float(good) or (math.isnan(v.data) and math.isnan(float(good)))


def test_int_too_large_for_a_double():
    with pytest.raises(OverflowError):
        Value(10**400)


@pytest.mark.parametrize("other", ["abc", None, 1j, [1.0], {}, object()])
@pytest.mark.parametrize("op", ["+", "-", "*", "/", "**"])
def test_operators_reject_non_numbers_and_leave_operands_alone(op, other):
    v = Value(2.0)
    with pytest.raises(TypeError):
        eval(f"v {op} other")
    with pytest.raises(TypeError):
        eval(f"other {op} v")
    assert v.data == 2.0 and v.grad == 0.0 and v._prev == set()


def test_numpy_scalars_on_the_left_give_values():
    v = Value(2.0)
    for s in [np.int64(3), np.float64(3.0), np.float32(3.0)]:
        for out in [s * v, s + v, s - v, s / v, s ** v]:
            assert type(out) is Value
    assert (np.int64(-1) * v).data == -2.0  # micrograd's demo: -yi*scorei


@pytest.mark.parametrize("expr,exc,py", [
    ("Value(1) / 0", ZeroDivisionError, "1.0 / 0.0"),
    ("Value(1) / Value(0)", ZeroDivisionError, "1.0 / 0.0"),
    ("1 / Value(0.0)", ZeroDivisionError, "1.0 / 0.0"),
    ("Value(0.0) ** -1", ZeroDivisionError, "0.0 ** -1"),
    ("Value(1000.0).exp()", OverflowError, "math.exp(1000.0)"),
    ("Value(10.0) ** 400", OverflowError, "10.0 ** 400"),
    ("Value(-1.0).log()", ValueError, "math.log(-1.0)"),
    ("Value(0.0).log()", ValueError, "math.log(0.0)"),
])
def test_forward_raises_where_python_raises(expr, exc, py):
    with pytest.raises(exc):
        eval(py)
    with pytest.raises(exc):
        eval(expr)


def test_negative_base_to_fractional_power_is_refused():
    # Python would return a complex number, which a Value cannot hold
    with pytest.raises(ValueError, match="complex"):
        Value(-8.0) ** (1 / 3)


@pytest.mark.parametrize("x", [0.0, -0.0, 1.0, -1.5, 2.0, 1e-300, 1e300, math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("y", [0.0, 1.0, -1.0, 2.0, 3.0, 0.5, -2.5, 1e10, math.inf, -math.inf, math.nan])
def test_pow_matches_python_float_pow(x, y):
    try:
        expected = x ** y
    except (ZeroDivisionError, OverflowError) as e:
        with pytest.raises(type(e)):
            Value(x) ** y
        return
    if isinstance(expected, complex):
        with pytest.raises(ValueError):
            Value(x) ** y
        return
    got = (Value(x) ** y).data
    assert got == expected or (math.isnan(got) and math.isnan(expected)), (x, y, got, expected)


@pytest.mark.parametrize("fn", ["exp", "log", "tanh"])
@pytest.mark.parametrize("x", [0.0, -0.0, 1.0, -1.0, 700.0, 710.0, -750.0, math.inf, -math.inf, math.nan])
def test_unary_ops_match_the_math_module(fn, x):
    try:
        expected = getattr(math, fn)(x)
    except (ValueError, OverflowError) as e:
        with pytest.raises(type(e)):
            getattr(Value(x), fn)()
        return
    got = getattr(Value(x), fn)().data
    assert got == expected or (math.isnan(got) and math.isnan(expected))


@pytest.mark.parametrize("x,y", [(1.0, 0.1), (1e308, 1e308), (math.inf, 1.0), (math.nan, 2.0), (-0.0, 2.0), (0.0, -0.0)])
def test_arithmetic_matches_python_floats(x, y):
    for op in ["+", "-", "*"] + (["/"] if y else []):
        expected = eval(f"x {op} y")
        got = eval(f"Value(x) {op} Value(y)").data
        assert got == expected or (math.isnan(got) and math.isnan(expected))


@pytest.mark.parametrize("build,x,grad", [
    (lambda a: a ** 0.5, 0.0, math.inf),
    (lambda a: a ** 0, 0.0, 0.0),
    (lambda a: a ** -0.5, math.inf, -0.0),
    (lambda a: 2 ** a, -math.inf, 0.0),
    (lambda a: a.log(), 5e-324, math.inf),
    (lambda a: a * math.inf, 1.0, math.inf),
    (lambda a: a * 0 * math.inf, 1.0, math.nan),
    (lambda a: a.tanh(), math.nan, math.nan),
])
def test_backward_never_raises(build, x, grad):
    a = Value(x)
    build(a).backward()  # infinite or undefined derivatives give inf/nan, as in PyTorch
    assert a.grad == grad or (math.isnan(a.grad) and math.isnan(grad))


def test_data_and_grad_setters_check_types():
    v = Value(1.0)
    with pytest.raises(TypeError):
        v.data = "abc"
    with pytest.raises(TypeError):
        v.grad = None
    v.data = np.int64(4)
    v.grad = 2
    assert (v.data, v.grad) == (4.0, 2.0) and type(v.grad) is float


def test_constructor_keywords_are_checked():
    with pytest.raises(TypeError):
        Value(1.0, _children=(1, 2))
    with pytest.raises(TypeError):
        Value(1.0, _children=5)
    with pytest.raises(TypeError):
        Value(1.0, _op=3)
    with pytest.raises(TypeError):
        Value(1.0, label=3)
    v = Value(1.0)
    with pytest.raises(RuntimeError):
        v.__init__(5.0)
    assert v.data == 1.0


def test_fused_ops_check_their_arguments():
    w = [Value(1.0), Value(2.0)]
    with pytest.raises(ValueError, match="as many weights as inputs"):
        Value.dot(w, [1.0])
    with pytest.raises(TypeError):
        Value.dot(w, [1.0, "x"])
    with pytest.raises(TypeError):
        Value.sum(5)
    with pytest.raises(TypeError):
        Value.sum([Value(1.0), None])
    assert [v.grad for v in w] == [0.0, 0.0]


def test_errors_leave_the_engine_usable():
    a = Value(2.0)
    for bad in [lambda: a / 0, lambda: (a - 3).log(), lambda: (a * 1000).exp(), lambda: a + "x"]:
        with pytest.raises((ZeroDivisionError, ValueError, OverflowError, TypeError)):
            bad()
    out = a * a + a
    out.backward()
    assert (out.data, a.grad) == (6.0, 5.0)


def test_matvec_checks_its_arguments():
    W = [[Value(1.0), Value(2.0)], [Value(3.0), Value(4.0)]]
    with pytest.raises(ValueError, match="one bias per row"):
        Value.matvec(W, [1.0, 2.0], [Value(0.0)])
    with pytest.raises(ValueError, match="as many weights as inputs"):
        Value.matvec(W, [1.0])
    with pytest.raises(TypeError):
        Value.matvec(W, [1.0, "x"])
    with pytest.raises(TypeError):
        Value.matvec([Value(1.0)], [1.0])  # a row must be a sequence


@pytest.mark.parametrize("op,x", [("sin", math.inf), ("sin", -math.inf), ("cos", math.inf),
                                  ("cos", -math.inf), ("sqrt", -1e-300), ("sqrt", -math.inf)])
def test_the_math_ops_raise_where_python_math_raises(op, x):
    with pytest.raises(ValueError) as theirs:
        getattr(math, op)(x)
    with pytest.raises(ValueError, match=str(theirs.value)):
        getattr(Value(x), op)()
    a = Value(0.5)
    out = getattr(a, op)()
    a.data = x  # forward() raises the same, and leaves the graph usable
    with pytest.raises(ValueError, match=str(theirs.value)):
        out.forward()
    a.data = 0.25
    assert out.forward().data == getattr(math, op)(0.25)


@pytest.mark.parametrize("op", ["sin", "cos", "sqrt"])
def test_the_math_ops_pass_nan_through(op):
    a = Value(math.nan)
    out = getattr(a, op)()
    out.backward()
    assert math.isnan(out.data) and math.isnan(a.grad)
