"""Floors: the demo loss's forward on plain floats, from the same initial parameters.

Upstream nn.py's forward, line for line, on floats: no engine driven by upstream's nn.py can
build its graph faster than this computes the numbers alone. And our nn's shape on floats,
beside the notebook's row.
"""
from __future__ import annotations

import operator
import random
from typing import Any, Sequence

from benchmarks.harness import SEED, SIZES, Run, timed_steps
from micrograd_cy import datasets


def _relu(x: float) -> float:
    return 0 if x < 0 else x  # upstream's relu: Value(0 if self.data < 0 else self.data)


class _FloatNeuron:
    def __init__(self, neuron: Any) -> None:
        self.w = [p.data for p in neuron.w]
        self.b = neuron.b.data
        self.nonlin = neuron.nonlin

    def __call__(self, x: Sequence[float]) -> float:
        act = sum((wi*xi for wi, xi in zip(self.w, x)), self.b)
        return _relu(act) if self.nonlin else act


class _FloatLayer:
    def __init__(self, layer: Any) -> None:
        self.neurons = [_FloatNeuron(n) for n in layer.neurons]

    def __call__(self, x: Sequence[float]) -> Any:
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out


class _FloatMLP:
    def __init__(self, mlp: Any) -> None:
        self.layers = [_FloatLayer(layer) for layer in mlp.layers]

    def __call__(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[float]:
        return [p for layer in self.layers for n in layer.neurons for p in n.w + [n.b]]


class _FloatShapedLikeOurs:
    """Our nn's MLP on plain floats: each neuron as micrograd_cy.nn computes it (bias +
    w[0]*x[0] + ..., folded left), written with Python's fastest float idiom."""

    def __init__(self, mlp: Any) -> None:
        self.layers = [[([p.data for p in n.w], n.b.data, n.nonlin) for n in layer.neurons]
                       for layer in mlp.layers]
        self.params = [p for layer in self.layers for w, b, _ in layer for p in w + [b]]

    def __call__(self, x: Any) -> Any:
        mul = operator.mul
        for layer in self.layers:
            x = [_relu(sum(map(mul, w, x), b)) if nonlin else sum(map(mul, w, x), b)
                 for w, b, nonlin in layer]
        return x[0]

    def parameters(self) -> list[float]:
        return self.params


def _float_loss(model: Any, X: Any, y: Any, alpha: float = 1e-4) -> float:
    """train.svm_loss on floats."""
    inputs = [list(map(float, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [_relu(1 + -yi*scorei) for yi, scorei in zip(y, scores)]
    data_loss: float = sum(losses) * (1.0 / len(losses))
    reg_loss: float = alpha * sum((p*p for p in model.parameters()))
    return data_loss + reg_loss


def _on_floats(model: Any, steps: int) -> Run:
    X, y = datasets.moons()
    run = timed_steps(steps, lambda k: _float_loss(model, X, y))
    # no gradients, no update: every step's loss is the others' first step's
    run["losses"] = run["losses"][:1]
    return run


def run_upstream_floats(steps: int, memory: bool) -> Run:
    import micrograd.nn
    random.seed(SEED)  # the same initial parameters as every other row
    return _on_floats(_FloatMLP(micrograd.nn.MLP(2, SIZES)), steps)


def run_our_floats(steps: int, memory: bool) -> Run:
    from micrograd_cy import nn
    random.seed(SEED)
    return _on_floats(_FloatShapedLikeOurs(nn.MLP(2, SIZES)), steps)
