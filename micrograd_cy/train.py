"""Training an MLP on a Dataset: micrograd's SVM loss for two classes, softmax
cross-entropy (built from the engine's exp and log) for more, and SGD with micrograd's
demo schedule: the learning rate falls linearly from lr to lr/10.

A full-batch two-class run builds its graph once and replays it (Value.forward) every
step; the others build a graph per step.
"""
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np

from micrograd_cy import demo, nn
from micrograd_cy.engine import Value

ALPHA = 1e-4  # L2 regularization, as in micrograd's demo


@dataclass
class Defaults:
    steps: int = None
    epochs: int = None
    batch_size: int = None   # None: the whole training set every step
    lr: float = 1.0
    hidden: tuple = (16, 16)


DEFAULTS = {
    "moons": Defaults(steps=100),  # micrograd's demo.ipynb
    "circles": Defaults(steps=100),
    "blobs": Defaults(steps=100, lr=0.5),
    "digits": Defaults(epochs=10, batch_size=32, lr=0.5, hidden=(32,)),
}


@dataclass
class Result:
    model: nn.MLP
    loss: list = field(default_factory=list)        # per step, on that step's batch
    accuracy: list = field(default_factory=list)    # per step, on that step's batch
    final_loss: float = math.nan                    # on the whole training set, after training
    final_accuracy: float = math.nan
    test_accuracy: float = None                     # on the held-out split, if there is one
    confusion: np.ndarray = None                    # held-out confusion matrix (true x predicted)
    seconds: float = 0.0


def make_model(dataset, hidden, seed):
    random.seed(seed)
    outputs = 1 if dataset.classes == 2 else dataset.classes
    return nn.MLP(dataset.features, list(hidden) + [outputs])


def sizes(model):
    """An MLP's layer sizes, inputs first: [2, 16, 16, 1]."""
    return [len(model.layers[0].neurons[0].w)] + [len(layer.neurons) for layer in model.layers]


def loss_of(model, X, y, classes, alpha=ALPHA):
    """(total loss, scores) over the samples X: a Value, and one output per sample."""
    scores = [model(x) for x in X.tolist()]
    if classes == 2:
        losses = [(1 + -yi*si).relu() for yi, si in zip(y.tolist(), scores)]
    else:
        losses = [_cross_entropy(logits, yi) for logits, yi in zip(scores, y.tolist())]
    return demo.mean_loss(Value, losses, model.parameters(), alpha), scores


def _cross_entropy(logits, label):
    # log(sum(exp(z))) - z[label], with z shifted by its max: the same value, no overflow
    top = max(z.data for z in logits)
    return Value.sum([(z - top).exp() for z in logits]).log() - (logits[label] - top)


def predictions(scores, classes):
    if classes == 2:
        return np.array([1 if s.data > 0 else -1 for s in scores])
    return np.array([max(range(classes), key=lambda k: logits[k].data) for logits in scores])


def evaluate(model, X, y, classes):
    """(loss, accuracy, predictions) of the model on X, y; builds no gradients."""
    total, scores = loss_of(model, X, y, classes)
    guess = predictions(scores, classes)
    return total.data, float(np.mean(guess == y)), guess


def train(dataset, model, steps, batch_size=None, lr=1.0, seed=1337, on_step=None):
    """SGD for `steps` steps; on_step(k, loss, accuracy) after each. Returns a Result."""
    result = Result(model)
    params = model.parameters()
    n = len(dataset.X)
    batch = n if batch_size is None else min(batch_size, n)
    rng = np.random.default_rng(seed)
    order, cursor = rng.permutation(n), 0
    replayed = None
    start = time.perf_counter()
    for k in range(steps):
        if batch == n and dataset.classes == 2:
            if replayed is None:
                replayed = loss_of(model, dataset.X, dataset.y, 2)
            else:
                replayed[0].forward()
            total, scores = replayed
            yb = dataset.y
        else:
            if cursor + batch > n:  # a new epoch: a new shuffle
                order, cursor = rng.permutation(n), 0
            idx = order[cursor:cursor + batch]
            cursor += batch
            yb = dataset.y[idx]
            total, scores = loss_of(model, dataset.X[idx], yb, dataset.classes)
        model.zero_grad()
        total.backward()
        rate = lr * (1.0 - 0.9 * k / steps)
        for p in params:
            p.data -= rate * p.grad
        result.loss.append(total.data)
        result.accuracy.append(float(np.mean(predictions(scores, dataset.classes) == yb)))
        if on_step is not None:
            on_step(k, result.loss[-1], result.accuracy[-1])
    result.final_loss, result.final_accuracy, _ = evaluate(model, dataset.X, dataset.y,
                                                           dataset.classes)
    if len(dataset.X_test):
        _, result.test_accuracy, guess = evaluate(model, dataset.X_test, dataset.y_test,
                                                  dataset.classes)
        result.confusion = np.zeros((dataset.classes, dataset.classes), dtype=int)
        np.add.at(result.confusion, (dataset.y_test, guess), 1)
    result.seconds = time.perf_counter() - start
    return result
