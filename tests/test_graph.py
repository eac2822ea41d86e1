"""Graph semantics, micrograd's public surface (on both engines), depth, memory."""
import copy
import gc
import pickle
import sys
import tracemalloc

import pytest

from conftest import close, readme_example
from micrograd_cy import Value


# -- the surface micrograd users rely on, checked on upstream and on ours -----------------

def test_prev_is_the_set_of_children(ValueImpl):
    a, b = ValueImpl(2.0), ValueImpl(3.0)
    assert (a * b)._prev == {a, b}
    assert (a + b)._prev == {a, b}
    assert a.relu()._prev == {a}
    assert (a ** 2)._prev == {a}
    assert a._prev == set() and isinstance(a._prev, set)


def test_op_names(ValueImpl):
    a, b = ValueImpl(2.0), ValueImpl(3.0)
    assert a._op == ""
    assert (a + b)._op == "+"
    assert (a * b)._op == "*"
    assert (a ** 2)._op == "**2"
    assert (a ** 0.5)._op == "**0.5"
    assert (a ** -1)._op == "**-1"
    assert a.relu()._op == "ReLU"


def test_repr_and_identity_hash(ValueImpl):
    a = ValueImpl(2.0)
    assert repr(a) == "Value(data=2.0, grad=0)" or repr(a) == "Value(data=2.0, grad=0.0)"
    b = ValueImpl(2.0)
    assert a != b and len({a, b}) == 2 and hash(a) == hash(a)


def test_constructor_as_micrograd_calls_it(ValueImpl):
    a, b = ValueImpl(1.0), ValueImpl(2.0)
    v = ValueImpl(5.0, (a, b), "custom")
    assert v._prev == {a, b} and v._op == "custom" and v.data == 5.0


def test_data_and_grad_are_read_write(ValueImpl):
    a = ValueImpl(1.0)
    a.data = 3.0
    a.grad = 0.5
    assert (a.data, a.grad) == (3.0, 0.5)


def test_readme_example_on_both_engines(ValueImpl):
    a = ValueImpl(-4.0)
    b = ValueImpl(2.0)
    g = readme_example(a, b)
    g.backward()
    assert f"{g.data:.4f}" == "24.7041"
    assert f"{a.grad:.4f}" == "138.8338"
    assert f"{b.grad:.4f}" == "645.5773"


# -- ours only -----------------------------------------------------------------------------

def test_data_and_grad_are_always_floats():
    a = Value(3)
    out = a * 2
    out.backward()
    assert type(a.data) is float and type(a.grad) is float and type(out.data) is float


def test_new_ops_have_their_own_names():
    a, b = Value(2.0), Value(3.0)
    names = {(a - b)._op, (a / b)._op, (-a)._op, (a ** b)._op, a.tanh()._op, a.exp()._op,
             a.log()._op, a.sigmoid()._op, Value.sum([a, b])._op, Value.dot([a], [b])._op}
    assert names == {"-", "/", "neg", "**", "tanh", "exp", "log", "sigmoid", "sum", "dot"}
    bias = Value(1.0)
    assert Value.dot([a], [b], bias)._prev == {a, b, bias}
    assert Value.sum([a, b, a])._prev == {a, b}


def test_labels():
    a = Value(1.0, label="a")
    assert a.label == "a" and Value(2.0).label == ""
    a.label = "x"
    assert a.label == "x"
    with pytest.raises(TypeError):
        a.label = 5


def test_second_backward_adds_to_leaves_once_like_pytorch_retain_graph(torch):
    a, b = Value(1.5), Value(-0.5)
    h = a * b + a
    out = h * h + h.tanh()
    out.backward()
    first = (a.grad, b.grad, h.grad)
    out.backward()
    at = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(-0.5, dtype=torch.float64, requires_grad=True)
    ht = at * bt + at
    ot = ht * ht + ht.tanh()
    ot.backward(retain_graph=True)
    ot.backward()
    assert close(a.grad, at.grad.item()) and close(b.grad, bt.grad.item())
    assert close(a.grad, 2 * first[0]) and h.grad == first[2]  # interior: not doubled


