"""Every op's value and gradient against PyTorch float64, the oracle."""
import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from conftest import close, readme_example
from micrograd_cy import Value
from op_table import UNARY

pytestmark = pytest.mark.torch


def t(x):
    return torch.tensor(float(x), dtype=torch.float64, requires_grad=True)


def check(f_ours, f_torch, *xs):
    """f applied to leaves xs in both engines: same value, same gradients."""
    ours = [Value(x) for x in xs]
    theirs = [t(x) for x in xs]
    out = f_ours(*ours)
    ref = f_torch(*theirs)
    out.backward()
    ref.backward()
    assert close(out.data, ref.item()), (out.data, ref.item())
    for o, r in zip(ours, theirs):
        g = 0.0 if r.grad is None else r.grad.item()
        assert close(o.grad, g), (xs, o.grad, g)


BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
    "pow": (lambda a, b: a ** b, lambda a, b: a ** b),
}


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("a,b", [(1.5, -2.25), (-3.0, 0.5), (0.7, 3.0), (2.0, 2.0)])
def test_binary_ops(name, a, b):
    if name == "pow" and a < 0:
        b = 3.0  # a negative base needs an integer exponent
    check(*BINARY[name], a, b)


@pytest.mark.parametrize("name,a", [(name, a) for name, row in UNARY.items() for a in row.inputs])
def test_unary_ops(name, a):
    check(UNARY[name].call, UNARY[name].call, a)  # each row's call works on tensors too


@pytest.mark.parametrize("c", [2, 3, -1, -2, 0.5, 1.5, 0, 1])
def test_pow_constant(c):
    check(lambda a: a ** c, lambda a: a ** c, 1.3)


@pytest.mark.parametrize("c", [2.0, 0.5, 3])
def test_number_to_the_power_of_value(c):
    check(lambda a: c ** a, lambda a: c ** a, 0.8)


@pytest.mark.parametrize("c", [2.5, -1.5])
def test_reflected_ops_with_constants(c):
    check(lambda a: c + a, lambda a: c + a, 1.25)
    check(lambda a: c - a, lambda a: c - a, 1.25)
    check(lambda a: c * a, lambda a: c * a, 1.25)
    check(lambda a: c / a, lambda a: c / a, 1.25)


def test_sum_and_dot_fused_nodes():
    xs = [0.3, -1.2, 2.5, 0.9, -0.4]
    check(lambda *v: Value.sum(v), lambda *v: sum(v), *xs)
    check(lambda *v: Value.dot(v[:2], v[2:4], v[4]), lambda *v: v[4] + v[0] * v[2] + v[1] * v[3], *xs)
    check(lambda *v: Value.dot(v[:2], [2.0, -3.0]), lambda *v: v[0] * 2.0 + v[1] * -3.0, *xs[:2])


def test_tanh_and_sigmoid_are_stable_everywhere():
    for x in [-1e308, -800.0, -40.0, 40.0, 800.0, 1e308]:
        check(lambda a: a.tanh(), torch.tanh, x)
        v = Value(x)
        s = v.sigmoid()
        s.backward()
        assert 0.0 <= s.data <= 1.0 and math.isfinite(v.grad)
        assert close(s.data, torch.sigmoid(torch.tensor(x, dtype=torch.float64)).item())


def test_derivative_edges_follow_pytorch():
    # x**0 at 0: gradient 0 (upstream micrograd raises ZeroDivisionError here)
    check(lambda a: a ** 0, lambda a: a ** 0, 0.0)
    check(lambda a: a ** 0.5, lambda a: a ** 0.5, 0.0)  # inf
    check(lambda a, b: a ** b, lambda a, b: a ** b, 0.0, 2.0)  # d/db at a=0 is 0
    check(lambda a, b: a ** b, lambda a, b: a ** b, -2.0, 3.0)  # d/db is nan
    check(lambda a: a.relu(), torch.relu, 0.0)
    check(lambda a: a.log(), torch.log, float("inf"))
    check(lambda a: a.sqrt(), torch.sqrt, 0.0)  # inf, as PyTorch's grad / (2 * sqrt(x))
    check(lambda a: a.sqrt(), torch.sqrt, float("inf"))
    check(lambda a: a.cos(), torch.cos, 0.0)  # -sin(0) * g: -0.0
    check(lambda a, b: a * b, lambda a, b: a * b, float("inf"), 0.0)  # nan grads, no exception


