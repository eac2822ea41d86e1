"""Value.backward_rows: a graph built once for one row, run forward and backward over N rows
in C. Each test compares it bit for bit with what it stands for (set the inputs' data, then
loss.forward() and loss.backward(), row after row) and, for the classifier, with PyTorch
float64. Bad input, the program cache, re-entrant numbers, threads and failing allocations
(debug build) must give an error or the right answer, never a broken graph."""
import gc
import math
import numbers
import random
import struct
import sys
import weakref

import numpy as np
import pytest

from conftest import in_threads
from micrograd_cy import Value, engine, nn
from micrograd_cy.engine import _check_invariants
from op_table import OPS, UNARY

debug_only = pytest.mark.skipif(not engine._DEBUG, reason="needs the debug build "
                                "(tests/test_debug_build.py makes one)")


# ---------------------------------------------------------------------------
# The oracle: forward() and backward() row after row, and what the graph holds

def bits(x):
    """A float's 8 bytes: == on these tells -0.0 from 0.0. NaNs are all alike: an invalid
    operation's NaN takes the sign the C compiler's choice of instructions gives it (an
    inf logit gives the cross-entropy's grad -nan one way, nan the other)."""
    x = float(x)
    return b"nan" if x != x else struct.pack("<d", x)


def bitlist(xs):
    return [bits(x) for x in xs]


def nodes_of(*roots):
    """Every node of the roots' graphs (through _prev: a NET node's PARAMS and its weights too)."""
    seen, stack, out = set(), list(roots), []
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        out.append(v)
        stack.extend(v._prev)
    return out


def params_of(loss, inputs):
    """The graph's leaves that are not inputs: the grads backward_rows adds up."""
    ins = {id(v) for v in inputs}
    return [v for v in nodes_of(loss) if not v._prev and id(v) not in ins]


def state(nodes):
    """Every node's data and grad, to the bit."""
    return [(bits(v.data), bits(v.grad)) for v in nodes]


def per_row(loss, inputs, rows, outputs=()):
    """What backward_rows stands for: the losses, each row's outputs' data; the leaves'
    grads add up in place."""
    losses, outs = [], []
    for row in rows:
        for v, x in zip(inputs, row):
            v.data = float(x)
        loss.forward()
        loss.backward()
        losses.append(loss.data)
        outs.append([o.data for o in outputs])
    return losses, outs


def check_rows(loss, inputs, rows, outputs=None, scale=1.0, reference=None, seed=0):
    """backward_rows(loss, inputs, rows) against per_row (on reference, loss * scale built as
    a graph, when scale is not 1), bit for bit: the losses, the outputs, every
    parameter's grad (started at odd values, so that adding is tested too), and nothing
    else of the graph touched. Returns (losses, outputs' data) as backward_rows gave them."""
    rows = np.asarray(rows, dtype=float)
    assert scale == 1.0 or reference is not None, "per_row seeds 1.0: give a reference graph"
    params = params_of(loss, inputs)
    rng = random.Random(seed)
    for p in params:
        p.grad = rng.choice([0.0, -0.0, rng.uniform(-3, 3)])
    start = [p.grad for p in params]
    skip = {id(p) for p in params}
    others = [v for v in nodes_of(loss) if id(v) not in skip]
    before = state(others)
    got = Value.backward_rows(loss, inputs, rows, outputs=outputs, scale=scale)
    losses, outs = got if outputs is not None else (got, None)
    assert isinstance(losses, np.ndarray) and losses.shape == (len(rows),)
    assert state(others) == before, "backward_rows changed a node's data or a non-leaf's grad"
    summed = [p.grad for p in params]
    assert _check_invariants() is None
    many = [] if outputs is None else ([outputs] if isinstance(outputs, Value) else list(outputs))
    if outputs is not None:  # evaluate's numbers (with the loss: every input in the graph)
        seen = Value.evaluate([loss] + many, inputs, rows)
        assert bitlist(seen[:, 0]) == bitlist(losses)
        flat = outs.reshape(len(rows), -1)
        assert [bitlist(r) for r in seen[:, 1:]] == [bitlist(r) for r in flat]
    for p, g in zip(params, start):
        p.grad = g
    ref = reference if reference is not None else loss
    want, want_outs = per_row(ref, inputs, rows, many)
    assert bitlist(losses if reference is None else losses * scale) == bitlist(want)
    if outputs is not None:
        flat = outs.reshape(len(rows), -1)
        assert [bitlist(r) for r in flat] == [bitlist(r) for r in want_outs]
    assert bitlist(summed) == bitlist(p.grad for p in params), \
        [(i, a, p.grad) for i, (a, p) in enumerate(zip(summed, params)) if bits(a) != bits(p.grad)]
    return losses, outs


def leaves(xs):
    return [Value(float(x)) for x in xs]


def digits_rows(n, seed=0):
    """Rows as sklearn's digits give them (64 pixels from 0 to 16, scaled to 0..1), then the
    class."""
    rng = np.random.default_rng(seed)
    return np.hstack([rng.integers(0, 17, size=(n, 64)) / 16, rng.integers(0, 10, size=(n, 1))])


def digits_classifier(seed=1):
    random.seed(seed)
    model = nn.MLP(64, [32, 10])
    x = leaves([0.0] * 64)
    t = Value(0.0)
    return model, x, t, Value.cross_entropy(model(x), t)


def svm(seed=2):
    """micrograd's demo: an MLP with one output (a NET node) and its max-margin loss, the
    label y an input."""
    random.seed(seed)
    model = nn.MLP(2, [16, 16, 1])
    x = leaves([0.0, 0.0])
    y = Value(1.0)
    score = model(x)
    assert score._op == "mlp"  # one node for the whole network
    return model, x + [y], score, (1 + -y * score).relu()


def svm_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 2))
    y = np.where(X[:, 0] * X[:, 1] > 0, 1.0, -1.0)
    return np.hstack([X, y[:, None]])


# ---------------------------------------------------------------------------
# Bit for bit against forward() and backward() row after row

def test_the_digits_classifier_equals_per_row_backward():
    model, x, t, loss = digits_classifier()
    loss.forward()  # (see test_the_first_call_keeps_interior_grads for a first call)
    check_rows(loss, x + [t], digits_rows(33))


