"""nn.set_fused(False) and nn.fused(False): our Neuron, Layer and MLP build micrograd's own
graph, node for node. Walked as trace_graph.ipynb's draw_dot walks a graph (`_prev` and `_op`),
it has the nodes and edges upstream micrograd's nn.py builds for the same weights, with the
same data and, after backward(), the same grads; the default stays fused."""
import math
import random
import threading

import micrograd.engine
import micrograd.nn
import pytest

from conftest import run_probe
from micrograd_cy import Value, nn

MICROGRADS_OPS = {"", "+", "*", "ReLU"}


def drawn(root):
    """What trace_graph.ipynb's draw_dot draws of root's graph, as two sorted lists: a
    record (op, data, grad) a node, and a (child's record, parent's record) an edge. Its
    trace(), walking `_prev` from the root, without recursion."""
    nodes, edges, todo = set(), set(), [root]
    while todo:
        v = todo.pop()
        if v not in nodes:
            nodes.add(v)
            for child in v._prev:
                edges.add((child, v))
                todo.append(child)

    def record(v):
        return v._op, float(v.data), float(v.grad)

    return sorted(map(record, nodes)), sorted((record(c), record(p)) for c, p in edges)


def same_records(ours, theirs):
    """Record for record: the same ops, data and grads to 1e-12 (a grad that several parents
    give to may add them in another order: upstream's follows its sets)."""
    flat = [(a, b) for x, y in zip(ours, theirs)
            for a, b in (zip(x, y) if isinstance(x[0], tuple) else [(x, y)])]
    return len(ours) == len(theirs) and all(
        a[0] == b[0] and math.isclose(a[1], b[1], rel_tol=1e-12, abs_tol=1e-12)
        and math.isclose(a[2], b[2], rel_tol=1e-12, abs_tol=1e-12) for a, b in flat)


def copy_weights(ours, theirs):
    assert len(ours.parameters()) == len(theirs.parameters())
    for p, q in zip(ours.parameters(), theirs.parameters()):
        p.data = float(q.data)


def root_of(out):
    """A Value to call backward() on: a layer's outputs summed as micrograd code sums them."""
    return sum(out) if isinstance(out, list) else out


MODELS = {  # what to build, on either nn, and its number of inputs
    "ReLU neuron": (lambda nn: nn.Neuron(3), 3),
    "linear neuron": (lambda nn: nn.Neuron(3, nonlin=False), 3),
    "layer": (lambda nn: nn.Layer(3, 4), 3),
    "MLP(3, [4, 4, 1])": (lambda nn: nn.MLP(3, [4, 4, 1]), 3),
    "MLP(2, [16, 16, 1])": (lambda nn: nn.MLP(2, [16, 16, 1]), 2),  # the demo's
    "MLP(3, [4, 3])": (lambda nn: nn.MLP(3, [4, 3]), 3),  # several outputs
}


@pytest.mark.parametrize("leaves", [True, False], ids=["Value inputs", "number inputs"])
@pytest.mark.parametrize("make,nin", MODELS.values(), ids=MODELS.keys())
def test_the_graph_is_upstreams_node_for_node(make, nin, leaves):
    random.seed(7)
    theirs = make(micrograd.nn)
    random.seed(8)  # other weights, then upstream's copied in
    ours = make(nn)
    copy_weights(ours, theirs)
    rng = random.Random(0)
    row = [rng.uniform(-2, 2) for _ in range(nin)]
    up_root = root_of(theirs([micrograd.engine.Value(v) for v in row] if leaves else row))
    up_root.backward()
    with nn.fused(False):
        root = root_of(ours([Value(v) for v in row] if leaves else row))
    root.backward()
    nodes, edges = drawn(root)
    up_nodes, up_edges = drawn(up_root)
    assert {op for op, _, _ in nodes} <= MICROGRADS_OPS
    assert len(nodes) == len(up_nodes) and len(edges) == len(up_edges)
    assert same_records(nodes, up_nodes)
    assert same_records(edges, up_edges)