def test_micrograd_readme_example():
    a, b = Value(-4.0), Value(2.0)
    g = readme_example(a, b)
    g.backward()
    at, bt = t(-4.0), t(2.0)
    gt = readme_example(at, bt)
    gt.backward()
    assert close(g.data, gt.item()) and round(g.data, 4) == 24.7041
    assert close(a.grad, at.grad.item()) and round(a.grad, 4) == 138.8338
    assert close(b.grad, bt.grad.item()) and round(b.grad, 4) == 645.5773


# -- random DAGs with shared nodes, all ops, constants on both sides ------------------------

finite = st.floats(-3, 3, allow_nan=False).filter(lambda x: abs(x) > 1e-3)

# exp and log are asked inside their domains; every other unary op of the table as it is
OPS = ["add", "sub", "mul", "div", "powc", "powv", "rpow", "exp", "log", "sqrt", "radd", "rsub",
       "rmul", "rdiv", "sum", "dot", *sorted(set(UNARY) - {"exp", "log", "sqrt"})]


def apply(op, args, c, k, bias=None):
    """op on operands args (Values or tensors alike); c a constant, k an int exponent.
    dot's bias is args[1] (also one of its weights or inputs), or bias, a copy of it."""
    a, b = args[0], args[1]
    if op == "add": return a + b
    if op == "sub": return a - b
    if op == "mul": return a * b
    if op == "div": return a / b
    if op == "powc": return a ** k
    if op == "powv": return (a * a + 0.5) ** b
    if op == "rpow": return abs(c) ** a
    if op == "exp": return (a.tanh() * 2).exp()
    if op == "log": return (a * a + 0.1).log()
    if op == "sqrt": return (a * a + 0.1).sqrt()
    if op == "radd": return c + a
    if op == "rsub": return c - a
    if op == "rmul": return c * a
    if op == "rdiv": return c / (a * a + 0.5)
    if op == "sum": return Value.sum(args) if isinstance(a, Value) else sum(args)
    if op == "dot":
        h = len(args) // 2
        if isinstance(a, Value):
            return Value.dot(args[:h], args[h:2 * h], b)
        return (b if bias is None else bias) + sum(w * x for w, x in zip(args[:h], args[h:2 * h]))
    return UNARY[op].call(a)


@st.composite
def programs(draw):
    leaves = draw(st.lists(finite, min_size=1, max_size=5))
    steps = []
    for i in range(draw(st.integers(1, 14))):
        n = len(leaves) + i
        op = draw(st.sampled_from(OPS))
        args = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=6))
        steps.append((op, args, draw(finite), draw(st.integers(-2, 3))))
    return leaves, steps


def run(program, make_leaf):
    leaves, steps = program
    nodes = [make_leaf(x) for x in leaves]
    for op, idx, c, k in steps:
        nodes.append(apply(op, [nodes[i] for i in idx], c, k))
    return nodes


def term_magnitudes(program, theirs):
    """For each leaf, the sum of the absolute values of the terms its gradient adds up.

    The root's 1 (it sums every non-leaf node) is carried back through each op's
    |local derivative|, taken from PyTorch op by op. Where terms cancel, this is far larger
    than the gradient: a float64 sum of them is then only as exact as its order allows, and
    two correct engines summing in different orders may differ by about eps times this.
    """
    leaves, steps = program
    n = len(leaves)
    mag = [0.0] * n + [1.0] * len(steps)
    for j in range(len(theirs) - 1, n - 1, -1):
        op, idx, c, k = steps[j - n]
        args = [theirs[i].detach().clone().requires_grad_(True) for i in idx]
        # each use of an operand its own copy: dot's bias is also one of its weights or
        # inputs, and the two terms may cancel in the sum but not in a float's rounding
        bias = args[1].detach().clone().requires_grad_(True)
        grads = torch.autograd.grad(apply(op, args, c, k, bias), [*args, bias], allow_unused=True)
        for i, g in zip([*idx, idx[1]], grads):
            if g is not None:
                mag[i] += abs(g.item()) * mag[j]
    return mag[:n]


def summation_bound(mag, passes=1):
    """What summing a gradient's terms in another order may change: m * eps * the sum of
    their magnitudes, m < 256 here; per backward pass. 0 when the magnitude is not finite."""
    return passes * 256 * 2.0 ** -53 * mag if math.isfinite(mag) else 0.0