@pytest.mark.parametrize("n", [1, 7, 8, 9, 33])
def test_the_svm_on_a_net_node_equals_per_row_backward(n, path):
    model, ins, score, loss = svm()
    loss.forward()
    losses, _ = check_rows(loss, ins, svm_rows(n, seed=n))
    if n == 33:
        assert (losses == 0).any() and (losses > 0).any()  # some margins met: a dead ReLU


def test_dead_relus_give_nothing_row_by_row():
    # ReLU nodes, ReLU(dot) nodes and a NET's hidden units, dead on some rows of a block only
    random.seed(4)
    x = leaves([0.0, 0.0])
    w = leaves([0.5, -1.5, 0.25])
    a = (w[0] * x[0] + w[1] * x[1]).relu()
    b = Value.dot(w[:2], x, w[2], relu=True)
    c = nn.MLP(2, [8, 8, 1])(x).relu()
    loss = a + b * w[2] + c
    loss.forward()
    rows = [[r, -r] for r in np.linspace(-2, 2, 21)] + [[0.0, 0.0], [-0.0, 0.0]]
    check_rows(loss, x, rows)


def test_a_parameter_used_many_times_a_row_adds_each_edge_in_backwards_order(path):
    x = leaves([0.0, 0.0])
    w, b = Value(0.75), Value(-0.125)
    h = (w * x[0] + b).tanh() * w + x[0] * x[0] * w
    d = Value.dot([w, w, x[1], h], [x[1], w, x[1], h], b)  # w twice as weight, once as input
    s = Value.sum([w, x[0], w, h])
    loss = h + d + s + w * w + (w ** 2).exp() / (b - 1) + Value.dot(x, x)
    loss.forward()
    check_rows(loss, x, np.random.default_rng(1).normal(size=(19, 2)))


def test_an_mlp_called_twice_shares_its_weights_across_two_net_nodes():
    random.seed(6)
    model = nn.MLP(2, [4, 1])
    x = leaves([0.0, 0.0, 0.0, 0.0])
    one, two = model(x[:2]), model(x[2:])
    assert one._op == two._op == "mlp"
    loss = (one - two) ** 2 + one * 0.5
    loss.forward()
    check_rows(loss, x, np.random.default_rng(2).normal(size=(17, 4)))


def test_a_net_whose_weights_are_computed_nodes(path):
    # weights tied through ops (on the tape): the NET node gives to them, and they to theirs
    random.seed(7)
    model = nn.MLP(2, [3, 1])
    base = Value(0.4)
    model.layers[0].neurons[0].w[0] = base * 2.0
    model.layers[0].neurons[1].w = [base.tanh(), base * base]
    model.layers[1].neurons[0].b = -base
    x = leaves([0.0, 0.0])
    score = model(x)
    assert score._op == "mlp"
    loss = (score * base).relu() + score
    loss.forward()
    check_rows(loss, x, np.random.default_rng(4).normal(size=(18, 2)))


def test_a_weight_can_be_an_input_and_an_input_a_constant():
    random.seed(8)
    model = nn.MLP(2, [3, 1])
    x = leaves([0.0, 0.0])
    w0 = model.layers[0].neurons[0].w[0]
    loss = model(x) * x[0] + w0
    loss.forward()
    # the rows give a weight (an input now) and one of the two x; x[1] stays a constant
    check_rows(loss, [x[0], w0], np.random.default_rng(3).normal(size=(10, 2)))


def test_infinities_in_rows_give_the_nans_and_infinities_backward_gives():
    x = leaves([0.0, 0.0])
    w = leaves([0.5, 0.0, -1.0])
    loss = Value.dot(w[:2], x, w[2], relu=True) + (x[0] * w[1]).relu() + x[1].tanh() * w[0]
    loss.forward()
    inf = math.inf
    check_rows(loss, x, [[inf, 1.0], [-inf, 1.0], [1.0, inf], [1.0, -inf], [inf, -inf],
                         [0.5, 0.5], [-0.0, -0.0]])


@pytest.mark.parametrize("op", list(engine.Op), ids=lambda op: op.name)
def test_every_op_runs_on_rows_as_forward_and_backward_do(op):
    """An op new to the enum fails here until batch.pxi has its rules (or the table says why
    it cannot be in a graph of rows)."""
    row = OPS[op.name]
    if row.ours is None:  # not built by an op; each has a test below
        assert op.name in {"LEAF", "CUSTOM", "GIVEN", "PARAMS"}, op.name
        return
    unary = UNARY.get(row.shows)
    p = Value(1.25)
    if unary is not None:  # the op reads its first argument only
        rows = [[v] for v in unary.inputs] + [[v * 0.5] for v in unary.inputs]
        variants = [lambda x: [x[0], p], lambda x: [x[0] * p, p]]
    else:
        first, then = row.at
        rows = [list(first), list(then)] + [[a * f, b * (2 - f)] for f in (0.5, 0.9, 1.3)
                                             for a, b in (first, then)]
        variants = [lambda x: x, lambda x: [p, x[1]], lambda x: [x[0], p],
                    lambda x: [x[0] * p, x[1] + p]]
    ran = 0
    for k, args in enumerate(variants):
        x = leaves(rows[0])
        out = row.ours(args(x))
        loss = out * p + p * 0.5  # p gets grads through the op and around it
        assert out._op.startswith(row.shows)
        loss.forward()
        ins = [v for v in x if any(v is c for c in nodes_of(loss))]
        if not ins:
            continue  # the op reads none of x here (POW's row reads its first only)
        cols = [j for j, v in enumerate(x) if any(v is c for c in ins)]
        check_rows(loss, ins, [[r[j] for j in cols] for r in rows], seed=k)
        ran += 1
    assert ran >= 2


EXTREMES = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 2.0, 1.5, math.inf, -math.inf, 1e308, -1e308,
            5e-324, 1e-300, 20.0, 20.5, 710.0, -745.5]