def test_the_notebooks_neuron():
    # trace_graph.ipynb's second example, as written there
    def neuron_graph(nn, Value):
        random.seed(1337)
        n = nn.Neuron(2)
        x = [Value(1.0), Value(-2.0)]
        y = n(x)
        y.backward()
        return drawn(y)

    with nn.fused(False):
        ours = neuron_graph(nn, Value)
    theirs = neuron_graph(micrograd.nn, micrograd.engine.Value)
    assert [op for op, _, _ in ours[0]] == ["", "", "", "", "", "*", "*", "+", "+", "ReLU"]
    assert ours == theirs  # to the bit: every grad here comes by a single path


def test_the_default_stays_fused_and_the_switch_turns_every_fused_path_off():
    random.seed(1)
    model = nn.MLP(3, [4, 4, 1])
    layer = model.layers[0]
    x = [1.0, -0.5, 2.0]
    fused_ops = {"mlp", "dot", "ReLU(dot)", "sum", "params"}
    assert nn.is_fused()
    assert model(x)._op == "mlp" and {v._op for v in layer(x)} == {"ReLU(dot)"}
    assert layer.neurons[0](x)._op == "ReLU(dot)"
    with nn.fused(False):
        assert not nn.is_fused()
        for out in [model(x), *layer(x), layer.neurons[0](x)]:
            nodes, _ = drawn(out)
            assert not {op for op, _, _ in nodes} & fused_ops, out._op
        assert model(x).data == model.layers[2](model.layers[1](layer(x))).data
    assert nn.is_fused() and model(x)._op == "mlp"  # and back, its caches still good
    was = nn.set_fused(False)
    try:
        assert was is True and model(x)._op == "+"
        with nn.fused(True):
            assert model(x)._op == "mlp"
        assert model(x)._op == "+"
    finally:
        nn.set_fused(was)
    assert model(x)._op == "mlp"


def test_the_numbers_are_the_same_either_way():
    random.seed(2)
    model = nn.MLP(2, [16, 16, 1])
    rows = [[random.uniform(-2, 2) for _ in range(2)] for _ in range(10)]

    def loss_and_grads():
        model.zero_grad()
        loss = sum((1 + -y * model(row)).relu() for y, row in zip([1, -1] * 5, rows))
        loss.backward()
        return [loss.data] + [p.grad for p in model.parameters()]

    fused = loss_and_grads()
    with nn.fused(False):
        plain = loss_and_grads()
    assert fused[0] == plain[0]
    assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15) for a, b in zip(fused, plain))


def test_the_switch_takes_only_true_or_false():
    for wrong in [0, 1, None, "no"]:
        with pytest.raises(TypeError, match="True or False"):
            nn.set_fused(wrong)
        with pytest.raises(TypeError, match="True or False"):
            with nn.fused(wrong):
                pass
    assert nn.is_fused()


def test_a_block_is_this_threads_and_set_fused_every_threads():
    seen = {}
    started, done = threading.Event(), threading.Event()

    def other():
        started.wait()
        seen["in the block"] = nn.is_fused()
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with nn.fused(False):
        started.set()
        done.wait()
    thread.join()
    assert seen["in the block"] is True
    was = nn.set_fused(False)
    try:
        thread = threading.Thread(target=lambda: seen.update(set=nn.is_fused()))
        thread.start()
        thread.join()
    finally:
        nn.set_fused(was)
    assert seen["set"] is False


def test_install_as_micrograd_unfused_runs_the_notebook_on_micrograds_own_graph():
    out = run_probe("""
        import micrograd_cy
        micrograd_cy.install_as_micrograd(fused=False)
        import random
        from micrograd import nn
        from micrograd.engine import Value
        random.seed(1337)
        n = nn.Neuron(2)
        y = n([Value(1.0), Value(-2.0)])
        print(y._op, sorted(c._op for c in y._prev), nn.is_fused())
        micrograd_cy.install_as_micrograd()  # again, the default: fused
        print(n([Value(1.0), Value(-2.0)])._op, nn.is_fused())
    """)
    assert out.splitlines() == ["ReLU ['+'] False", "ReLU(dot) True"]


def test_the_memory_estimate_follows_the_switch():
    sizes = [2, 16, 16, 1]
    fused = nn.memory_needed(sizes, 100)
    assert nn.memory_needed(sizes, 100, fused=True) == fused
    with nn.fused(False):
        assert nn.memory_needed(sizes, 100) == nn.memory_needed(sizes, 100, fused=False) > fused
