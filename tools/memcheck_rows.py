"""The rows' program under valgrind (tools/memcheck.py --rows): Value.backward_rows,
Value.evaluate and Value.gather over every kind of step, block widths 1 and 16 with short last
blocks, errors in a row, and a number whose float() re-enters the engine. Apart from
memcheck_workload.py because it imports numpy, whose own start-up valgrind reports."""
import math
import numbers
import random

import numpy as np

from micrograd_cy import Value, nn


class Reentrant:
    """A number whose float() runs the engine on the graph being fed."""
    def __init__(self, x, graph):
        self.x, self.graph = x, graph

    def __float__(self):
        loss, ins = self.graph
        Value.backward_rows(loss, ins, [[0.5] * (len(ins) - 1) + [0.0]])
        loss.forward().backward()
        return self.x


numbers.Real.register(Reentrant)  # a number to the engine's checks


def classifiers():
    random.seed(0)
    rng = np.random.default_rng(0)
    for sizes in ([3, 1], [4, 4, 1], [5, 3], [3, 4, 3]):  # NET nodes, and DOT layers
        model = nn.MLP(sizes[0], sizes[1:])
        x = [Value(0.0) for _ in range(sizes[0])]
        t = Value(0.0)
        out = model(x)
        loss = (1 + -t * out).relu() if sizes[-1] == 1 else Value.cross_entropy(out, t)
        for n in (1, 7, 16, 33):
            X = rng.normal(size=(n, sizes[0]))
            y = rng.integers(0, sizes[-1], n) if sizes[-1] > 1 else rng.choice([-1.0, 1.0], n)
            rows = np.column_stack([X, y])
            Value.backward_rows(loss, x + [t], rows, outputs=out, scale=1.0 / n)
            Value.evaluate(out, x, X)
        if sizes[-1] > 1:
            bad = np.column_stack([rng.normal(size=(20, sizes[0])), [1] * 10 + [99] + [0] * 9])
            try:
                Value.backward_rows(loss, x + [t], bad)
            except IndexError:
                pass
        rows = [[Reentrant(0.25, (loss, x + [t]))] + [0.5] * (sizes[0] - 1) + [0.0]]
        Value.backward_rows(loss, x + [t], rows)


def every_step():
    a, b, i = Value(0.0), Value(0.0), Value(0.0)
    w = [Value(0.3), Value(-0.7), Value(1.1)]
    parts = [a + b, a - b, a * b, a / (b * b + 1.0), -a, (a * a + 1.0) ** 1.5,
             (a * a + 1.0) ** (b * b), a.relu(), a.tanh(), a.exp(), (a * a + 1.0).log(),
             a.sigmoid(), a.sin(), a.cos(), (a * a).sqrt(), abs(a), a.softplus(), a.gelu(),
             a.leaky_relu(0.1), Value.sum([a, b, w[0]]), Value.dot(w[:2], [a, b], w[2]),
             Value.dot([a, w[0]], [b, a], relu=True), Value.logsumexp([a, b, w[1]]),
             Value.cross_entropy([a, b, w[0]], i), Value.gather(w, i), a * w[0] * w[0]]
    loss = Value.sum(parts)
    rows = [[0.1 * k - 0.5, 0.3 - 0.05 * k, k % 3] for k in range(37)]
    for n in (1, 5, 16, 37):
        Value.backward_rows(loss, [a, b, i], rows[:n], outputs=parts[:4])
        Value.evaluate(parts, [a, b, i], rows[:n])
    for bad in ([[0.0, -1.0, 5]], [[math.nan, 0.0, 0]], [[0.0, 0.0, 0]] * 17 + [[0.0, 0.0, 3]]):
        try:
            Value.backward_rows(loss, [a, b, i], bad)
        except (IndexError, ValueError, ZeroDivisionError):
            pass
    table = [[Value(random.gauss(0, 1)) for _ in range(4)] for _ in range(6)]
    tok = Value(0.0)
    emb = Value.gather(table, tok)
    g = Value.sum([e * e for e in emb])
    Value.backward_rows(g, [tok], [[k % 6] for k in range(20)])


def main():
    classifiers()
    every_step()
    print("workload done")


if __name__ == "__main__":
    main()