@pytest.mark.parametrize("op", list(engine.Op), ids=lambda op: op.name)
def test_every_op_on_infinities_zeros_and_extremes(op):
    """Rows of special numbers: the same numbers as forward()/backward() row after row, or
    the same error at the same row, with the grads as they were."""
    row = OPS[op.name]
    if row.ours is None:
        return
    rng = random.Random(op.value)
    p = Value(1.25)
    for args in (lambda x: x, lambda x: [p, x[1]], lambda x: [x[0], p],
                 lambda x: [x[0] * p, x[1] + p]):
        x = leaves([1.5, 0.5])
        loss = row.ours(args(x)) * p + p * 0.5
        loss.forward()
        ins = [v for v in x if any(v is c for c in nodes_of(loss))]
        if not ins:
            continue
        for _ in range(25):
            rows = [[rng.choice(EXTREMES) for _ in ins] for _ in range(rng.choice([1, 3, 9, 12]))]
            p.grad = 0.5
            try:
                got, error = Value.backward_rows(loss, ins, rows), None
            except (ValueError, ZeroDivisionError, OverflowError, IndexError) as e:
                got, error = None, e
            summed = p.grad
            p.grad = 0.5
            want = []
            for r, numbers_ in enumerate(rows):
                for v, number in zip(ins, numbers_):
                    v.data = number
                try:
                    loss.forward()
                except Exception as e:  # noqa: BLE001 - compared below
                    assert type(error) is type(e), (rows, error, e)
                    assert f"row {r}: {e}" in str(error), (rows, error, e)
                    assert summed == 0.5  # restored
                    break
                loss.backward()
                want.append(loss.data)
            else:
                assert error is None, (rows, error)
                assert bitlist(got) == bitlist(want), (rows, got, want)
                assert bits(summed) == bits(p.grad), (rows, summed, p.grad)


# ---------------------------------------------------------------------------
# scale, outputs, and what the call returns

def test_scale_one_over_n_equals_a_graph_built_with_a_mean():
    model, ins, score, loss = svm()
    rows = svm_rows(13, seed=5)
    mean = loss * (1 / len(rows))
    loss.forward()
    mean.forward()
    params = [p for p in params_of(loss, ins)]
    for p in params:
        p.grad = 0.0
    got = Value.backward_rows(loss, ins, rows, scale=1 / len(rows))
    summed = [p.grad for p in params]
    for p in params:
        p.grad = 0.0
    want, _ = per_row(mean, ins, rows)
    assert bitlist(got * (1 / len(rows))) == bitlist(want)
    assert bitlist(summed) == bitlist(p.grad for p in params)


@pytest.mark.parametrize("scale", [0.0, -0.0, -2.5, 1e-300, math.inf, 3, np.float32(0.5)])
def test_any_real_scale_seeds_the_loss_grad(scale):
    x = leaves([0.0])
    w = Value(-0.5)
    loss = (x[0] * w).tanh() + w * w
    mean = loss * float(scale)  # backward() through it seeds loss.grad with scale
    loss.forward()
    check_rows(loss, x, [[0.5], [-1.0], [2.0]], scale=scale, reference=mean)


def test_outputs_give_each_rows_data_as_evaluate_does():
    model, x, t, loss = digits_classifier()
    rows = digits_rows(9, seed=3)
    loss.forward()
    some = [v for v in nodes_of(loss) if v._op == "dot"][:3]
    losses, outs = check_rows(loss, x + [t], rows, outputs=some)
    assert outs.shape == (9, 3)
    losses, one = check_rows(loss, x + [t], rows, outputs=some[0])
    assert one.shape == (9,)
    # an input, a parameter and the loss itself are outputs too
    p = model.parameters()[0]
    losses, outs = Value.backward_rows(loss, x + [t], rows, outputs=[x[5], p, loss, t])
    assert outs[:, 0].tolist() == rows[:, 5].tolist()
    assert outs[:, 1].tolist() == [p.data] * 9
    assert bitlist(outs[:, 2]) == bitlist(losses)
    assert outs[:, 3].tolist() == rows[:, 64].tolist()


def test_no_rows_give_no_losses_and_no_grads():
    model, ins, score, loss = svm()
    grads = [p.grad for p in model.parameters()]
    assert Value.backward_rows(loss, ins, np.empty((0, 3))).shape == (0,)
    losses, outs = Value.backward_rows(loss, ins, [], outputs=[score, score])
    assert losses.shape == (0,) and outs.shape == (0, 2)
    assert [p.grad for p in model.parameters()] == grads


def test_rows_may_be_any_iterable_of_numbers():
    x = leaves([0.0, 0.0])
    w = Value(0.3)
    loss = (x[0] * w + x[1]).sigmoid()
    loss.forward()
    want = Value.backward_rows(loss, x, np.array([[1, 2], [3, 4]], dtype=float))
    for rows in ([[1, 2], [3, 4]], ((1, 2), (3, 4)), ([r, r + 1] for r in (1, 3)),
                 np.array([[1, 2], [3, 4]], dtype=np.int32),
                 [map(float, (1, 2)), map(float, (3, 4))],
                 np.array([[1, 2], [3, 4]], dtype=np.float32), [[True, 2], [3, 4]]):
        assert bitlist(Value.backward_rows(loss, x, rows)) == bitlist(want)
    one = leaves([0.0])
    y = (one[0] * w).exp()
    assert Value.backward_rows(y, one, [0.5, 1.0]).shape == (2,)  # one input: bare numbers
    assert Value.backward_rows(y, one[0], [[0.5]]).shape == (1,)  # inputs: one Value


def test_the_class_and_an_instance_reach_the_same_function():
    # as Value.evaluate: a plain function, callable on every Python the package supports
    # (a staticmethod object is not callable before Python 3.10)
    assert type(Value.backward_rows) is type(Value.evaluate), type(Value.backward_rows)
    assert type(vars(Value)["backward_rows"].__func__) is not staticmethod


# ---------------------------------------------------------------------------
# Nothing else in the graph changes

