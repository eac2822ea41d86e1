"""Value.gather: table[index] as one node (an embedding's lookup), index an int or a Value
whose data a replay (forward(), Value.evaluate, Value.backward_rows) reads again. Values and
grads against PyTorch's indexing and torch.nn.functional.embedding; a GPT-like graph of
token and position embeddings in backward_rows, bit for bit against forward()/backward()
row after row."""
import math
import random

import numpy as np
import pytest

from micrograd_cy import Value, nn
from micrograd_cy.engine import _check_invariants
from test_backward_rows import bitlist, check_rows, grads_of, nodes_of, per_row, state


def table(n, seed=0):
    rng = random.Random(seed)
    return [Value(rng.uniform(-1, 1)) for _ in range(n)]


def rows_table(v, d, seed=0):
    rng = random.Random(seed)
    return [[Value(rng.uniform(-1, 1)) for _ in range(d)] for _ in range(v)]


# ---------------------------------------------------------------------------
# One node, its value and its grads

def test_a_lookup_is_the_entry_and_gives_its_grad_to_that_entry_only(torch):
    tab = table(5)
    y = Value.gather(tab, 3) * 2.0 + Value.gather(tab, 0) ** 2 + Value.gather(tab, 3).tanh()
    assert y._op == "+" and Value.gather(tab, 3)._op == "gather"
    y.backward()
    ref = torch.tensor([v.data for v in tab], dtype=torch.float64, requires_grad=True)
    out = ref[3] * 2.0 + ref[0] ** 2 + ref[3].tanh()
    out.backward()
    assert math.isclose(y.data, out.item(), rel_tol=1e-15)  # tanh: to an ulp
    assert np.allclose([v.grad for v in tab], ref.grad.numpy(), rtol=1e-15, atol=0)
    assert tab[1].grad == tab[2].grad == tab[4].grad == 0.0


def test_a_table_of_rows_gives_a_node_a_column_as_embedding_does(torch):
    F = torch.nn.functional
    emb = rows_table(6, 4, seed=1)
    w = [Value(x) for x in (0.5, -1.0, 2.0, 0.25)]
    for index in (4, Value(1.0)):
        for row in emb:
            for v in row:
                v.grad = 0.0
        cols = Value.gather(emb, index)
        assert isinstance(cols, list) and len(cols) == 4
        assert all(c._op == "gather" for c in cols)
        loss = Value.dot(w, cols).tanh()
        loss.backward()
        E = torch.tensor([[v.data for v in row] for row in emb], dtype=torch.float64,
                         requires_grad=True)
        W = torch.tensor([v.data for v in w], dtype=torch.float64)
        i = int(index if isinstance(index, int) else index.data)
        ref = (F.embedding(torch.tensor([i]), E)[0] @ W).tanh()
        ref.backward()
        assert math.isclose(loss.data, ref.item(), rel_tol=1e-15)
        assert np.allclose([[v.grad for v in row] for row in emb], E.grad.numpy(),
                           rtol=1e-14, atol=0)


def test_numbers_in_the_table_become_leaves_and_any_sequence_is_a_table():
    assert Value.gather([1.0, 2.5, 3], 1).data == 2.5
    assert Value.gather((x for x in (1.0, 2.0)), 1).data == 2.0
    assert [c.data for c in Value.gather([(1.0, 2.0), [3.0, 4.0]], 1)] == [3.0, 4.0]
    assert Value.gather([Value(7.0)], np.int64(0)).data == 7.0  # any Integral


def test_an_index_value_is_read_again_by_a_replay():
    tab = table(4, seed=2)
    i = Value(2.0)
    y = Value.gather(tab, i) * Value.gather(tab, 0)
    assert y.data == tab[2].data * tab[0].data
    for k in (3, 0, 1):
        i.data = float(k)
        y.forward()
        assert y.data == tab[k].data * tab[0].data
        for v in tab:
            v.grad = 0.0
        y.backward()
        got = [v.grad for v in tab]
        want = [0.0] * 4
        want[k] += tab[0].data
        want[0] += tab[k].data
        assert got == want and i.grad == 0.0  # the index gets no grad
    assert Value.evaluate(y, [i], [[3], [1], [0]]).tolist() == [
        tab[3].data * tab[0].data, tab[1].data * tab[0].data, tab[0].data * tab[0].data]


