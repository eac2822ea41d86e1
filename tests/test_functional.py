"""micrograd_cy.functional against torch.nn.functional in float64: values and gradients,
large logits, replay with new inputs and targets, and bad input."""
import math
import numbers
import random

import pytest
from conftest import in_threads
import torch
import torch.nn.functional as TF

from micrograd_cy import Value
from micrograd_cy import functional as F

pytestmark = pytest.mark.torch  # PyTorch is the oracle of every test here


def close(ours, theirs, tol=1e-12):
    return math.isclose(ours, theirs, rel_tol=tol, abs_tol=tol)


def rows(seed, n=7, scale=3.0):
    rng = random.Random(seed)
    return [rng.uniform(-scale, scale) for _ in range(n)]


def both(data):
    return [Value(x) for x in data], torch.tensor(data, dtype=torch.float64, requires_grad=True)


def check(outs, theirs, leaves, t, weights):
    """outs against theirs, and the gradient of sum(w * out) at the leaves."""
    assert len(outs) == len(theirs)
    for o, e in zip(outs, theirs.tolist()):
        assert close(o.data, e), (o.data, e)
    Value.dot(weights, outs).backward()
    (torch.tensor(weights, dtype=torch.float64) * theirs).sum().backward()
    for leaf, g in zip(leaves, t.grad.tolist()):
        assert close(leaf.grad, g), (leaf.grad, g)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale", [3.0, 1000.0])
def test_softmax_and_log_softmax(seed, scale):
    data = rows(seed, scale=scale)
    weights = rows(seed + 100)
    for ours, theirs in ((F.softmax, TF.softmax), (F.log_softmax, TF.log_softmax)):
        leaves, t = both(data)
        check(ours(leaves), theirs(t, dim=0), leaves, t, weights)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale", [3.0, 1000.0])
def test_cross_entropy(seed, scale):
    data = rows(seed, scale=scale)
    for target in (0, 3, 6):
        leaves, t = both(data)
        loss = F.cross_entropy(leaves, target)
        theirs = TF.cross_entropy(t.unsqueeze(0), torch.tensor([target]))
        assert close(loss.data, theirs.item()) and math.isfinite(loss.data)
        (loss * 0.7).backward()
        (theirs * 0.7).backward()
        assert all(close(v.grad, g) for v, g in zip(leaves, t.grad.tolist()))


def test_cross_entropy_is_microgpts_composite_and_replays_with_a_new_target():
    data = rows(9)
    leaves = [Value(x) for x in data]
    target = Value(2.0)
    loss = F.cross_entropy(leaves, target)
    top = max(data)
    exps = [(v - top).exp() for v in leaves]
    composite = -(exps[2] / sum(exps)).log()  # microgpt's softmax, then -log p
    assert close(loss.data, composite.data)
    target.data = 5
    leaves[5].data = 0.25
    loss.forward()
    t = torch.tensor([x if i != 5 else 0.25 for i, x in enumerate(data)], dtype=torch.float64)
    assert close(loss.data, TF.cross_entropy(t.unsqueeze(0), torch.tensor([5])).item())
    loss.backward()
    assert target.grad == 0.0
    target.data = 7  # out of range: the replay refuses, the graph stays usable
    with pytest.raises(IndexError, match="index of a class"):
        loss.forward()
    target.data = 1
    assert loss.forward().data > 0


@pytest.mark.parametrize("target, error", [
    (7, IndexError), (-1, IndexError), (2.5, TypeError), (True, TypeError), ("1", TypeError),
])
def test_cross_entropy_refuses_bad_targets(target, error):
    with pytest.raises(error):
        F.cross_entropy([Value(0.0)] * 7, target)
    with pytest.raises(IndexError):
        F.cross_entropy([Value(0.0)] * 7, Value(2.5))
    with pytest.raises(ValueError, match="at least one"):
        F.cross_entropy([], 0)


def test_a_numpy_integer_target_and_number_logits():
    np = pytest.importorskip("numpy")
    loss = F.cross_entropy([1.0, 2.0, 3.0], np.int64(2))
    t = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    assert close(loss.data, TF.cross_entropy(t, torch.tensor([2])).item())


@pytest.mark.parametrize("eps", [1e-5, 1e-2, 0.0])
def test_rmsnorm(eps):
    data = rows(3)
    leaves, t = both(data)
    theirs = TF.rms_norm(t, (len(data),), eps=eps)
    check(F.rmsnorm(leaves, eps=eps), theirs, leaves, t, rows(4))


def test_linear():
    x, tx = both(rows(5, n=4))
    w = [[Value(v) for v in rows(10 + j, n=4)] for j in range(3)]
    b = [Value(v) for v in rows(20, n=3)]
    tw = torch.tensor([[v.data for v in r] for r in w], dtype=torch.float64, requires_grad=True)
    tb = torch.tensor([v.data for v in b], dtype=torch.float64, requires_grad=True)
    check(F.linear(x, w, b), TF.linear(tx, tw, tb), x, tx, [1.0, -2.0, 0.5])
    assert all(close(v.grad, g) for r, tr in zip(w, tw.grad.tolist()) for v, g in zip(r, tr))
    assert all(close(v.grad, g) for v, g in zip(b, tb.grad.tolist()))
    assert len(F.linear([1.0, 2.0], [[1.0, 1.0]])) == 1
    with pytest.raises(ValueError):
        F.linear([1.0, 2.0], [[1.0, 1.0, 1.0]])


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax, F.rmsnorm])
def test_empty_input_and_bad_eps(fn):
    with pytest.raises(ValueError, match="at least one"):
        fn([])
    for eps in (-1.0, math.nan, math.inf, "1"):
        with pytest.raises(ValueError, match="eps"):
            F.rmsnorm([1.0], eps=eps)


class Reentrant:
    """A number whose float() runs the engine: builds, backpropagates, replays."""
    def __init__(self, x):
        self.x = x

    def __float__(self):
        y = F.softmax([Value(self.x), Value(1.0)])[0]
        y.backward()
        F.cross_entropy([y, Value(0.5)], 1).backward()
        return self.x


numbers.Real.register(Reentrant)  # a number to the engine, as a user's own type can be


def test_numbers_whose_float_runs_the_engine():
    out = F.softmax([Reentrant(0.5), Reentrant(-1.0), 2.0])
    t = torch.softmax(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64), 0)
    assert all(close(o.data, e) for o, e in zip(out, t.tolist()))
    loss = F.cross_entropy([Reentrant(0.5), 1.0], 0)
    assert close(loss.data, TF.cross_entropy(torch.tensor([[0.5, 1.0]], dtype=torch.float64),
                                             torch.tensor([0])).item())


def test_threads_building_losses_from_python_numbers():
    def work(seed):
        for k in range(50):
            data = rows(seed * 100 + k)
            loss = F.cross_entropy([Reentrant(x) for x in data], k % 7)
            theirs = TF.cross_entropy(torch.tensor([data], dtype=torch.float64),
                                      torch.tensor([k % 7]))
            assert close(loss.data, theirs.item())

    in_threads(work, 0, 1)