def test_the_graph_keeps_its_data_and_every_grad_but_the_parameters():
    model, ins, score, loss = svm()
    ins[0].data, ins[1].data, ins[2].data = 0.5, -0.25, -1.0
    loss.forward()
    loss.backward()  # interior and input grads nonzero now
    everything = nodes_of(loss)
    params = {id(p) for p in params_of(loss, ins)}
    before = [(bits(v.data), bits(v.grad)) for v in everything if id(v) not in params]
    Value.backward_rows(loss, ins, svm_rows(20))
    Value.evaluate(loss, ins, svm_rows(5))  # evaluate recomputes data from the inputs' own
    after = [(bits(v.data), bits(v.grad)) for v in everything if id(v) not in params]
    assert [d for d, g in after] == [d for d, g in before]
    assert [g for v, (d, g) in zip([v for v in everything if id(v) not in params], after)
            if not v._prev] == [g for v, (d, g) in zip(
                [v for v in everything if id(v) not in params], before) if not v._prev]


def test_the_first_call_orders_the_graph_as_forward_does():
    # ordering a graph (the first call, or forward()) sets its interior grads to 0, as
    # forward() documents; a later call changes them no more
    x = leaves([0.3, -0.2])
    h = (x[0] * x[1] + x[0]).tanh()
    loss = h * 2.0 + x[1]
    loss.backward()
    assert (loss.grad, h.grad) == (1.0, 2.0)
    Value.backward_rows(loss, x, [[0.1, 0.2]])
    assert (loss.grad, h.grad) == (0.0, 0.0)
    loss.backward()
    Value.backward_rows(loss, x, [[0.1, 0.2]])
    assert (loss.grad, h.grad) == (1.0, 2.0)


def test_a_later_backward_is_what_it_would_have_been():
    model, ins, score, loss = svm()
    rows = svm_rows(11)
    loss.forward()
    Value.backward_rows(loss, ins, rows)
    model.zero_grad()
    for v, x in zip(ins, (0.5, 0.5, 1.0)):
        v.data = x
    loss.forward()
    loss.backward()
    after = [p.grad for p in model.parameters()]
    model.zero_grad()
    other_model, other_ins, _, other = svm()
    for v, x in zip(other_ins, (0.5, 0.5, 1.0)):
        v.data = x
    other.forward()
    other.backward()
    assert bitlist(after) == bitlist(p.grad for p in other_model.parameters())


def test_rows_of_mixed_kinds_are_rows():
    x = leaves([0.0, 0.0])
    loss = (x[0] * Value(0.3) + x[1]).sigmoid()
    want = Value.backward_rows(loss, x, [[1.0, 2.0], [3.0, 4.0]])
    got = Value.backward_rows(loss, x, [map(float, (1, 2)), (3.0, 4.0)])
    assert bitlist(got) == bitlist(want)


# ---------------------------------------------------------------------------
# Against PyTorch float64

def torch_layers(torch, model):
    """(W, b) tensors of each layer of nn.MLP `model`, leaves that keep their grads."""
    out = []
    for layer in model.layers:
        W = torch.tensor([[p.data for p in n.w] for n in layer.neurons], dtype=torch.float64,
                         requires_grad=True)
        b = torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64,
                         requires_grad=True)
        out.append((W, b))
    return out


def torch_grads(model, layers):
    """The tensors' grads in model.parameters() order: each neuron's weights, then its bias."""
    grads = []
    for (W, b) in layers:
        for j in range(W.shape[0]):
            grads += W.grad[j].tolist() + [b.grad[j].item()]
    return grads


@pytest.mark.parametrize("mean", [False, True])
def test_the_digits_classifier_follows_pytorch(torch, mean):
    model, x, t, loss = digits_classifier(seed=11)
    rows = digits_rows(50, seed=4)
    model.zero_grad()
    got = Value.backward_rows(loss, x + [t], rows, scale=1 / len(rows) if mean else 1.0)
    layers = torch_layers(torch, model)
    h = torch.tensor(rows[:, :64], dtype=torch.float64)
    for i, (W, b) in enumerate(layers):
        h = h @ W.T + b
        if i + 1 < len(layers):
            h = torch.relu(h)
    per = torch.nn.functional.cross_entropy(h, torch.tensor(rows[:, 64], dtype=torch.long),
                                            reduction="none")
    (per.mean() if mean else per.sum()).backward()
    assert np.allclose(got, per.detach().numpy(), rtol=1e-12, atol=0)
    want = np.array(torch_grads(model, layers))
    ours = np.array([p.grad for p in model.parameters()])
    assert np.abs(want).max() > 1e-3
    assert np.allclose(ours, want, rtol=1e-12, atol=1e-12 * np.abs(want).max()), \
        np.abs(ours - want).max()


# ---------------------------------------------------------------------------
# Bad input: a clear error, and the graph as it was

def small():
    x = leaves([0.0, 0.0])
    w = leaves([0.5, -0.75])
    loss = (w[0] * x[0] + w[1] * x[1]).tanh() + w[0] * w[1]
    loss.forward()
    return x, w, loss


@pytest.mark.parametrize("bad, error, match", [
    ([[1.0, 2.0, 3.0]], ValueError, "rows of 2 numbers"),
    ([1.0, 2.0], ValueError, "rows of 2 numbers"),
    (np.zeros((2, 2, 2)), ValueError, "rows of 2 numbers"),
    ([[1.0], [2.0, 3.0]], TypeError, "real numbers"),
    ([["a", 1.0]], TypeError, "real numbers"),
    ([[None, 1.0]], TypeError, "real numbers"),
    ([[1 + 2j, 0.0]], TypeError, "real numbers"),
    ("12", TypeError, "real numbers"),
    (12, TypeError, "real numbers"),
    ([[object(), 1.0]], TypeError, "real numbers"),
    ([[1.0, 2.0]] * 3 + [[0.0, math.nan]] + [[1.0, 1.0]], ValueError, "row 3 holds NaN"),
    (np.array([[1.0, 2.0]] * 9 + [[math.nan, math.nan]]), ValueError, "row 9 holds NaN"),
])
def test_bad_rows_get_a_clear_error_and_change_nothing(bad, error, match):
    x, w, loss = small()
    for v in w:
        v.grad = 0.125
    with pytest.raises(error, match=match):
        Value.backward_rows(loss, x, bad)
    assert [v.grad for v in w] == [0.125, 0.125]
    assert _check_invariants() is None


