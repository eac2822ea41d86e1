"""Training an MLP on a Dataset: micrograd's SVM loss for two classes, softmax
cross-entropy (built from the engine's exp and log) for more, and SGD with micrograd's
demo schedule (learning_rate): the rate falls linearly from lr to lr/10.

The losses live here, beside the loop that uses them: svm_loss is the notebook's loss on
any engine (upstream micrograd's too), svm_loss_fused the same numbers from fused nodes.
Training builds a sample's graph once and runs it over every step's rows in C
(Value.backward_rows), full-batch and mini-batch alike.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from micrograd_cy import nn
from micrograd_cy.datasets import Dataset
from micrograd_cy.engine import CHILD_SIZE, NODE_SIZE, Value
from micrograd_cy.optim import SGD

ALPHA = 1e-4  # L2 regularization, as in micrograd's demo


def learning_rate(k: int, steps: int, lr: float = 1.0) -> float:
    """micrograd's demo schedule: lr at step 0 of `steps`, falling linearly to lr/10."""
    return lr * (1.0 - 0.9 * k / steps)


@dataclass
class Defaults:
    steps: Optional[int] = None
    epochs: Optional[int] = None
    batch_size: Optional[int] = None   # None: the whole training set every step
    lr: float = 1.0
    hidden: tuple[int, ...] = (16, 16)


DEFAULTS = {
    "moons": Defaults(steps=100),  # micrograd's demo.ipynb
    "circles": Defaults(steps=100),
    "blobs": Defaults(steps=100, lr=0.5),
    "digits": Defaults(epochs=10, batch_size=32, lr=0.5, hidden=(32,)),
}


def csv_defaults(classes: int) -> Defaults:
    """A CSV file's: the 2-D sets' (blobs' rate where there are more than two classes)."""
    return DEFAULTS["moons"] if classes == 2 else DEFAULTS["blobs"]


@dataclass
class Result:
    model: nn.MLP
    loss: list[float] = field(default_factory=list)      # per step, on that step's batch
    accuracy: list[float] = field(default_factory=list)  # per step, on that step's batch
    final_loss: float = math.nan                         # on the whole training set, after training
    final_accuracy: float = math.nan
    test_accuracy: Optional[float] = None                # on the held-out split, if there is one
    confusion: Optional[np.ndarray] = None               # held-out confusion matrix (true x predicted)
    seconds: float = 0.0


def make_model(dataset: Dataset, hidden: Sequence[int], seed: int) -> nn.MLP:
    random.seed(seed)
    return nn.MLP(dataset.features, [*hidden, dataset.outputs])


# -- losses ----------------------------------------------------------------------------------

def svm_loss(model: Callable[[Any], Any], X: Any, y: Any, Value: Any,
             alpha: float = ALPHA) -> tuple[Any, float]:
    """Max-margin loss with L2 regularization, and accuracy: the notebook's loss(), line for
    line, for a model and a Value class of any engine."""
    inputs = [list(map(Value, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi*scorei).relu() for yi, scorei in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * sum((p*p for p in model.parameters()))  # type: ignore[attr-defined]
    total_loss = data_loss + reg_loss
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores)]
    return total_loss, sum(accuracy) / len(accuracy)


def svm_loss_fused(model: nn.MLP, X: Any, y: Any, Value: type[Value] = Value,
                   alpha: float = ALPHA) -> tuple[Value, float]:
    """svm_loss() with its two Python sums as fused nodes (Value.sum, Value.dot): the same
    numbers, both fold left from 0 in the same order. Inputs go to the model as plain
    floats, which the engine turns into leaves. (Value: svm_loss's signature; ours only.)"""
    X = X.tolist() if hasattr(X, "tolist") else X
    y = y.tolist() if hasattr(y, "tolist") else y
    total_loss, scores = loss_of(model, X, y, 2, alpha)
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores)]
    return total_loss, sum(accuracy) / len(accuracy)


def mean_loss(losses: Sequence[Value], params: Sequence[Value], alpha: float = ALPHA) -> Value:
    """mean(losses) + alpha * sum(p*p), the notebook's total, as two fused nodes."""
    return Value.sum(losses) * (1.0 / len(losses)) + alpha * Value.dot(params, params)


def loss_of(model: nn.MLP, X: Any, y: Any, classes: int,
            alpha: float = ALPHA) -> tuple[Value, list[Any]]:
    """(total loss, scores) over the samples X (an array or lists of rows): a Value, and one
    output per sample (a Value for two classes, else a list of them)."""
    X = X.tolist() if hasattr(X, "tolist") else X
    y = y.tolist() if hasattr(y, "tolist") else y
    scores: list[Any] = [model(x) for x in X]  # Values for two classes, else lists of them
    if classes == 2:
        losses = [(1 + -yi*si).relu() for yi, si in zip(y, scores)]
    else:
        losses = [Value.cross_entropy(logits, yi) for logits, yi in zip(scores, y)]
    return mean_loss(losses, model.parameters(), alpha), scores


def memory_needed(sizes: Sequence[int], rows: int) -> int:
    """An upper bound on the bytes an MLP of these sizes and a step of loss_of over `rows`
    samples hold: the model and its calls (nn.memory_needed); a sample's loss ((1 + -y*s).relu(),
    five nodes with its constants; the cross-entropy over k outputs, one node of k + 1
    children and its target's leaf)
    and its Python objects (its row as a list of floats, its label, its places in lists);
    the mean and the L2 term over them. Each node is counted with its place in an order."""
    node = NODE_SIZE + CHILD_SIZE
    k = sizes[-1]
    loss = 5 * node if k == 1 else 2 * node + (k + 1) * CHILD_SIZE
    python = 56 + (CHILD_SIZE + 32) * sizes[0] + 64
    parameters = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes, sizes[1:]))
    total = 7 * node + CHILD_SIZE * (rows + 2 * parameters)
    return nn.memory_needed(sizes, rows) + rows * (loss + python) + total


