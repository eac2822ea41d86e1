"""Against upstream micrograd from PyPI: its demo trains the same on the compiled engine."""
import gc
import random

import micrograd.engine
import micrograd.nn
import pytest

from conftest import close, notebook_step, upstream_nn
from micrograd_cy import datasets, engine, nn, train

STEPS = 8  # upstream's pure-Python engine is slow: a few steps show the trajectory


def train_moons(nn, Value, steps=STEPS, seed=1337, loss=train.svm_loss):
    """Train MLP(2, [16, 16, 1]) as the notebook does, on any engine's nn and Value;
    returns (model, [(loss, accuracy), ...])."""
    X, y = datasets.moons(seed=seed)
    random.seed(seed)
    model = nn.MLP(2, [16, 16, 1])
    history = []
    for k in range(steps):
        total_loss, acc = loss(model, X, y, Value)
        notebook_step(model, total_loss, k)
        history.append((float(total_loss.data), float(acc)))
    return model, history


@pytest.fixture(scope="module")
def upstream_history():
    gc.disable()  # numbers are the same; upstream's closures make the GC slow
    try:
        return train_moons(micrograd.nn, micrograd.engine.Value, )[1]
    finally:
        gc.enable()


def test_upstream_nn_runs_unchanged_on_the_compiled_engine(upstream_history):
    up_nn = upstream_nn(engine)
    assert up_nn.Value is engine.Value and up_nn.MLP is not nn.MLP
    model, history = train_moons(up_nn, engine.Value, )
    assert type(model.parameters()[0]) is engine.Value
    assert len(history) == STEPS
    for (ours, acc), (theirs, up_acc) in zip(history, upstream_history):
        assert close(ours, theirs), (ours, theirs)
        assert acc == up_acc


def test_native_nn_follows_the_same_trajectory(upstream_history):
    _, history = train_moons(nn, engine.Value, )
    for (ours, acc), (theirs, up_acc) in zip(history, upstream_history):
        assert close(ours, theirs), (ours, theirs)
        assert acc == up_acc
    assert history[-1][0] < history[0][0]


def test_reprs_match_upstream():
    import random
    random.seed(0)
    ours = nn.MLP(3, [4, 2, 1])
    random.seed(0)
    theirs = micrograd.nn.MLP(3, [4, 2, 1])
    assert repr(ours) == repr(theirs)
    assert len(ours.parameters()) == len(theirs.parameters())
    assert [p.data for p in ours.parameters()] == [p.data for p in theirs.parameters()]
    assert repr(nn.Neuron(3)) == "ReLUNeuron(3)" and repr(nn.Neuron(2, nonlin=False)) == "LinearNeuron(2)"


def test_zero_grad():
    model = nn.MLP(2, [3, 1])
    model([1.0, 2.0]).backward()
    assert any(p.grad for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())


def test_layer_sees_changes_to_its_neurons():
    import random
    random.seed(3)
    layer = nn.Layer(3, 2)
    x = [0.5, -1.0, 2.0]
    first = [v.data for v in layer(x)]
    assert first == [n(x).data for n in layer.neurons]
    layer.neurons[0].w[1].data += 1.0          # a parameter's value
    layer.neurons[1].b = engine.Value(5.0)     # a parameter replaced
    layer.neurons[0].w = [engine.Value(1.0)] * 3  # a weight list replaced
    assert [v.data for v in layer(x)] == [n(x).data for n in layer.neurons]
    layer.neurons[0].w[2] = engine.Value(-3.0)    # a weight replaced inside its list
    assert [v.data for v in layer(x)] == [n(x).data for n in layer.neurons]
    layer.neurons = layer.neurons[:1]          # the neurons replaced
    assert layer(x).data == layer.neurons[0](x).data
    layer.neurons[0].nonlin = False
    mixed = nn.Layer(3, 2)
    mixed.neurons[1].nonlin = False            # neurons that differ still work
    assert [v.data for v in mixed(x)] == [n(x).data for n in mixed.neurons]


def test_fused_loss_matches_the_notebook_loss():
    X, y = datasets.moons()
    import random
    random.seed(1)
    model = nn.MLP(2, [8, 1])
    a, acc_a = train.svm_loss(model, X, y, engine.Value)
    b, acc_b = train.svm_loss_fused(model, X, y, engine.Value)
    assert a.data == b.data and acc_a == acc_b
    a.backward()
    grads = [p.grad for p in model.parameters()]
    model.zero_grad()
    b.backward()
    assert [p.grad for p in model.parameters()] == pytest.approx(grads, rel=1e-12)