def test_bad_inputs_outputs_loss_and_scale_get_a_clear_error():
    x, w, loss = small()
    other = Value(1.0)
    name = r"Value\.backward_rows\(\)"
    cases = [
        (lambda: Value.backward_rows(1.0, x, [[0, 0]]), TypeError, "loss as a Value, not 'float'"),
        (lambda: Value.backward_rows("loss", x, [[0, 0]]), TypeError, "loss as a Value"),
        (lambda: Value.backward_rows(loss, 1.0, [[0, 0]]), TypeError, "inputs as a Value"),
        (lambda: Value.backward_rows(loss, [x[0], 2], [[0, 0]]), TypeError, "inputs 1 is 'int'"),
        (lambda: Value.backward_rows(loss, [], [[]]), ValueError, "at least one of its inputs"),
        (lambda: Value.backward_rows(loss, [x[0], x[1] * 2], [[0, 0]]), ValueError,
         f"{name}: input 1 is not a leaf"),
        (lambda: Value.backward_rows(loss, [x[0], x[0]], [[0, 0]]), ValueError,
         "inputs 0 and 1 are the same Value"),
        (lambda: Value.backward_rows(loss, [x[0], other], [[0, 0]]), ValueError,
         f"{name}: input 1 is not in the loss's graph"),
        (lambda: Value.backward_rows(loss, x, [[0, 0]], outputs=[x[0] * 3]), ValueError,
         f"{name}: output [0-9]+ is not in the graph"),
        (lambda: Value.backward_rows(loss, x, [[0, 0]], outputs=[1.0]), TypeError,
         "outputs 0 is 'float'"),
        (lambda: Value.backward_rows(loss, x, [[0, 0]], outputs=[]), ValueError,
         "at least one of its outputs"),
        (lambda: Value.backward_rows(loss, x, [[0, 0]], scale="1"), TypeError, "scale"),
        (lambda: Value.backward_rows(loss, x, [[0, 0]], scale=None), TypeError, "scale"),
        (lambda: Value.backward_rows(loss, x, [[0, 0]], scale=1j), TypeError, "scale"),
        (lambda: Value.backward_rows(w[0], x, [[0, 0]]), ValueError, "the loss is a leaf"),
        (lambda: Value.backward_rows(x[0], [x[0]], [[0]]), ValueError, "the loss is a leaf"),
    ]
    for v in w:
        v.grad = -0.5
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()
        assert [v.grad for v in w] == [-0.5, -0.5]
        assert _check_invariants() is None
    got = Value.backward_rows(loss, x, [[1, 2]])
    assert bitlist(got) == bitlist([math.tanh(0.5 - 1.5) - 0.375])


def test_an_output_not_in_the_graph_is_named_by_its_own_index():
    x, w, loss = small()
    with pytest.raises(ValueError, match=r"^Value\.backward_rows\(\): output 0 is not"):
        Value.backward_rows(loss, x, [[0, 0]], outputs=[x[0] * 3])
    with pytest.raises(ValueError, match=r"output 1 is not in the graph"):
        Value.backward_rows(loss, x, [[0, 0]], outputs=[loss, Value(1.0)])


def test_an_input_outside_the_loss_graph_is_refused_even_as_an_output():
    x, w, loss = small()
    stray = Value(3.0)
    with pytest.raises(ValueError, match="not in the"):
        Value.backward_rows(loss, x + [stray], [[1.0, 2.0, 3.0]], outputs=[stray])


def test_a_net_nodes_params_node_is_no_loss():
    model, ins, score, loss = svm()
    params = next(c for c in score._prev if c._op == "params")
    with pytest.raises(ValueError, match="the loss is a leaf"):
        Value.backward_rows(params, ins[:2], [[0.0, 0.0]])


def test_a_node_with_given_grads_is_refused():
    x, w, loss = small()
    given = Value(math.sin(loss.data), (loss,), "sin", grads=(math.cos(loss.data),))
    top = given * w[0]
    with pytest.raises(ValueError, match="cannot recompute .*grads="):
        Value.backward_rows(top, x, [[0.0, 0.0]])
    with pytest.raises(ValueError, match="cannot recompute .*grads="):
        Value.backward_rows(top, x, [[0.0, 0.0]])  # and again, from the cached order
    assert _check_invariants() is None


def test_a_hand_built_node_without_grads_is_a_constant_as_backward_treats_it():
    x = leaves([0.0, 0.0])
    w = Value(0.5)
    custom = Value(2.0, (x[0] * w, w), "mine")  # micrograd: its data given, no chain rule
    loss = (custom * x[1] + w * x[0]).tanh()
    loss.forward()
    rows = np.random.default_rng(5).normal(size=(11, 2))
    got = Value.backward_rows(loss, x, rows)
    grads = (w.grad, custom.grad)
    w.grad = custom.grad = 0.0
    want, _ = per_row(loss, x, rows)
    assert bitlist(got) == bitlist(want)
    assert bitlist(grads) == bitlist((w.grad, custom.grad))


def test_an_input_only_a_hand_built_node_holds_is_in_the_graph():
    x = Value(0.0)
    hand = Value(0.0, [x], "hand")
    assert Value.evaluate(hand, [x], [[0.0], [1.0]]).tolist() == [0.0, 0.0]
    w = Value(2.0)
    assert Value.backward_rows(hand * w, [x], [[1.0]]).tolist() == [0.0]


def grads_of(vs):
    return bitlist(v.grad for v in vs)


@pytest.mark.parametrize("bad_row, n", [(5, 10), (13, 20), (0, 1), (8, 9)])
@pytest.mark.parametrize("target", [10, -1, 2.5, math.inf, -math.inf, 1e300])
def test_an_out_of_range_target_names_its_row_and_restores_every_grad(bad_row, n, target):
    model, x, t, loss = digits_classifier(seed=3)
    loss.forward()
    rows = digits_rows(n, seed=bad_row)
    rows[bad_row, 64] = target
    params = model.parameters()
    for k, p in enumerate(params):
        p.grad = (k % 7) * 0.125 - 0.25
    everything = nodes_of(loss)
    before = state(everything)
    with pytest.raises(IndexError, match=rf"^Value\.backward_rows\(\): row {bad_row}: "
                                          r"cross_entropy: the target must be"):
        Value.backward_rows(loss, x + [t], rows)
    assert state(everything) == before  # every grad (the parameters' too) as it was
    assert _check_invariants() is None
    rows[bad_row, 64] = 3
    check_rows(loss, x + [t], rows)  # a good call after it is still right


