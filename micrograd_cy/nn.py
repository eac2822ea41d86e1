"""Neurons, layers and MLPs out of Values: micrograd's nn.py, on the compiled engine.

Pure Python on purpose, with micrograd's classes, constructors and reprs. What differs is
how a forward pass is built, never its numbers: a neuron is one fused node,
Value.dot(w, x, b, relu), summed in micrograd's order (b + w0*x0 + w1*x1 + ...) and then
ReLU'd, a layer evaluates all its neurons in one call, Value.matvec, and an MLP with one
output is one node a call, engine.Net, with the numbers of those neurons' nodes.

A layer or an MLP takes those fused paths only while they compute what calling its parts
would: every neuron exactly a Neuron, every layer exactly a Layer, and Neuron.__call__ and
Layer.__call__ the ones below (docs/architecture.md: when a fused path may be taken).
Otherwise it calls its parts, as micrograd does.
"""
import contextlib
import functools
import math
import numbers
import random

from micrograd_cy.engine import Net, Value

_STALE = (False,)  # the freshness of a cache never read


class Module:

    def zero_grad(self):
        for p in self.parameters():
            p.grad = 0

    def parameters(self):
        return []

    def state_dict(self):
        """The parameters' values as plain data (JSON-ready): the module's shape and a flat
        list of floats in parameters() order. Gradients are not part of it."""
        return {"shape": self._shape(), "parameters": [p.data for p in self.parameters()]}

    def load_state_dict(self, state):
        """Set the parameters from a state_dict(). A state of another shape, or holding
        anything but finite real numbers, is refused (ValueError or TypeError) and the
        module is left unchanged."""
        if not isinstance(state, dict) or set(state) != {"shape", "parameters"}:
            raise ValueError("a state dict is a dict with the keys 'shape' and 'parameters'")
        if state["shape"] != self._shape():
            raise ValueError(f"the state dict is for a module of shape {state['shape']!r}, "
                             f"this module's shape is {self._shape()!r}")
        params = self.parameters()
        values = state["parameters"]
        if not isinstance(values, (list, tuple)) or len(values) != len(params):
            got = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
            raise ValueError(f"the state dict must list {len(params)} parameters, got {got}")
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise TypeError(f"parameter {i} of the state dict is a {type(v).__name__}, "
                                f"not a real number")
            if not math.isfinite(v):
                raise ValueError(f"parameter {i} of the state dict is {v}, not a finite number")
        for p, v in zip(params, values):
            p.data = float(v)

    def _shape(self):
        return []

    # A layer or an MLP caches what it read of its parts (which path to take, the neurons'
    # lists of weights) with a freshness token, [True], which it hands to every module it
    # read. An attribute set or deleted on one of those marks its readers' tokens stale, and
    # each reads again at its next call: the cost of a call depends on the model called,
    # never on what else is written in the process. Caches and tokens are set with
    # object.__setattr__ (a cache is not a change), never through __dict__, which touched
    # once would make every attribute read of the module slower.

    _readers = ()  # the tokens of the caches that read this module

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        self._changed()

    def __delattr__(self, name):
        object.__delattr__(self, name)
        self._changed()

    def _changed(self):
        for fresh in self._readers:  # a token handed over meanwhile is met too
            fresh[0] = False

    def _read_by(self, fresh):
        """Mark fresh stale when this module changes (before it is read: a change made
        while it is read shows at the next call). Safe from threads: each step is one
        operation on a list, and a token that could have missed a change is made stale."""
        readers = self._readers
        if type(readers) is not list:
            readers = []
            object.__setattr__(self, "_readers", readers)
        for token in [token for token in readers if not token[0]]:  # readers gone stale
            with contextlib.suppress(ValueError):  # another thread took it first
                readers.remove(token)
        readers.append(fresh)
        if self._readers is not readers:  # another thread's list replaced this one
            fresh[0] = False

    def __getstate__(self):  # the readers' tokens are not the module's state
        state = dict(vars(self))
        state.pop("_readers", None)
        return state

