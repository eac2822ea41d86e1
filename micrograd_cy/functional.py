"""Losses and normalizations over lists of Values, named as in torch.nn.functional.

    logits = model(x)                         # a list of Values
    loss = F.cross_entropy(logits, target)    # target: an int, or a Value holding it
    probs = F.softmax(logits)

Each is built from the engine's fused nodes: log(sum(exp(...))) is one node shifted by the
largest value (so 1000 does not overflow), a cross-entropy is one node, a row of a linear layer
is one Value.dot. Values and gradients agree with torch.nn.functional in float64 to about
1e-15 (tests/test_functional.py). Numbers among the inputs become leaves.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence, SupportsFloat, Union

from micrograd_cy.engine import Value

Operand = Union[Value, int, float, SupportsFloat]

__all__ = ["softmax", "log_softmax", "cross_entropy", "rmsnorm", "linear"]


def _values(values: Iterable[Operand], what: str) -> list[Value]:
    """The values as a list of Values, numbers made leaves once (a number whose float()
    changes between calls is read once), refusing an empty list."""
    xs = [v if isinstance(v, Value) else Value(v) for v in values]
    if not xs:
        raise ValueError(f"{what} takes at least one value")
    return xs


def log_softmax(values: Iterable[Operand]) -> list[Value]:
    """x_i - log(sum_j exp(x_j)) for each x_i: PyTorch's log_softmax over one row."""
    xs = _values(values, "log_softmax")
    total = Value.logsumexp(xs)
    return [x - total for x in xs]


def softmax(values: Iterable[Operand]) -> list[Value]:
    """exp(x_i) / sum_j exp(x_j) for each x_i, as exp(x_i - logsumexp(x)): never overflows."""
    return [x.exp() for x in log_softmax(values)]


def cross_entropy(logits: Sequence[Operand], target: Union[int, Value]) -> Value:
    """-log(softmax(logits)[target]): PyTorch's cross_entropy over one row, one node.

    target is the right class's index: an int, or a Value holding it, which forward() reads
    again when the graph is replayed. An index out of range raises IndexError."""
    return Value.cross_entropy(logits, target)


def rmsnorm(values: Iterable[Operand], eps: float = 1e-5) -> list[Value]:
    """x_i / sqrt(mean(x^2) + eps) for each x_i: PyTorch's rms_norm over one row, without a
    weight (multiply by yours)."""
    xs = _values(values, "rmsnorm")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) \
            or eps < 0:
        raise ValueError(f"rmsnorm: eps must be a finite number >= 0, not {eps!r}")
    scale = (Value.dot(xs, xs) / len(xs) + eps) ** -0.5
    return [x * scale for x in xs]


def linear(x: Sequence[Operand], weight: Sequence[Sequence[Operand]],
           bias: Optional[Sequence[Operand]] = None) -> list[Value]:
    """weight @ x + bias: PyTorch's linear, a row of weight a output, each one node
    (Value.dot: bias + w0*x0 + w1*x1 + ...). Raises ValueError where a row's length is not
    the input's."""
    return Value.matvec(weight, x, bias)