@pytest.mark.parametrize("bad_row", [2, 11])
def test_a_row_an_op_cannot_take_names_the_row_and_restores_every_grad(bad_row):
    x = leaves([1.0, 1.0])
    w = Value(0.5)
    loss = (x[0] * w).log() + (x[1] / w).sqrt() * w
    loss.forward()
    rows = np.full((14, 2), 2.0)
    rows[bad_row] = [-1.0, 2.0]
    w.grad = 0.75
    with pytest.raises(ValueError, match=f"^Value.backward_rows\\(\\): row {bad_row}: math "
                                         f"domain error"):
        Value.backward_rows(loss, x, rows)
    assert w.grad == 0.75
    rows[bad_row] = [2.0, -4.0]
    with pytest.raises(ValueError, match=f"row {bad_row}: math domain error"):
        Value.backward_rows(loss, x, rows)
    assert w.grad == 0.75
    rows[bad_row] = [2.0, 2.0]
    check_rows(loss, x, rows)
    y = leaves([1.0])
    z = (Value(1.0) / y[0]).exp()
    z.forward()
    with pytest.raises(ZeroDivisionError, match="row 1: float division by zero"):
        Value.backward_rows(z, y, [[1.0], [0.0]])
    with pytest.raises(OverflowError, match="row 2: math range error"):
        Value.backward_rows(z, y, [[1.0], [2.0], [1e-3]])
    assert _check_invariants() is None


# ---------------------------------------------------------------------------
# The program cached on the loss

def test_other_inputs_and_outputs_on_one_loss_alternate_and_each_is_right():
    x = leaves([0.0, 0.0])
    t = Value(0.0)
    w = leaves([0.5, -1.25, 0.75])
    h = (w[0] * x[0] + w[1] * x[1]).tanh()
    logits = [h * w[2], x[1] - h, Value.dot(w, [x[0], x[1], h])]
    loss = Value.cross_entropy(logits, t)
    loss.forward()
    rows = np.random.default_rng(7).normal(size=(10, 2))
    with_t = np.hstack([rows, (np.arange(10) % 3)[:, None]])
    calls = [
        lambda: check_rows(loss, x + [t], with_t),
        lambda: check_rows(loss, [t, x[1], x[0]], with_t[:, [2, 1, 0]]),
        lambda: check_rows(loss, x + [t], with_t, outputs=[h, logits[2]]),
        lambda: check_rows(loss, [x[0]], rows[:, :1]),  # x[1] and t keep their data
        lambda: check_rows(loss, x + [t], with_t, outputs=h),
    ]
    for k in range(3):
        for call in calls if k % 2 == 0 else reversed(calls):
            call()
            evaluated = Value.evaluate(loss, x + [t], with_t)  # interleaved: its own program
            assert bitlist(evaluated) == bitlist(Value.backward_rows(loss, x + [t], with_t))
    assert _check_invariants() is None


def test_new_parameter_values_are_read_at_each_call():
    model, ins, score, loss = svm()
    rows = svm_rows(12)
    loss.forward()
    for step in range(3):
        model.zero_grad()
        Value.backward_rows(loss, ins, rows, scale=1 / 12)
        for p in model.parameters():
            p.data -= 0.5 * p.grad
        check_rows(loss, ins, rows, scale=1.0)


def test_the_graph_is_fixed_when_built_whatever_the_model_does_after():
    model, ins, score, loss = svm()
    loss.forward()
    old = model.layers[0].neurons[0].w[0]
    model.layers[0].neurons[0].w[0] = Value(9.0)  # the graph keeps the weight it read
    check_rows(loss, ins, svm_rows(9))
    assert model.layers[0].neurons[0].w[0].grad == 0.0
    assert any(p is old for p in params_of(loss, ins))
    fresh = (1 + -ins[2] * model(ins[:2])).relu()  # a new graph reads the new weight
    fresh.forward()
    check_rows(fresh, ins, svm_rows(9))


class Leaf(Value):
    """A subclass: its instances take weak references, and live on Python's heap."""


def test_subclass_instances_can_be_inputs_and_parameters():
    x = [Leaf(0.0), Leaf(0.0)]
    w = [Leaf(0.5), Leaf(-0.25), Value(0.125)]
    random.seed(9)
    model = nn.MLP(2, [4, 1])
    model.layers[0].neurons[1].w[0] = w[0]
    loss = (model(x) * w[1] + Value.dot(w[:2], x, w[2], relu=True)).tanh()
    loss.forward()
    check_rows(loss, x, np.random.default_rng(8).normal(size=(13, 2)))


def test_the_cached_program_keeps_no_value_alive():
    x = [Leaf(0.0), Leaf(0.0)]
    w = Leaf(0.5)
    random.seed(10)
    model = nn.MLP(2, [3, 1])
    loss = (model(x) * w).relu() + w
    Value.backward_rows(loss, x, [[1.0, 2.0]] * 9)
    Value.backward_rows(loss, x, [[1.0, 2.0]] * 3, outputs=[w])
    Value.evaluate(loss, x, [[1.0, 2.0]])
    refs = [weakref.ref(v) for v in x + [w]]
    del x, w, model, loss
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    assert _check_invariants() is None


def test_building_calling_and_dropping_graphs_returns_their_memory():
    import tracemalloc

    def once():
        model, ins, score, loss = svm()
        Value.backward_rows(loss, ins, svm_rows(20))
        Value.backward_rows(loss, ins[::-1], svm_rows(3)[:, ::-1], outputs=score)
        Value.evaluate([loss, score], ins, svm_rows(9))

    once()
    tracemalloc.start()
    try:
        for _ in range(3):
            once()
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(30):
            once()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, grown  # a graph is ~40 KB: 30 kept would be >1 MB


