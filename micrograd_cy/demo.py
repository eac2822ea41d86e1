"""micrograd's demo.ipynb training loop, shared by the tests, the benchmark and the CLI.

The loop is the notebook's, line for line, with the engine and the nn module passed in,
so the same function trains upstream micrograd, upstream's nn.py on our engine, and ours.
"""
import importlib.machinery
import importlib.util
import random
import sys

STEPS = 100


def moons(n_samples=100, noise=0.1, seed=1337):
    """The notebook's data: make_moons after np.random.seed(1337), labels in {-1, 1}."""
    import numpy as np
    from sklearn.datasets import make_moons

    np.random.seed(seed)
    random.seed(seed)
    X, y = make_moons(n_samples=n_samples, noise=noise)
    return X, y * 2 - 1


def svm_loss(model, X, y, Value, alpha=1e-4):
    """Max-margin loss with L2 regularization, and accuracy: the notebook's loss()."""
    inputs = [list(map(Value, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi*scorei).relu() for yi, scorei in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * sum((p*p for p in model.parameters()))
    total_loss = data_loss + reg_loss
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores)]
    return total_loss, sum(accuracy) / len(accuracy)


def svm_loss_fused(model, X, y, Value, alpha=1e-4):
    """svm_loss() with its two Python sums as fused nodes (Value.sum, Value.dot).

    The same numbers: both fold left from 0 in the same order. Inputs go to the model as
    plain floats, which Value.matvec turns into leaves.
    """
    scores = list(map(model, X.tolist() if hasattr(X, "tolist") else X))
    y = y.tolist() if hasattr(y, "tolist") else y
    losses = [(1 + -yi*scorei).relu() for yi, scorei in zip(y, scores)]
    total_loss = mean_loss(Value, losses, model.parameters(), alpha)
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores)]
    return total_loss, sum(accuracy) / len(accuracy)


def mean_loss(Value, losses, params, alpha=1e-4):
    """mean(losses) + alpha * sum(p*p), the notebook's total, as two fused nodes."""
    return Value.sum(losses) * (1.0 / len(losses)) + alpha * Value.dot(params, params)


def sgd_step(model, total_loss, k, steps=STEPS):
    """Backward and the notebook's SGD update with its decaying learning rate."""
    model.zero_grad()
    total_loss.backward()
    learning_rate = 1.0 - 0.9*k/steps
    for p in model.parameters():
        p.data -= learning_rate * p.grad


def train_moons(nn, Value, steps=STEPS, seed=1337, loss=svm_loss):
    """Train MLP(2, [16, 16, 1]) as the notebook does; returns (model, [(loss, accuracy), ...])."""
    X, y = moons(seed=seed)
    random.seed(seed)
    model = nn.MLP(2, [16, 16, 1])
    history = []
    for k in range(steps):
        total_loss, acc = loss(model, X, y, Value)
        sgd_step(model, total_loss, k, steps)
        history.append((float(total_loss.data), float(acc)))
    return model, history


def upstream_nn(engine):
    """Upstream micrograd's own nn.py, unchanged, importing Value from `engine`.

    engine is a module with a Value: micrograd.engine for upstream as shipped, or
    micrograd_cy.engine to run upstream's nn.py on the compiled engine.
    """
    # looked up on sys.path, not in sys.modules: after install_as_micrograd(), "micrograd"
    # there is micrograd_cy, and its nn is not upstream's file
    package = importlib.machinery.PathFinder.find_spec("micrograd")
    spec = package and importlib.machinery.PathFinder.find_spec(
        "micrograd.nn", package.submodule_search_locations)
    if spec is None:
        raise ModuleNotFoundError("upstream micrograd is not installed: pip install micrograd")
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("micrograd.engine")
    sys.modules["micrograd.engine"] = engine
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["micrograd.engine"]
        else:
            sys.modules["micrograd.engine"] = saved
    return module