def test_shared_interior_node_between_two_roots():
    a = Value(2.0)
    h = a * a
    l1, l2 = h + 1, h * 3
    l1.backward()
    l2.backward()
    assert a.grad == 2 * 2.0 + 3 * 2 * 2.0  # leaves accumulate both, as in PyTorch


DEAD_EDGES = {  # a node over h whose chain rule gives h nothing (h.data is -6)
    "relu": lambda h: h.relu(),
    "relu-dot": lambda h: Value.dot([h], [Value(1.0)], relu=True),
    "pow-0": lambda h: h**0,
    "pow-value-0": lambda h: h ** Value(0.0),
    "zero-to-the-minus-h": lambda h: Value(0.0) ** (-h),
}


@pytest.mark.parametrize("edge", DEAD_EDGES)
def test_grad_kept_from_another_graph_is_not_seen_through_a_dead_edge(path, edge):
    a, b = Value(-2.0), Value(3.0)
    m = a * b
    h = m + 0.0
    first = h * 3
    first.backward()
    assert (h.grad, m.grad, a.grad) == (3.0, 3.0, 9.0)
    second = DEAD_EDGES[edge](h)
    second.backward()
    # this graph reaches h and m, and their grads for it are 0; leaves keep accumulating
    assert (h.grad, m.grad, a.grad, b.grad) == (0.0, 0.0, 9.0, -6.0)


def test_fused_nodes_reuse_one_node_many_times():
    a = Value(0.5)
    s = Value.sum([a] * 5000)
    s.backward()
    assert s.data == 2500.0 and a.grad == 5000.0
    d = Value.dot([a] * 100, [a] * 100, a)
    d.backward()
    assert a.grad == 5000.0 + 2 * 100 * 0.5 + 1


def test_forward_replays_after_leaves_change(torch):
    x, w = Value(1.0), Value(2.0)
    out = (w * x + 1).tanh() * w
    out.backward()
    w.data = -0.75
    w.grad = 0.0
    out.forward()
    fresh = (Value(-0.75) * Value(1.0) + 1).tanh() * Value(-0.75)
    assert out.data == fresh.data
    out.backward()
    wt = torch.tensor(-0.75, dtype=torch.float64, requires_grad=True)
    ((wt * 1.0 + 1).tanh() * wt).backward()
    assert close(w.grad, wt.grad.item())


def test_forward_replay_raises_like_the_forward():
    x = Value(2.0)
    out = (x - 1).log()
    x.data = 0.5
    with pytest.raises(ValueError):
        out.forward()
    x.data = 3.0
    assert out.forward().data == pytest.approx(0.6931471805599453)


def test_values_are_not_tracked_by_the_cyclic_gc():
    a = Value(1.0)
    assert not gc.is_tracked(a)
    assert not gc.is_tracked(a * a + 1)


def test_bytes_per_node():
    x = Value(1.0)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    v = x
    for _ in range(100_000):
        v = v * 1.0001  # each step: one node and one constant leaf
    v.backward()  # the cached order costs 8 bytes a node
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    per_node = used / 200_001
    assert per_node < 96, per_node


def test_deep_chain_of_a_million_nodes():
    x = Value(1.0)
    v = x
    for _ in range(1_000_000):
        v = v + 1e-6
    assert sys.getrecursionlimit() < 1_000_000
    v.backward()
    assert x.grad == 1.0 and abs(v.data - 2.0) < 1e-6
    del v  # frees 2 million nodes without recursing in C


def test_dropping_the_graph_restores_reference_counts():
    w = [Value(0.1 * i) for i in range(10)]
    x = [0.5] * 10
    before = [sys.getrefcount(p) for p in w]
    out = (Value.dot(w, x) * w[0]).relu()
    out.backward()
    assert [sys.getrefcount(p) for p in w] != before
    del out
    assert [sys.getrefcount(p) for p in w] == before


def test_pickle_and_copy_keep_data_grad_label_not_history():
    a = Value(2.0, label="a")
    out = a * 3
    out.backward()
    out.label = "out"
    for clone in [pickle.loads(pickle.dumps(out)), copy.deepcopy(out), copy.copy(out)]:
        assert (clone.data, clone.grad, clone.label) == (6.0, 1.0, "out")
        assert clone._prev == set() and clone._op == ""