# ---------------------------------------------------------------------------
# Hostile: numbers whose float() runs the engine, objects freed mid-call, threads

def exact_graph():
    """A graph whose numbers are all exact (small dyadic rationals, no rounding): its grads
    add up to the same bits in any order, so that interleaved calls can be checked exactly."""
    x = leaves([0.0, 0.0])
    w = leaves([0.5, -0.25, 0.75, 2.0])
    h = Value.dot(w[:2], x, w[2], relu=True)
    loss = (h * w[3] + x[0] * w[0]).relu() + (x[1] - w[1]) * w[3]
    loss.forward()
    return x, w, loss


EXACT_ROWS = [[float(a), float(b)] for a in range(-3, 4) for b in (-2, 1, 3)]


class Reentrant:
    """A number (numbers.Real) whose float() first calls into the engine on the graph it is
    a row of: forward(), backward(), evaluate and backward_rows, with other inputs too."""
    def __init__(self, value, graph, log):
        self.value, self.graph, self.log = value, graph, log

    def __float__(self):
        x, w, loss = self.graph
        x[0].data, x[1].data = 1.0, 2.0
        loss.forward()
        loss.backward()
        Value.evaluate(loss, x, [[1.0, 2.0]])
        Value.backward_rows(loss, x[::-1], [[2.0, 1.0]])  # another program for the loss
        Value.backward_rows(loss, x, [[1.0, 2.0]], outputs=[w[0]])
        self.log.append(1)
        return float(self.value)


numbers.Real.register(Reentrant)


def test_rows_whose_float_reenters_the_same_graph_get_the_right_answer():
    graph = exact_graph()
    x, w, loss = graph
    log = []
    rows = [[Reentrant(a, graph, log), b] for a, b in EXACT_ROWS]
    got = Value.backward_rows(loss, x, rows)
    reentries = len(log)
    assert reentries >= len(rows)
    # the same calls, one after the other, on a twin graph
    tx, tw, twin = exact_graph()
    for _ in range(reentries):
        tx[0].data, tx[1].data = 1.0, 2.0
        twin.forward()
        twin.backward()
        Value.backward_rows(twin, tx[::-1], [[2.0, 1.0]])
        Value.backward_rows(twin, tx, [[1.0, 2.0]], outputs=[tw[0]])
    want = Value.backward_rows(twin, tx, EXACT_ROWS)
    assert bitlist(got) == bitlist(want)
    assert grads_of(w) == grads_of(tw)
    assert _check_invariants() is None
    got = Value.evaluate(loss, x, [[Reentrant(a, graph, log), b] for a, b in EXACT_ROWS])
    assert bitlist(got) == bitlist(want)
    assert _check_invariants() is None


def subclass_graph():
    """exact_graph with subclass leaves, which take weak references."""
    x = [Leaf(0.0), Leaf(0.0)]
    w = [Leaf(0.5), Leaf(-0.25), Leaf(0.75)]
    loss = (Value.dot(w[:2], x, w[2], relu=True) * 2.0 + x[0] * w[0]).relu()
    loss.forward()
    return x, w, loss


def test_rows_whose_float_drops_the_caller_s_graph():
    holder = [subclass_graph()]
    refs = [weakref.ref(v) for v in holder[0][0] + holder[0][1]]

    class Dropper:
        def __float__(self):
            holder.clear()  # the call's own references keep the graph alive
            gc.collect()
            return 1.0
    numbers.Real.register(Dropper)
    got = Value.backward_rows(holder[0][2], holder[0][0], [[Dropper(), 2.0], [1.0, 2.0]],
                              outputs=[holder[0][1][0]])
    assert got[0][0] == got[0][1] and got[1].tolist() == [[0.5], [0.5]]
    assert holder == []
    gc.collect()
    assert [r() for r in refs] == [None] * 5  # and nothing else kept it
    assert _check_invariants() is None


def test_rows_whose_float_raises_after_calling_the_engine():
    x, w, loss = exact_graph()

    class Raiser:
        def __float__(self):
            Value.backward_rows(loss, x, [[1.0, 1.0]])  # adds; then this row fails
            raise RuntimeError("no number here")
    numbers.Real.register(Raiser)
    with pytest.raises(RuntimeError, match="no number here"):
        Value.backward_rows(loss, x, [[1.0, 2.0], [Raiser(), 0.0]])
    with pytest.raises(RuntimeError, match="no number here"):
        Value.evaluate(loss, x, [[Raiser(), 0.0]])
    tx, tw, twin = exact_graph()
    Value.backward_rows(twin, tx, [[1.0, 1.0]])
    Value.backward_rows(twin, tx, [[1.0, 1.0]])
    assert grads_of(w) == grads_of(tw)  # what the re-entrant calls added, nothing more
    assert _check_invariants() is None


def test_a_collection_inside_the_call_can_run_any_engine_call():
    # the call allocates Python objects (lists, arrays, memoryviews) between ordering the graph
    # and running it: a collection there runs finalizers, which here call the same loss
    graph = exact_graph()
    x, w, loss = graph
    fired = []

    class Bomb:
        def __del__(self):
            if len(fired) < 200:
                fired.append(1)
                Value.backward_rows(loss, x, [[1.0, 2.0]] * 3)  # another width of block
                Value.backward_rows(loss, x[::-1], [[2.0, 1.0]])  # another program
                Value.evaluate(loss, x, [[1.0, 2.0]] * 5)

    old = gc.get_threshold()
    gc.disable()
    try:
        for _ in range(300):
            b = Bomb()
            b.me = b  # a cycle: only a collection frees it
        del b
        gc.set_threshold(1, 1, 1)
        gc.enable()
        got = Value.backward_rows(loss, x, EXACT_ROWS)
        during = len(fired)
        got_eval = Value.evaluate(loss, x, EXACT_ROWS)
    finally:
        gc.set_threshold(*old)
        gc.enable()
        gc.collect()
    assert during > 0  # finalizers ran inside the call
    n = during
    tx, tw, twin = exact_graph()
    for _ in range(n):
        Value.backward_rows(twin, tx, [[1.0, 2.0]] * 3)
        Value.backward_rows(twin, tx[::-1], [[2.0, 1.0]])
    want = Value.backward_rows(twin, tx, EXACT_ROWS)
    assert bitlist(got) == bitlist(want) and bitlist(got_eval) == bitlist(want)
    # every call's grads are exact: any interleaving adds up to the same bits
    for _ in range(len(fired) - n):
        Value.backward_rows(twin, tx, [[1.0, 2.0]] * 3)
        Value.backward_rows(twin, tx[::-1], [[2.0, 1.0]])
    assert grads_of(w) == grads_of(tw)
    assert _check_invariants() is None