def test_an_interior_node_can_be_the_index():
    tab = table(5, seed=3)
    t = Value(1.0)
    y = Value.gather(tab, t * 2 + 1).exp()
    assert y.data == math.exp(tab[3].data)
    assert Value.evaluate(y, [t], [[0], [1.5], [1]]).tolist() == [
        math.exp(tab[1].data), math.exp(tab[4].data), math.exp(tab[3].data)]


# ---------------------------------------------------------------------------
# What it refuses

@pytest.mark.parametrize("make, error, match", [
    (lambda: Value.gather([], 0), ValueError, "at least one entry"),
    (lambda: Value.gather([], Value(0.0)), ValueError, "at least one entry"),
    (lambda: Value.gather([[Value(1.0)], [Value(1.0), Value(2.0)]], 0), ValueError,
     "row 1 of the table has 2 entries, row 0 has 1"),
    (lambda: Value.gather([Value(1.0)], True), TypeError, "not 'bool'"),
    (lambda: Value.gather([Value(1.0)], 0.0), TypeError, "not 'float'"),
    (lambda: Value.gather([Value(1.0)], "0"), TypeError, "not 'str'"),
    (lambda: Value.gather([Value(1.0)], None), TypeError, "not 'NoneType'"),
    (lambda: Value.gather(3, 0), TypeError, "sequence as its table"),
    (lambda: Value.gather([Value(1.0), "a"], 0), TypeError, "str"),
    (lambda: Value.gather([[1.0, 2.0], Value(1.0)], 0), TypeError, "each row"),
    (lambda: Value.gather([Value(1.0), Value(2.0)], 2), IndexError, "gather: the index"),
    (lambda: Value.gather([Value(1.0), Value(2.0)], -1), IndexError, "gather: the index"),
    (lambda: Value.gather([Value(1.0), Value(2.0)], 2 ** 70), (IndexError, OverflowError),
     "index|int"),
    (lambda: Value.gather([Value(1.0), Value(2.0)], Value(0.5)), IndexError, "whole number"),
    (lambda: Value.gather([Value(1.0), Value(2.0)], Value(math.nan)), IndexError, "gather"),
    (lambda: Value.gather([Value(1.0), Value(2.0)], Value(-0.5)), IndexError, "gather"),
    (lambda: Value.gather([[Value(1.0)], [Value(2.0)]], 2), IndexError, "gather"),
])
def test_bad_tables_and_indices_get_a_clear_error(make, error, match):
    with pytest.raises(error, match=match):
        make()
    assert _check_invariants() is None


def test_a_table_of_empty_rows_still_checks_the_index():
    with pytest.raises(IndexError):
        Value.gather([[], []], 5)


def test_an_index_out_of_range_at_replay_raises_and_a_good_one_recovers():
    tab = table(3, seed=4)
    i = Value(1.0)
    y = Value.gather(tab, i) + 1.0
    for bad in (3.0, -1.0, 0.5, math.inf):
        i.data = bad
        with pytest.raises(IndexError, match="gather: the index"):
            y.forward()
        with pytest.raises(IndexError, match="row 1: gather: the index"):
            Value.evaluate(y, [i], [[0.0], [bad]])
        assert _check_invariants() is None
    i.data = 2.0
    assert y.forward().data == tab[2].data + 1.0
    y.backward()
    assert [v.grad for v in tab] == [0.0, 0.0, 1.0]


# ---------------------------------------------------------------------------
# In backward_rows

def embedding_model(V=7, T=3, D=4, seed=5):
    """A GPT's first steps on one row of T tokens: token and position embeddings looked up
    (wte, wpe: tables of rows), added, mixed by a small MLP a position, averaged, then a
    head of V logits and the cross-entropy of the next token. The tokens and the target are
    index inputs."""
    random.seed(seed)
    wte = rows_table(V, D, seed=seed)
    wpe = rows_table(T, D, seed=seed + 1)
    toks = [Value(0.0) for _ in range(T)]
    target = Value(0.0)
    mlp = nn.MLP(D, [8, D])
    head = nn.MLP(D, [V])
    hs = []
    for t, tok in enumerate(toks):
        x = [a + b for a, b in zip(Value.gather(wte, tok), Value.gather(wpe, t))]
        hs.append([h + xi for h, xi in zip(mlp(x), x)])  # a residual
    pooled = [Value.sum(col) * (1 / T) for col in zip(*hs)]
    loss = Value.cross_entropy(head(pooled), target)
    params = [v for row in wte + wpe for v in row] + mlp.parameters() + head.parameters()
    return toks + [target], loss, params, (wte, wpe)