def _stock_rows(neurons, fresh):
    """What Value.matvec needs to compute neurons(x) for each stock neuron, as
    (rows of weights, biases, relu), or None where calling the neurons could compute
    something else: a neuron not exactly a Neuron, weights not in a list or a tuple, a
    nonlinearity flag not a plain number, or neurons of mixed nonlinearity."""
    if type(neurons) is not tuple:  # a list could change in place unseen
        return None
    for n in neurons:
        if isinstance(n, Module):
            n._read_by(fresh)
    if not neurons or any(type(n) is not Neuron for n in neurons):
        return None
    rows = tuple(n.w for n in neurons)
    flags = [n.nonlin for n in neurons]
    if any(type(w) not in (list, tuple) for w in rows) or \
            any(type(f) not in (bool, int) for f in flags):
        return None
    relus = {bool(f) for f in flags}
    if len(relus) != 1:
        return None
    return rows, tuple(n.b for n in neurons), relus.pop()


class Neuron(Module):

    def __init__(self, nin, nonlin=True):
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0)
        self.nonlin = nonlin

    def __call__(self, x):
        return Value.dot(self.w, x, self.b, relu=bool(self.nonlin))

    def parameters(self):
        return self.w + [self.b]

    def _shape(self):
        return len(self.w)

    def __repr__(self):
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(Module):
    """A layer of neurons. `neurons` is a tuple: replace it whole, and the layer notices."""

    _fresh = _STALE

    def __init__(self, nin, nout, **kwargs):
        self.neurons = tuple(Neuron(nin, **kwargs) for _ in range(nout))

    def __call__(self, x):
        if not self._fresh[0]:
            self._read_neurons()
        if self._matvec is None or Neuron.__call__ is not _NEURON_CALL:
            out = [n(x) for n in self.neurons]
        else:
            rows, biases, relu = self._matvec
            out = Value.matvec(rows, x, biases, relu)
        return out[0] if len(out) == 1 else out

    def _read_neurons(self):
        fresh = [True]
        self._read_by(fresh)
        object.__setattr__(self, "_matvec", _stock_rows(self.neurons, fresh))
        object.__setattr__(self, "_fresh", fresh)

    def __getstate__(self):
        return {"neurons": self.neurons}

    def parameters(self):
        params = []
        for n in self.neurons:
            params += n.parameters()
        return params

    def _shape(self):
        return [n._shape() for n in self.neurons]

    def __repr__(self):
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """A multi-layer perceptron. `layers` is a tuple: replace it whole, and the MLP notices."""

    _fresh = _STALE

    def __init__(self, nin, nouts):
        sz = [nin] + nouts
        self.layers = tuple(Layer(sz[i], sz[i+1], nonlin=i != len(nouts)-1)
                            for i in range(len(nouts)))

    def __call__(self, x):
        if not self._fresh[0]:
            self._read_layers()
        if self._net is not None:  # it calls the layers itself if a stock __call__ is patched
            return self._net(x)
        return _call_each(self.layers, x)

    def _read_layers(self):
        """One node a call (Net) where layer by layer would be Value.matvec's on each: stock
        Layers of stock neurons, each of one nonlinearity, one output at the end and none
        before (a layer of one neuron gives a Value, not a list, which the next cannot take)."""
        fresh = [True]
        self._read_by(fresh)
        net = None
        layers = self.layers
        if type(layers) is tuple and layers:
            for layer in layers:
                if isinstance(layer, Module):
                    layer._read_by(fresh)
            if all(type(layer) is Layer for layer in layers):
                found = [_stock_rows(layer.neurons, fresh) for layer in layers]
                if (None not in found and len(found[-1][0]) == 1
                        and all(len(rows) != 1 for rows, _, _ in found[:-1])):
                    net = Net(found, _STOCK_CALLS, functools.partial(_call_each, layers))
        object.__setattr__(self, "_net", net)
        object.__setattr__(self, "_fresh", fresh)

    def __getstate__(self):
        return {"layers": self.layers}

    def parameters(self):
        params = []
        for layer in self.layers:
            params += layer.parameters()
        return params

    def _shape(self):
        return [layer._shape() for layer in self.layers]

    def __repr__(self):
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"


def _call_each(layers, x):
    for layer in layers:
        x = layer(x)
    return x


# the stock calls, which the fused paths reproduce: a class patched with another is called
_NEURON_CALL = Neuron.__call__
_STOCK_CALLS = ((Neuron, "__call__", _NEURON_CALL), (Layer, "__call__", Layer.__call__))
