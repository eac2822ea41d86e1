"""micrograd's moons demo as a notebook user writes it against micrograd's API: the data,
MLP(2, [16, 16, 1]), a max-margin loss with L2, and plain SGD with a falling rate.

Prints one JSON line a step ({"step", "loss", "accuracy"}), then the decision grid's
predictions; an argument sets the number of steps (100, the notebook's). tests/test_notebooks.py
runs it on upstream micrograd and, after micrograd_cy.install_as_micrograd(), on the compiled
engine, and compares every line."""
import json
import random
import sys

import numpy as np
from sklearn.datasets import make_moons

from micrograd.engine import Value
from micrograd.nn import MLP

np.random.seed(1337)
random.seed(1337)
X, y = make_moons(n_samples=100, noise=0.1)
y = y * 2 - 1  # labels -1 and +1
model = MLP(2, [16, 16, 1])


def loss():
    inputs = [list(map(Value, row)) for row in X]  # numpy rows, numpy floats: as users pass them
    scores = list(map(model, inputs))
    margins = [(1 + -label * score).relu() for label, score in zip(y, scores)]
    data_loss = sum(margins) * (1.0 / len(margins))
    reg_loss = 1e-4 * sum((p * p for p in model.parameters()))
    right = [(label > 0) == (score.data > 0) for label, score in zip(y, scores)]
    return data_loss + reg_loss, sum(right) / len(right)


STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 100
for step in range(STEPS):
    total, accuracy = loss()
    model.zero_grad()
    total.backward()
    rate = 1.0 - 0.9 * step / 100  # the notebook's schedule, whatever STEPS
    for p in model.parameters():
        p.data -= rate * p.grad
    print(json.dumps({"step": step, "loss": total.data, "accuracy": float(accuracy)}))

# the decision boundary's grid, scored point by point as the notebook's plot does
xs, ys = np.meshgrid(np.arange(X[:, 0].min() - 1, X[:, 0].max() + 1, 0.25),
                     np.arange(X[:, 1].min() - 1, X[:, 1].max() + 1, 0.25))
grid = np.c_[xs.ravel(), ys.ravel()]
print(json.dumps({"grid": [bool(model(list(map(Value, point))).data > 0) for point in grid]}))