def assert_matches(program, ours, theirs, passes=1):
    """Every node's data, and the leaves' grads after `passes` backward passes, as PyTorch
    has them: to relative 1e-9, or, where terms cancel, to what float64 summation in another
    order can change (summation_bound)."""
    n = len(program[0])
    for o, r in zip(ours, theirs):
        assert close(o.data, r.item(), abs_tol=1e-9)
    for o, r, mag in zip(ours[:n], theirs[:n], term_magnitudes(program, theirs)):
        g = 0.0 if r.grad is None else r.grad.item()
        assert close(o.grad, g, abs_tol=max(1e-9, summation_bound(mag, passes))), (o.grad, g, mag)


@given(program=programs())
# dot's bias is also its input, and the two terms cancel: found by hypothesis, depth-first
@example(program=([1.1196642413647577, 1.0, -0.99999, 1.0],
                  [("add", [0, 0], 1.0, 0), ("add", [0, 0], 1.0, 0), ("mul", [0, 0], 1.0, 0),
                   ("dot", [2, 0], 1.0, 0), ("div", [0, 7], 1.0, 0)]))
def test_random_dags_against_pytorch(path, program):
    try:
        ours = run(program, Value)
    except (ZeroDivisionError, OverflowError, ValueError):
        return  # Python raises here too; the error cases have their own tests
    theirs = run(program, t)
    n = len(program[0])
    root_ours = Value.sum(ours[n:])
    root_theirs = sum(theirs[n:])
    if not math.isfinite(root_ours.data):
        return
    root_ours.backward()
    root_theirs.backward()
    assert_matches(program, ours, theirs)


def test_relu_dot_is_one_node_with_relus_numbers():
    for xs in [(0.3, -1.2, 2.5, 0.9, -0.4), (-0.3, 1.2, 2.5, 0.9, -0.4)]:
        check(lambda *v: Value.dot(v[:2], v[2:4], v[4], relu=True),
              lambda *v: torch.relu(v[4] + v[0] * v[2] + v[1] * v[3]), *xs)
    w, x = [Value(1.0), Value(-2.0)], [Value(0.5), Value(0.25)]
    fused, plain = Value.dot(w, x, relu=True), Value.dot(w, x).relu()
    assert fused.data == plain.data and fused._op == "ReLU(dot)" and fused._prev == set(w + x)


@pytest.mark.parametrize("relu", [False, True])
def test_matvec_is_a_layer_of_dots(relu):
    W = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]
    b = [0.1, -3.0]
    x = [1.0, -2.0, 0.5]
    ours_w = [[Value(w) for w in row] for row in W]
    ours_b = [Value(v) for v in b]
    out = Value.matvec(ours_w, x, ours_b, relu=relu)
    Wt = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    ref = Wt @ torch.tensor(x, dtype=torch.float64) + bt
    ref = torch.relu(ref) if relu else ref
    Value.sum([o * (i + 1) for i, o in enumerate(out)]).backward()
    (ref * torch.tensor([1.0, 2.0], dtype=torch.float64)).sum().backward()
    assert [o.data for o in out] == pytest.approx(ref.tolist(), rel=1e-12)
    for row, grow in zip(ours_w, Wt.grad.tolist()):
        assert [w.grad for w in row] == pytest.approx(grow, rel=1e-12)
    assert [v.grad for v in ours_b] == pytest.approx(bt.grad.tolist(), rel=1e-12)
    # inputs given as numbers become one leaf each, shared by every row
    shared = out[0]._prev & out[1]._prev
    assert len(shared) == 3 and all(v._op == "" for v in shared)


@given(program=programs())
def test_replayed_random_dags_against_pytorch(path, program):
    leaves, steps = program
    moved = ([x * 0.5 + 0.25 for x in leaves], steps)
    try:
        ours = run(program, Value)
        run(moved, Value)  # the replayed values must be computable at all
    except (ZeroDivisionError, OverflowError, ValueError):
        return
    n = len(leaves)
    root = Value.sum(ours[n:])
    root.backward()
    for leaf, x in zip(ours[:n], moved[0]):
        leaf.data, leaf.grad = x, 0.0
    root.forward()
    root.backward()
    theirs = run(moved, t)
    root_theirs = sum(theirs[n:])
    if not math.isfinite(root.data):
        return
    root_theirs.backward()
    assert_matches(moved, ours, theirs)


@given(programs())
def test_random_dags_with_repeated_backward(program):
    try:
        ours = run(program, Value)
    except (ZeroDivisionError, OverflowError, ValueError):
        return
    n = len(program[0])
    root = Value.sum(ours[n:])
    if not math.isfinite(root.data):
        return
    theirs = run(program, t)
    root_t = sum(theirs[n:])
    for _ in range(3):
        root.backward()
        root_t.backward(retain_graph=True)
    assert_matches(program, ours, theirs, passes=3)
