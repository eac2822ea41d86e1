"""Every op of the engine's Op enum as the tests know it: one row an op.

Adding an op adds its row (docs/architecture.md: "Adding an op"); tests/test_ops.py iterates
engine.Op and fails, naming the op, while it has none. The unary rows drive the other suites'
op lists: the PyTorch oracle (test_ops_torch.py), the state machine's reference engine
(test_state_machine.py) and the calls with a wrong self (test_hostile.py); the memcheck
workload (tools/memcheck_workload.py) calls every unary method the engine has.
"""
import math
import operator
from dataclasses import dataclass
from typing import Callable, Optional


def sigmoid(x):
    """As the engine computes it: exp() only ever of a non-positive number."""
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def relu(x):
    return 0.0 if x < 0 else x


def divide(a, b):
    """a / b as C divides doubles: infinities and NaN where Python raises."""
    try:
        return a / b
    except ZeroDivisionError:
        if a == 0 or math.isnan(a) or math.isnan(b):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


@dataclass(frozen=True)
class Unary:
    """An op of one Value and no constant, Value.<method>() (or an operator), whose enum
    name is the _op it shows in capitals (RELU: 'ReLU')."""
    call: Callable                   # our op on a Value, and PyTorch's on a tensor
    value: Callable[[float], float]  # its data from the child's, in Python (raising where the engine does)
    gives: Callable[[float, float, float], float]  # (x, out, g): what it gives its child, as the engine computes it
    inputs: tuple = (-2.5, -0.3, 0.4, 1.7, 30.0)  # where PyTorch is asked
    method: Optional[str] = None     # Value's method that builds it, if not an operator


def _method(name, value, gives, **kw):
    return Unary(operator.methodcaller(name), value, gives, method=name, **kw)


def _functional(name, theirs, value, gives, **kw):
    """An op PyTorch has in torch.nn.functional, not as a tensor method: theirs(F, tensor)."""
    def call(v):
        if type(v).__module__.startswith("torch"):
            import torch.nn.functional as F
            return theirs(F, v)
        return getattr(v, name)()
    return Unary(call, value, gives, method=name, **kw)


def softplus(x):
    return x if x > 20 else math.log1p(math.exp(x))


GELU_BETA, GELU_KAPPA = math.sqrt(2 / math.pi), 0.044715


def gelu(x):
    return 0.5 * x * (1 + math.tanh(GELU_BETA * (x + GELU_KAPPA * x ** 3)))


def gelu_gives(x, y, g):
    t = math.tanh(GELU_BETA * (x + GELU_KAPPA * x ** 3))
    return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_BETA * (1 + 3 * GELU_KAPPA * x * x))


# The unary ops, by the name Value._op shows
UNARY = {
    "neg": Unary(operator.neg, operator.neg, lambda x, y, g: -g),
    "ReLU": _method("relu", relu, lambda x, y, g: 0.0 if y <= 0 else g),
    "tanh": _method("tanh", math.tanh, lambda x, y, g: g * (1.0 - y * y)),
    "exp": _method("exp", math.exp, lambda x, y, g: g * y),
    "log": _method("log", math.log, lambda x, y, g: divide(g, x), inputs=(0.3, 0.4, 1.7, 30.0)),
    "sigmoid": _method("sigmoid", sigmoid, lambda x, y, g: g * (1.0 - y) * y),
    "sin": _method("sin", math.sin, lambda x, y, g: g * math.cos(x)),
    "cos": _method("cos", math.cos, lambda x, y, g: g * -math.sin(x)),
    "sqrt": _method("sqrt", math.sqrt, lambda x, y, g: divide(g, 2.0 * y),
                    inputs=(0.3, 0.4, 1.7, 30.0)),
    "abs": _method("abs", abs, lambda x, y, g: g * (x > 0) - g * (x < 0),
                   inputs=(-2.5, 0.0, -0.3, 0.4, 1.7, 30.0)),
    "softplus": _functional("softplus", lambda F, t: F.softplus(t), softplus,
                            lambda x, y, g: g if x > 20 else g * math.exp(x) / (math.exp(x) + 1),
                            inputs=(-2.5, -0.3, 0.4, 1.7, 20.0, 20.5, 30.0)),
    "gelu": _functional("gelu", lambda F, t: F.gelu(t, approximate="tanh"), gelu, gelu_gives),
    "leaky_relu": _functional("leaky_relu", lambda F, t: F.leaky_relu(t, 0.01),
                              lambda x: x if x > 0 else x * 0.01,
                              lambda x, y, g: g if x > 0 else g * 0.01),
}


@dataclass(frozen=True)
class Row:
    """An op of engine.Op as tests/test_ops.py checks it against PyTorch."""
    shows: str                  # the _op its nodes show
    ours: Optional[Callable]    # its node, from a list of leaves (None: not built by an op)
    theirs: Optional[Callable] = None  # PyTorch's, from tensors (None: ours works on them)
    at: tuple = ((1.5, -2.25), (0.7, 3.0))  # the leaves' data when built, then when replayed


def _unary(shows):
    call = UNARY[shows].call
    x, y = UNARY[shows].inputs[1:3]
    return Row(shows, lambda v: call(v[0]), at=((x,), (y,)))


def _net(v):
    """nn.MLP(2, [1]): one NET node over a PARAMS node of the neuron's weights."""
    from micrograd_cy import nn
    model = nn.MLP(2, [1])
    model.layers[0].neurons[0].w = [v[0].__class__(0.5), v[0].__class__(-1.25)]
    model.layers[0].neurons[0].b = v[0].__class__(0.25)
    return model(v)


def _torch_cross_entropy(logits, target):
    import torch
    import torch.nn.functional as F
    return F.cross_entropy(torch.stack(logits).unsqueeze(0), torch.tensor([target]))


# Every op of engine.Op, by its enum name
OPS = {
    "LEAF": Row("", None),       # Value(x): tests/test_graph.py
    "CUSTOM": Row("", None),     # Value(x, children, op): tests/test_graph.py
    "ADD": Row("+", lambda v: v[0] + v[1]),
    "SUB": Row("-", lambda v: v[0] - v[1]),
    "MUL": Row("*", lambda v: v[0] * v[1]),
    "DIV": Row("/", lambda v: v[0] / v[1]),
    "POW": Row("**3", lambda v: v[0] ** 3),
    "POWV": Row("**", lambda v: v[0] ** v[1]),
    "SUM": Row("sum", lambda v: v[0].sum(v), lambda t: sum(t)),
    "DOT": Row("dot", lambda v: v[0].dot(v[:1], v[1:], v[0]), lambda t: t[0] + t[0] * t[1]),
    "LOGSUMEXP": Row("logsumexp", lambda v: v[0].logsumexp(v),
                     lambda t: __import__("torch").logsumexp(__import__("torch").stack(t), 0)),
    "CROSS_ENTROPY": Row("cross_entropy", lambda v: v[0].cross_entropy(v, 1),
                         lambda t: _torch_cross_entropy(t, 1)),
    "GATHER": Row("gather", lambda v: v[0].gather(v, 1), lambda t: t[1]),
    "GIVEN": Row("", None),      # Value(x, children, op, grads=...): tests/test_graph.py
    "NET": Row("mlp", _net, lambda t: 0.25 + 0.5 * t[0] + -1.25 * t[1]),
    "PARAMS": Row("params", None),  # the NET node's last child: tests/test_net.py
    **{shows.upper(): _unary(shows) for shows in UNARY},  # NEG, RELU, TANH, ...
}
