"""microgpt's Value: Value(data, children, local_grads), and every node's _children and
_local_grads, so that an op written microgpt's way backpropagates in C, and a backward
written microgpt's way over our nodes gives backward()'s numbers. PyTorch float64 is the
oracle."""
import math
import pickle
import random

import pytest

from micrograd_cy import Value, nn
from micrograd_cy.viz import trace
from op_table import UNARY


def gelu(x):
    """GELU (tanh form) as a microgpt-style op: its value and its local gradient."""
    k = math.sqrt(2 / math.pi)
    inner = k * (x.data + 0.044715 * x.data ** 3)
    t = math.tanh(inner)
    d = 0.5 * (1 + t) + 0.5 * x.data * (1 - t * t) * k * (1 + 3 * 0.044715 * x.data ** 2)
    return Value(0.5 * x.data * (1 + t), (x,), (d,))


def test_an_op_written_microgpts_way_backpropagates_in_c(torch):
    x = Value(0.7)
    y = gelu(x * 2) * x
    y.backward()
    t = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    ty = torch.nn.functional.gelu(t * 2, approximate="tanh") * t
    ty.backward()
    assert y.data == pytest.approx(ty.item(), rel=1e-12)
    assert x.grad == pytest.approx(t.grad.item(), rel=1e-12)
    y.backward()  # again: the leaf accumulates once more, as for any op
    assert x.grad == pytest.approx(2 * t.grad.item(), rel=1e-12)
    node = gelu(x)
    assert node._children == (x,) and len(node._local_grads) == 1


def test_the_third_place_is_an_op_name_or_local_grads():
    a, b = Value(2.0), Value(3.0)
    named = Value(6.0, (a, b), "*")
    assert named._op == "*" and named._local_grads == ()  # no rule, as before
    given = Value(6.0, (a, b), (3, 2))  # ints, as microgpt's (1, 1)
    assert given._local_grads == (3.0, 2.0) and given._children == (a, b)
    given.backward()
    assert (a.grad, b.grad) == (3.0, 2.0)
    assert Value(1.0, (), ())._children == () and Value(1.0, [a], [0.5])._local_grads == (0.5,)
    with pytest.raises(TypeError, match="give them once"):
        Value(1.0, (a,), (1.0,), grads=(1.0,))
    with pytest.raises(TypeError, match="op's name"):
        Value(1.0, (a,), None)
    with pytest.raises(ValueError, match="1 numbers for 2 children"):
        Value(1.0, (a, b), (1.0,))
    with pytest.raises(TypeError):
        Value(1.0, (a,), ("x",))
    v = Value(1.0, (a,), (2.0,))
    v.grad = 0  # microgpt zeroes grads so
    assert v.grad == 0.0


def _microgpt_backward(root):
    """microgpt's backward, in our own words: a topological order, then each node's local
    gradients times its grad into its children."""
    order, seen = [], set()

    def visit(v):
        if id(v) not in seen:
            seen.add(id(v))
            for c in v._children:
                visit(c)
            order.append(v)

    visit(root)
    grads = {id(v): 0.0 for v in order}
    grads[id(root)] = 1.0
    for v in reversed(order):
        for child, local in zip(v._children, v._local_grads):
            grads[id(child)] += local * grads[id(v)]
    return grads


def _random_graph(rng, leaves):
    nodes = list(leaves)
    for _ in range(40):
        kind = rng.random()
        a, b = rng.choice(nodes), rng.choice(nodes)
        if kind < 0.3:
            row = UNARY[rng.choice(["tanh", "sigmoid", "ReLU", "sin"])]
            nodes.append(row.call(a))
        elif kind < 0.7:
            op = rng.choice(["+", "-", "*", "/"])
            b = a if rng.random() < 0.3 else b  # the same child in two places
            if op == "/":
                b = b * b + 1.0
            nodes.append({"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                          "/": lambda: a / b}[op]())
        elif kind < 0.8:
            nodes.append(Value.sum([a, b, a]))
        elif kind < 0.9:
            nodes.append(Value.dot([a, b], [b, a], a, relu=rng.random() < 0.5))
        else:
            nodes.append(gelu(a) if rng.random() < 0.5 else (a * a + 1.0) ** (b.tanh()))
    return Value.sum(nodes[-8:])


@pytest.mark.parametrize("seed", range(6))
def test_a_backward_walking_children_and_local_grads_gives_backwards_numbers(seed):
    rng = random.Random(seed)
    leaves = [Value(rng.uniform(-1.5, 1.5)) for _ in range(4)]
    root = _random_graph(rng, leaves)
    by_hand = _microgpt_backward(root)
    root.backward()
    for leaf in leaves:
        assert by_hand.get(id(leaf), 0.0) == pytest.approx(leaf.grad, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("build, torch_op", [
    (lambda x: x * x, lambda x: x * x),
    (lambda x: x - x, lambda x: x - x),
    (lambda x: x / x, lambda x: x / x),
    (lambda x: x ** x, lambda x: x ** x),
    (lambda x: Value.dot([x, x], [x, Value(3.0)], x), lambda x: x * x + x * 3.0 + x),
])
def test_a_child_in_two_places_gets_each_places_own(build, torch_op, torch):
    x = Value(1.3)
    node = build(x)
    t = [torch.tensor(1.3, dtype=torch.float64, requires_grad=True) for _ in node._children]
    # PyTorch's gradient for each place, with the places made distinct leaves
    args = {id(c): [] for c in node._children}
    for c, leaf in zip(node._children, t):
        args[id(c)].append(leaf)
    if len(node._children) == 2 and node._children[0] is node._children[1]:
        out = {"*": lambda a, b: a * b, "-": lambda a, b: a - b, "/": lambda a, b: a / b,
               "**": lambda a, b: a ** b}[node._op](t[0], t[1])
        out.backward()
        assert node._local_grads == pytest.approx([leaf.grad.item() for leaf in t], rel=1e-12)
    else:  # the dot: w = (x, x), inputs (x, 3), bias x
        assert node._local_grads == pytest.approx([1.3, 3.0, 1.3, 1.3, 1.0], rel=1e-12)
    assert sum(g for c, g in zip(node._children, node._local_grads) if c is x) == \
        pytest.approx(torch.func.grad(torch_op)(torch.tensor(1.3, dtype=torch.float64)).item())


def test_reading_local_grads_changes_nothing():
    a, b = Value(0.5), Value(-2.0)
    c = (a * b).tanh()
    c.grad, a.grad, b.grad = 7.0, 1.0, 2.0
    c._local_grads
    assert (c.grad, a.grad, b.grad) == (7.0, 1.0, 2.0)
    assert c._children[0]._children == (a, b)


def test_a_fused_mlp_node_says_how_to_walk_it():
    model = nn.MLP(2, [3, 1])
    out = model([0.5, -0.5])
    assert out._op == "mlp" and len(out._children) == 3
    with pytest.raises(TypeError, match="no local gradient per child.*unfused"):
        out._local_grads


def test_hostile_selves_and_a_model_of_such_ops_draws_and_pickles():
    for name in ("_children", "_local_grads"):
        with pytest.raises(TypeError):
            vars(Value)[name].__get__(3.0)
    ws = [Value(0.3), Value(-0.2)]
    out = gelu(ws[0] * ws[1] + 1.0)
    out.backward()
    nodes, edges = trace(out)
    assert out in nodes and len(edges) == 5
    again = pickle.loads(pickle.dumps(ws))
    assert [w.data for w in again] == [0.3, -0.2] and again[0].grad == ws[0].grad