# -- training --------------------------------------------------------------------------------

def evaluate(model: nn.MLP, X: np.ndarray, y: np.ndarray, classes: int,
             trace: Optional[Trace] = None) -> tuple[float, float, np.ndarray]:
    """(loss, accuracy, predictions) of the model on X, y, by Value.evaluate on a sample's
    graph (trace, or one built now); builds no gradients. The loss: mean(sample losses) +
    alpha * sum(p*p), summed as loss_of's graph sums it."""
    trace = trace or Trace.of(model, X.shape[1], classes)
    out = Value.evaluate([trace.loss, *trace.scores], trace.inputs, trace.rows(X, y))
    params = model.parameters()
    total = sum(out[:, 0].tolist()) * (1.0 / len(X)) + ALPHA * Value.dot(params, params).data
    guess = scored(out[:, 1:], classes)
    return total, float(np.mean(guess == y)), guess


@dataclass
class Trace:
    """A sample's graph, built once: its loss and outputs over leaves for its features and
    its label, which Value.backward_rows and Value.evaluate run for every row of a batch."""
    inputs: list[Value]   # the features' leaves, then the label's
    loss: Value           # the sample's loss: micrograd's hinge for two classes, else cross-entropy
    scores: list[Value]   # the model's outputs

    @classmethod
    def of(cls, model: nn.MLP, features: int, classes: int) -> "Trace":
        x = [Value(0.0) for _ in range(features)]
        label = Value(1.0 if classes == 2 else 0.0)  # -1/+1 for two classes, else an index
        out = model(x)
        if classes == 2:
            return cls([*x, label], (1 + -label*out).relu(), [out])
        return cls([*x, label], Value.cross_entropy(out, label), list(out))

    def rows(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.column_stack([X, y]).astype(np.float64)


def step_loss(trace: Trace, rows: np.ndarray, params: Sequence[Value],
              alpha: float = ALPHA) -> tuple[float, np.ndarray]:
    """backward() of mean(sample losses) + alpha * sum(p*p) over the rows, into the params'
    grads (added): the losses of the samples one after the other, as backward() on each
    sample's graph scaled by 1/len(rows) gives them, then the L2 term's. Returns the total
    loss and the scores (rows x outputs)."""
    losses, scores = Value.backward_rows(trace.loss, trace.inputs, rows, trace.scores,
                                         scale=1.0 / len(rows))
    reg = alpha * Value.dot(params, params)
    reg.backward()
    return sum(losses.tolist()) * (1.0 / len(rows)) + reg.data, scores


def scored(scores: np.ndarray, classes: int) -> np.ndarray:
    """The predicted labels of scores (rows x outputs): -1/+1 for two classes, else the class."""
    if classes == 2:
        return np.where(scores[:, 0] > 0, 1, -1)
    return np.argmax(scores, axis=1)


def train(dataset: Dataset, model: nn.MLP, steps: int, batch_size: Optional[int] = None,
          lr: float = 1.0, seed: int = 1337,
          on_step: Optional[Callable[[int, float, float], None]] = None) -> Result:
    """SGD for `steps` steps; on_step(k, loss, accuracy) after each. Returns a Result.

    A sample's graph is built once (Trace) and every step runs it over the step's rows in C
    (Value.backward_rows): full-batch and mini-batch alike."""
    result = Result(model)
    opt = SGD(model.parameters(), lr)
    params = model.parameters()
    trace = Trace.of(model, dataset.features, dataset.classes)
    rows = trace.rows(dataset.X, dataset.y)
    n = len(dataset.X)
    batch = n if batch_size is None else min(batch_size, n)
    rng = np.random.default_rng(seed)
    order, cursor = rng.permutation(n), 0
    start = time.perf_counter()
    for k in range(steps):
        if batch == n:
            idx = np.arange(n)
        else:
            if cursor + batch > n:  # a new epoch: a new shuffle
                order, cursor = rng.permutation(n), 0
            idx = order[cursor:cursor + batch]
            cursor += batch
        opt.zero_grad()
        total, scores = step_loss(trace, rows[idx], params)
        opt.step(learning_rate(k, steps, lr))
        result.loss.append(total)
        result.accuracy.append(float(np.mean(scored(scores, dataset.classes) == dataset.y[idx])))
        if on_step is not None:
            on_step(k, result.loss[-1], result.accuracy[-1])
    result.final_loss, result.final_accuracy, _ = evaluate(model, dataset.X, dataset.y,
                                                           dataset.classes, trace)
    if len(dataset.X_test):
        _, result.test_accuracy, guess = evaluate(model, dataset.X_test, dataset.y_test,
                                                  dataset.classes, trace)
        result.confusion = np.zeros((dataset.classes, dataset.classes), dtype=int)
        if dataset.classes == 2:  # -1/+1 as class 0/1 (-1 would index the last row)
            np.add.at(result.confusion, ((dataset.y_test > 0) * 1, (guess > 0) * 1), 1)
        else:
            np.add.at(result.confusion, (dataset.y_test, guess), 1)
    result.seconds = time.perf_counter() - start
    return result
