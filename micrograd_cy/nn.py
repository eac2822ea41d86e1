"""Neurons, layers and MLPs out of Values: micrograd's nn.py, on the compiled engine.

Pure Python on purpose, with micrograd's classes, constructors and reprs. What differs is
how a forward pass is built, never its numbers: a neuron is one fused node,
Value.dot(w, x, b, relu), summed in micrograd's order (b + w0*x0 + w1*x1 + ...) and then
ReLU'd, a layer evaluates all its neurons in one call, Value.matvec, and an MLP with one
output is one node a call, engine.Net, with the numbers of those neurons' nodes.
"""
import itertools
import math
import numbers
import random

from micrograd_cy.engine import Net, Value

# Renewed by every attribute assignment on any module: a layer re-reads its neurons'
# parameters when it changed since the layer last looked. next() on a count is atomic,
# so threads never hand out the same value twice.
_generations = itertools.count(1)
_generation = 0


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

    def __setattr__(self, name, value):
        global _generation
        object.__setattr__(self, name, value)
        _generation = next(_generations)


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

    _seen = None  # the generation its cache was read at (_read_neurons); None: never read

    def __init__(self, nin, nout, **kwargs):
        self.neurons = tuple(Neuron(nin, **kwargs) for _ in range(nout))

    def __call__(self, x):
        if self._seen != _generation:
            self._read_neurons()
        if self._relu is None:  # neurons differ in nonlinearity: one at a time
            out = [n(x) for n in self.neurons]
        else:
            out = Value.matvec(self._w, x, self._b, self._relu)
        return out[0] if len(out) == 1 else out

    def _read_neurons(self):
        seen = _generation  # before reading: a change made meanwhile shows next call
        nonlins = {bool(n.nonlin) for n in self.neurons}
        # written to __dict__ directly: a cache is not a change of structure
        self.__dict__.update(
            # tuples, which Value.matvec takes without a copy; of the neurons' own lists of
            # weights, so that edits to those show
            _w=tuple(n.w for n in self.neurons),
            _b=tuple(n.b for n in self.neurons),
            _relu=nonlins.pop() if len(nonlins) == 1 else None,
            _seen=seen,
        )

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

    _seen = None  # the generation _net was chosen at (_read_layers); None: never

    def __init__(self, nin, nouts):
        sz = [nin] + nouts
        self.layers = tuple(Layer(sz[i], sz[i+1], nonlin=i != len(nouts)-1)
                            for i in range(len(nouts)))

    def __call__(self, x):
        if self._seen != _generation:
            self._read_layers()
        if self._net is not None:
            return self._net(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def _read_layers(self):
        seen = _generation  # before reading: a change made meanwhile shows next call
        net = None
        layers = self.layers
        # one node a call when layer by layer would be Value.matvec's on each: plain Layers,
        # each of one nonlinearity, one output at the end and none before (a layer of one
        # neuron gives a Value, not a list, which the next layer cannot take)
        if layers and all(type(layer).__call__ is Layer.__call__ for layer in layers):
            for layer in layers:
                if layer._seen != _generation:
                    layer._read_neurons()
            if (all(layer._relu is not None for layer in layers)
                    and len(layers[-1]._w) == 1
                    and all(len(layer._w) != 1 for layer in layers[:-1])):
                net = Net([(layer._w, layer._b, layer._relu) for layer in layers])
        self.__dict__.update(_net=net, _seen=seen)  # a cache is not a change of structure

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
