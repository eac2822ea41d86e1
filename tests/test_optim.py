"""micrograd_cy.optim.SGD: micrograd's update loop and zero_grad, in C."""
import math
import pickle
import random

import pytest

from conftest import close, notebook_step
from micrograd_cy import Value, datasets, nn, train
from micrograd_cy.optim import SGD


def test_sgd_trains_the_demo_to_the_same_numbers_as_micrograds_loop():
    histories = []
    for use_sgd in (False, True):
        X, y = datasets.moons()
        random.seed(1337)
        model = nn.MLP(2, [16, 16, 1])
        opt = SGD(model.parameters())
        history = []
        for k in range(8):
            loss, _ = train.svm_loss_fused(model, X, y, Value)
            learning_rate = train.learning_rate(k, 100)
            if use_sgd:
                opt.zero_grad()
                loss.backward()
                opt.step(learning_rate)
            else:
                notebook_step(model, loss, k)
            history.append(loss.data)
        histories.append((history, [p.data for p in model.parameters()]))
    assert histories[0] == histories[1]  # bit for bit


def test_step_uses_its_own_rate_unless_given_one_and_zero_grad_zeroes():
    a, b = Value(1.0), Value(-2.0)
    opt = SGD([a, b], lr=0.5)
    (a * b).backward()
    opt.step()
    assert (a.data, b.data) == (1.0 - 0.5 * -2.0, -2.0 - 0.5 * 1.0)
    opt.step(0.25)
    assert (a.data, b.data) == (2.0 - 0.25 * -2.0, -2.5 - 0.25 * 1.0)
    opt.zero_grad()
    assert (a.grad, b.grad) == (0.0, 0.0)
    opt.lr = 0.1
    assert opt.lr == 0.1 and len(opt) == 2 and opt.params == [a, b]
    assert repr(opt) == "SGD(2 parameters, lr=0.1)"


def test_sgd_keeps_its_parameters_alive_and_pickles():
    opt = SGD([Value(3.0)], lr=0.2)
    p = opt.params[0]
    p.grad = 1.0
    again = pickle.loads(pickle.dumps(opt))
    again.step()
    assert again.params[0].data == 3.0 - 0.2 and p.data == 3.0  # its own copy


# the parameters are made inside the test: an op node made here, at collection, would live
# the whole session and keep the engine's tape from ever emptying (test_reliability's
# compaction test then saw a tape that never had to compact)
@pytest.mark.parametrize("params, lr, error, match", [
    (lambda: [Value(1.0), 2.0], 0.1, TypeError, "parameter 1 is 'float', not a Value"),
    (lambda: [Value(1.0) * 2.0], 0.1, ValueError, "parameter 0 is not a leaf"),
    (lambda: 3, 0.1, TypeError, "not iterable"),
    (lambda: [Value(1.0)], math.nan, ValueError, "finite number"),
    (lambda: [Value(1.0)], math.inf, ValueError, "finite number"),
    (lambda: [Value(1.0)], "x", TypeError, "real number"),
])
def test_bad_parameters_and_rates_are_refused(params, lr, error, match):
    with pytest.raises(error, match=match):
        SGD(params(), lr)


def test_a_value_whose_init_has_not_run_is_refused():
    bare = Value.__new__(Value)
    with pytest.raises(ValueError, match="parameter 0 is a Value whose __init__ has not run"):
        SGD([bare])
    bare.__init__(3.0, (Value(1.0), Value(2.0)), "op")  # would have become an interior node
    assert bare._op == "op"


def test_a_parameter_given_twice_is_refused_and_bad_step_rates_change_nothing():
    a = Value(1.0)
    with pytest.raises(ValueError, match="parameter 1 appears twice"):
        SGD([a, a])
    opt = SGD([a])
    a.grad = 1.0
    for bad in (math.nan, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            opt.step(bad)
    with pytest.raises(TypeError):
        opt.step("fast")
    assert a.data == 1.0


def test_methods_refuse_a_self_that_is_not_an_sgd_and_init_runs_once():
    for call in (lambda: SGD.step(5), lambda: SGD.zero_grad(None), lambda: SGD.__init__(1.0, [])):
        with pytest.raises(TypeError):
            call()
    opt = SGD([Value(1.0)])
    with pytest.raises(RuntimeError, match="only once"):
        opt.__init__([Value(2.0)])

    class Reentering:
        def __iter__(self):
            again.__init__([Value(5.0)])  # from inside the first __init__'s read of params
            yield Value(1.0)

    again = SGD.__new__(SGD)
    with pytest.raises(RuntimeError, match="only once"):
        again.__init__(Reentering())
    again.step()  # an SGD whose __init__ failed holds nothing and does nothing
    assert len(again) == 0 and again.params == []