class Yielding:
    """A number whose float() gives the other threads the interpreter."""
    def __init__(self, value):
        self.value = value

    def __float__(self):
        for _ in range(20):
            pass
        return float(self.value)


numbers.Real.register(Yielding)


def test_two_threads_on_one_loss_get_what_one_thread_gets():
    x, w, loss = exact_graph()
    ax, aw, one = exact_graph()
    alone = Value.backward_rows(one, ax, EXACT_ROWS)
    results = {}
    calls = 12

    def work(k):
        out = []
        for i in range(calls):
            rows = [[Yielding(a), Yielding(b)] for a, b in EXACT_ROWS]
            if (i + k) % 2:  # the columns the other way round: another program
                out.append(Value.backward_rows(loss, x[::-1], [r[::-1] for r in rows]))
            else:
                out.append(Value.backward_rows(loss, x, rows, outputs=[w[0]])[0])
        results[k] = out

    was = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        in_threads(work, 0, 1)
    finally:
        sys.setswitchinterval(was)
    for k in (0, 1):
        for got in results[k]:
            assert bitlist(got) == bitlist(alone)
    tx, tw, twin = exact_graph()
    for _ in range(2 * calls):
        Value.backward_rows(twin, tx, EXACT_ROWS)
    assert grads_of(w) == grads_of(tw)
    assert _check_invariants() is None


# ---------------------------------------------------------------------------
# Out of memory (debug build): each allocation in turn fails

def fail_each_allocation(make, calls, limit=400):
    """For n = 0, 1, ...: a fresh graph (make(): (inputs, loss, parameters in an order of their
    own: _prev is a set), its parameters' grads at 0,
    then each of calls(graph) in turn with the n-th allocation from the start failing. A call
    that raises MemoryError leaves every grad as it was and the engine whole; once all
    succeed they give what they give with memory to spare. Returns the n that succeeded."""
    def run(g, fail_at):
        params = g[2]
        assert {id(p) for p in params} == {id(p) for p in params_of(g[1], g[0])}
        for p in params:
            p.grad = 0.0
        out = []
        engine._fail_allocations(fail_at)
        try:
            for call in calls(g):
                before = state(nodes_of(g[1]))
                try:
                    out.append(call())
                except MemoryError:
                    assert state(nodes_of(g[1])) == before
                    return None, params
        finally:
            engine._fail_allocations(-1)
            assert _check_invariants() is None
        return out, params

    want, params = run(make(), -1)
    want_grads = grads_of(params)
    for n in range(limit):
        got, params = run(make(), n)
        if got is None:
            continue
        flat = lambda xs: [bitlist(np.ravel(a)) for a in xs]  # noqa: E731
        assert flat(got) == flat(want)
        assert grads_of(params) == want_grads
        return n
    raise AssertionError(f"still failing after {limit} allocations")


@debug_only
@pytest.mark.parametrize("replayed", [True, False])
def test_failing_allocations_give_memory_error_or_the_right_answer(replayed):
    def make():
        x = leaves([0.0, 0.0])
        w = leaves([0.5, -0.25, 0.75, 2.0])
        h = Value.dot(w[:2], x, w[2], relu=True)
        loss = (h * w[3] + x[0] * w[0]).relu() + (x[1] - w[1]) * w[3]
        if replayed:
            loss.forward()  # its order cached; else the call orders it
        return x, loss, w

    def calls(g):
        x, loss, _ = g
        return [lambda: Value.backward_rows(loss, x, EXACT_ROWS),
                lambda: Value.backward_rows(loss, x[::-1], [r[::-1] for r in EXACT_ROWS[:5]],
                                            outputs=[loss])[1],
                lambda: Value.evaluate(loss, x, EXACT_ROWS[:9]),
                lambda: Value.backward_rows(loss, x, EXACT_ROWS)]

    assert fail_each_allocation(make, calls) > 3


@debug_only
def test_failing_allocations_on_a_net_node_and_a_cross_entropy():
    def make():
        random.seed(12)
        model = nn.MLP(3, [5, 4])
        x = leaves([0.0, 0.0, 0.0])
        t = Value(0.0)
        other = nn.MLP(3, [4, 1])
        loss = Value.cross_entropy(model(x) + [other(x)], t)
        return x + [t], loss, model.parameters() + other.parameters()

    rows = [[0.5, -1.0, 2.0, k % 5] for k in range(11)]

    def calls(g):
        ins, loss, _ = g
        return [lambda: Value.backward_rows(loss, ins, rows),
                lambda: Value.evaluate(loss, ins, rows),
                lambda: Value.backward_rows(loss, ins[:3], [r[:3] for r in rows],
                                            outputs=[loss])[1]]

    assert fail_each_allocation(make, calls) > 3


@debug_only
def test_a_failed_call_leaves_the_cached_program_usable():
    x, w, loss = exact_graph()
    want = Value.backward_rows(loss, x, EXACT_ROWS)
    for n in range(12):
        for v in w:
            v.grad = 0.0
        engine._fail_allocations(n)
        try:
            Value.backward_rows(loss, x[::-1], [r[::-1] for r in EXACT_ROWS[:3]])
            Value.backward_rows(loss, x, EXACT_ROWS[:1])
        except MemoryError:
            pass
        finally:
            engine._fail_allocations(-1)
        assert _check_invariants() is None
        for v in w:
            v.grad = 0.0
        assert bitlist(Value.backward_rows(loss, x, EXACT_ROWS)) == bitlist(want)
        tx, tw, twin = exact_graph()
        Value.backward_rows(twin, tx, EXACT_ROWS)
        assert grads_of(w) == grads_of(tw)