def token_rows(n, V=7, T=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, size=(n, T + 1)).astype(float)


@pytest.mark.parametrize("n", [1, 8, 13])
def test_an_embedding_graph_in_backward_rows_equals_per_row_backward(n):
    ins, loss, params, _ = embedding_model()
    loss.forward()
    rows = token_rows(n, seed=n)
    rows[0, :3] = [2, 2, 2]  # one token three times a row: its embedding gets three edges
    check_rows(loss, ins, rows)
    check_rows(loss, ins, rows, scale=1 / n, reference=loss * (1 / n), seed=1)
    check_rows(loss, ins[:3], rows[:, :3], seed=2)  # the target a constant now


def test_an_embedding_graph_follows_pytorch(torch):
    F = torch.nn.functional
    ins, loss, params, (wte, wpe) = embedding_model(seed=6)
    rows = token_rows(20, seed=9)
    for p in params:
        p.grad = 0.0
    losses = Value.backward_rows(loss, ins, rows)

    def tensor(vs):
        return torch.tensor([[v.data for v in r] for r in vs], dtype=torch.float64,
                            requires_grad=True)

    E, P = tensor(wte), tensor(wpe)
    mlp_layers = [p for p in params[len(wte) * 4 + len(wpe) * 4:]]
    # the MLPs as tensors: nn.MLP(4, [8, 4]) then nn.MLP(4, [7]), neuron by neuron
    flat = torch.tensor([p.data for p in mlp_layers], dtype=torch.float64, requires_grad=True)

    def layer(h, k, nin, nout, relu):
        W = flat[k:k + nout * (nin + 1)].reshape(nout, nin + 1)
        h = h @ W[:, :nin].T + W[:, nin]
        return (torch.relu(h) if relu else h), k + nout * (nin + 1)

    toks = torch.tensor(rows[:, :3], dtype=torch.long)
    x = F.embedding(toks, E) + P  # (N, T, D)
    h, k = layer(x, 0, 4, 8, True)
    h, k = layer(h, k, 8, 4, False)
    pooled = (h + x).sum(dim=1) * (1 / 3)
    logits, k = layer(pooled, k, 4, 7, False)
    per = F.cross_entropy(logits, torch.tensor(rows[:, 3], dtype=torch.long), reduction="none")
    per.sum().backward()
    assert np.allclose(losses, per.detach().numpy(), rtol=1e-12, atol=0)
    want = np.concatenate([E.grad.numpy().ravel(), P.grad.numpy().ravel(), flat.grad.numpy()])
    ours = np.array([p.grad for p in params])
    assert np.abs(want).max() > 1e-3
    assert np.allclose(ours, want, rtol=1e-11, atol=1e-12), np.abs(ours - want).max()


@pytest.mark.parametrize("bad_row, n", [(5, 10), (12, 16)])
@pytest.mark.parametrize("bad", [7, -1, 0.5, 1e20])
def test_an_index_out_of_range_in_a_row_names_it_and_restores_every_grad(bad_row, n, bad):
    ins, loss, params, _ = embedding_model()
    loss.forward()
    rows = token_rows(n, seed=3)
    rows[bad_row, 1] = bad
    for k, p in enumerate(params):
        p.grad = k * 0.25
    everything = nodes_of(loss)
    before = state(everything)
    with pytest.raises(IndexError, match=rf"^Value\.backward_rows\(\): row {bad_row}: gather: "
                                          r"the index must be"):
        Value.backward_rows(loss, ins, rows)
    assert state(everything) == before
    with pytest.raises(IndexError, match=f"row {bad_row}: gather"):
        Value.evaluate(loss, ins, rows)
    assert _check_invariants() is None
    rows[bad_row, 1] = 6
    check_rows(loss, ins, rows)  # a good call after it is still right


def test_a_gather_of_numbers_and_an_index_input_in_backward_rows():
    # an index input as the only input; the table's leaves made from numbers
    i = Value(0.0)
    w = Value(1.5)
    y = (Value.gather([0.5, -2.0, 3.0], i) * w).sigmoid() + Value.gather([w, w * w], i * 0)
    y.forward()
    got = Value.backward_rows(y, [i], [[0], [1], [2], [1]])
    g = w.grad
    w.grad = 0.0
    want, _ = per_row(y, [i], [[0], [1], [2], [1]])
    assert bitlist(got) == bitlist(want) and bitlist([g]) == bitlist([w.grad])
    assert grads_of([w]) == bitlist([g])
