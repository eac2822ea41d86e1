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

set_fused(False), or `with fused(False):` for a block, turns every fused path off: a neuron
then builds micrograd's own nodes ('*', '+', then 'ReLU', in upstream's order), and layers
and MLPs call their parts, so that draw_dot shows the lecture's graph. The numbers are the
same either way.

save() and load() keep an MLP in a versioned JSON file (what micrograd-cy train --save
writes); memory_needed() bounds, from the sizes alone, what an MLP and its calls take.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import math
import numbers
import os
import random
from typing import Any, Callable, Iterator, Optional, Sequence, TypedDict, Union

from micrograd_cy.engine import CHILD_SIZE, NODE_SIZE, Net, Value

Shape = Union[int, list[int], list[list[int]]]  # a neuron's inputs, a layer's, an MLP's


class State(TypedDict):
    """What state_dict() gives: the module's shape and its parameters' values, in order."""
    shape: Shape
    parameters: list[float]


Operand = Union[Value, float]  # an input: a Value or a number, which becomes a leaf
Output = Union[Value, list[Value]]  # a Layer's or an MLP's: a Value where it has one output
Fresh = Union[list[bool], tuple[bool]]  # a freshness token (below)
Rows = tuple[tuple[Sequence[Value], ...], tuple[Value, ...], bool]  # Value.matvec's arguments

_STALE: Fresh = (False,)  # the freshness of a cache never read


# -- the fused paths on or off ---------------------------------------------------------------

# set_fused() sets the process's setting, which every thread reads; fused() overrides it for
# the code in its block, in this thread (or asyncio task) only.
# A call reads it as _fused_here.get(_fused_everywhere): one C call.
_fused_everywhere = True
_fused_here: contextvars.ContextVar[bool] = contextvars.ContextVar("micrograd_cy.nn.fused")


def is_fused() -> bool:
    """Whether Neuron, Layer and MLP calls may build fused nodes here (the default), or build
    micrograd's own graph, a node an op."""
    return _fused_here.get(_fused_everywhere)


def set_fused(on: bool) -> bool:
    """Let nn's modules build fused nodes (True, the default) or micrograd's own graph
    (False), in every thread; returns the setting it replaces. fused() sets it for a block."""
    global _fused_everywhere
    if type(on) is not bool:
        raise TypeError(f"set_fused takes True or False, not {on!r}")
    was, _fused_everywhere = _fused_everywhere, on
    return was


@contextlib.contextmanager
def fused(on: bool) -> Iterator[None]:
    """`with fused(False):` the calls in the block, in this thread, build micrograd's own
    graph ('*', '+' and 'ReLU' nodes a neuron, as upstream's nn.py); fused(True) the fused
    nodes. The setting before it comes back at the end of the block."""
    if type(on) is not bool:
        raise TypeError(f"fused takes True or False, not {on!r}")
    token = _fused_here.set(on)
    try:
        yield
    finally:
        _fused_here.reset(token)


class Module:

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = 0

    def parameters(self) -> list[Value]:
        return []

    def state_dict(self) -> State:
        """The parameters' values as plain data (JSON-ready): the module's shape and a flat
        list of floats in parameters() order. Gradients are not part of it."""
        return {"shape": self._shape(), "parameters": [p.data for p in self.parameters()]}

    def load_state_dict(self, state: State) -> None:
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

    def _shape(self) -> Shape:
        return []

    # A layer or an MLP caches what it read of its parts (which path to take, the neurons'
    # lists of weights) with a freshness token, [True], which it hands to every module it
    # read. An attribute set or deleted on one of those marks its readers' tokens stale, and
    # each reads again at its next call: the cost of a call depends on the model called,
    # never on what else is written in the process. Caches and tokens are set with
    # object.__setattr__ (a cache is not a change), never through __dict__, which touched
    # once would make every attribute read of the module slower.

    _readers: Union[tuple[()], list[list[bool]]] = ()  # the tokens of the caches that read this module

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        self._changed()

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        self._changed()

    def _changed(self) -> None:
        for fresh in self._readers:  # a token handed over meanwhile is met too
            fresh[0] = False

    def _read_by(self, fresh: list[bool]) -> None:
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

    def __getstate__(self) -> dict[str, Any]:  # the readers' tokens are not the module's state
        state = dict(vars(self))
        state.pop("_readers", None)
        return state

def _stock_rows(neurons: Any, fresh: list[bool]) -> Optional[Rows]:
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

    def __init__(self, nin: int, nonlin: bool = True) -> None:
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0)
        self.nonlin = nonlin

    def __call__(self, x: Sequence[Operand]) -> Value:
        if _fused_here.get(_fused_everywhere):
            if Value.relu is _VALUE_RELU or not self.nonlin:
                return Value.dot(self.w, x, self.b, relu=bool(self.nonlin))
            return Value.dot(self.w, x, self.b).relu()  # a relu patched onto Value
        act = sum((wi*xi for wi, xi in zip(self.w, x)), self.b)  # upstream's, node for node
        return act.relu() if self.nonlin else act

    def parameters(self) -> list[Value]:
        return self.w + [self.b]

    def _shape(self) -> int:
        return len(self.w)

    def __repr__(self) -> str:
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(Module):
    """A layer of neurons. `neurons` is a tuple: replace it whole, and the layer notices."""

    _fresh = _STALE
    _matvec: Optional[Rows]  # set with _fresh

    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        self.neurons = tuple(Neuron(nin, **kwargs) for _ in range(nout))

    def __call__(self, x: Sequence[Operand]) -> Output:
        if not self._fresh[0]:
            self._read_neurons()
        if self._matvec is None or Neuron.__call__ is not _NEURON_CALL \
                or Value.relu is not _VALUE_RELU or not _fused_here.get(_fused_everywhere):
            out = [n(x) for n in self.neurons]
        else:
            rows, biases, relu = self._matvec
            out = Value.matvec(rows, x, biases, relu)
        return out[0] if len(out) == 1 else out

    def _read_neurons(self) -> None:
        fresh = [True]
        self._read_by(fresh)
        object.__setattr__(self, "_matvec", _stock_rows(self.neurons, fresh))
        object.__setattr__(self, "_fresh", fresh)

    def __getstate__(self) -> dict[str, Any]:
        return {"neurons": self.neurons}

    def parameters(self) -> list[Value]:
        params = []
        for n in self.neurons:
            params += n.parameters()
        return params

    def _shape(self) -> list[int]:
        return [n._shape() for n in self.neurons]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """A multi-layer perceptron. `layers` is a tuple: replace it whole, and the MLP notices."""

    _fresh = _STALE
    _net: Optional[Net]  # set with _fresh

    def __init__(self, nin: int, nouts: list[int]) -> None:
        sz = [nin] + nouts
        self.layers = tuple(Layer(sz[i], sz[i+1], nonlin=i != len(nouts)-1)
                            for i in range(len(nouts)))

    def __call__(self, x: Sequence[Operand]) -> Output:
        if not self._fresh[0]:
            self._read_layers()
        # Net calls the layers itself if a stock __call__ is patched
        if self._net is not None and _fused_here.get(_fused_everywhere):
            out: Value = self._net(x)
            return out
        return _call_each(self.layers, x)

    def _read_layers(self) -> None:
        """One node a call (Net) where layer by layer would be Value.matvec's on each: stock
        Layers of stock neurons, each of one nonlinearity, one output at the end and none
        before (a layer of one neuron gives a Value, not a list, which the next cannot take)."""
        fresh = [True]
        self._read_by(fresh)
        net: Optional[Net] = None
        layers = self.layers
        if type(layers) is tuple and layers:
            for layer in layers:
                if isinstance(layer, Module):
                    layer._read_by(fresh)
            if all(type(layer) is Layer for layer in layers):
                found = [_stock_rows(layer.neurons, fresh) for layer in layers]
                stock = [rows for rows in found if rows is not None]
                if (len(stock) == len(found) and len(stock[-1][0]) == 1
                        and all(len(rows) != 1 for rows, _, _ in stock[:-1])):
                    net = Net(stock, _STOCK_CALLS, functools.partial(_call_each, layers))
        object.__setattr__(self, "_net", net)
        object.__setattr__(self, "_fresh", fresh)

    def __getstate__(self) -> dict[str, Any]:
        return {"layers": self.layers}

    def parameters(self) -> list[Value]:
        params = []
        for layer in self.layers:
            params += layer.parameters()
        return params

    def _shape(self) -> list[list[int]]:
        return [layer._shape() for layer in self.layers]

    @property
    def sizes(self) -> list[int]:
        """The layer sizes, inputs first: MLP(2, [16, 16, 1]).sizes == [2, 16, 16, 1]."""
        return [len(self.layers[0].neurons[0].w)] + [len(layer.neurons) for layer in self.layers]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"


def _call_each(layers: Sequence[Layer], x: Any) -> Output:
    for layer in layers:
        x = layer(x)
    out: Output = x
    return out


# the stock calls, which the fused paths reproduce: a class patched with another is called
# (Value.relu too: upstream's neuron calls act.relu(), which users patch)
_NEURON_CALL = Neuron.__call__
_VALUE_RELU = vars(Value)["relu"]
_STOCK_CALLS = ((Neuron, "__call__", _NEURON_CALL), (Layer, "__call__", Layer.__call__),
                (Value, "relu", _VALUE_RELU))


# -- saving and loading: a versioned JSON document -------------------------------------------

MODEL_FORMAT = "micrograd_cy MLP"
MODEL_VERSION = 1
_DOCUMENT_KEYS = ("format", "version", "sizes", "state")


def save(model: MLP, path: Union[str, os.PathLike[str]], **metadata: Any) -> None:
    """Write the model to path as JSON: its sizes and state_dict(), and metadata (JSON-ready
    values, such as the data set it was trained on), which load() hands to its check."""
    taken = [key for key in metadata if key in _DOCUMENT_KEYS]
    if taken:
        raise ValueError(f"metadata may not be named {', '.join(taken)}: the document's own keys")
    document = {"format": MODEL_FORMAT, "version": MODEL_VERSION, **metadata,
                "sizes": model.sizes, "state": model.state_dict()}
    with open(path, "w") as f:
        json.dump(document, f)


def load(path: Union[str, os.PathLike[str]],
         check: Optional[Callable[[list[int], dict[str, Any]], None]] = None) -> MLP:
    """The MLP a save() wrote to path. Everything in the file is checked before anything is
    built: its format and version, its sizes, the memory the MLP needs, the form of its
    state; check(sizes, metadata), if given, runs after the sizes are read and may raise to
    refuse the file. A file that fails a check raises ValueError saying what is wrong, in
    one line however large the file."""
    try:
        with open(path) as f:
            document = json.load(f)
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, nested too deep
        raise ValueError(f"{path} is not a micrograd_cy model file ({e})") from None
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a micrograd_cy model file")
    if document.get("version") != MODEL_VERSION:
        raise ValueError(f"{path} is a model of format version {_brief(document.get('version'))}; "
                         f"this micrograd_cy reads version {MODEL_VERSION}")
    sizes = document.get("sizes")
    if not isinstance(sizes, list) or len(sizes) < 2 or not all(map(_is_count, sizes)):
        raise ValueError(f"{path}: 'sizes' must list positive layer sizes")
    if check is not None:
        check(sizes, {k: v for k, v in document.items() if k not in _DOCUMENT_KEYS})
    try:
        need = memory_needed(sizes)
    except ValueError as e:  # a layer wider than any memory
        raise ValueError(f"{path}: {e}") from None
    have = available_memory()
    if have is not None and need > have:
        raise ValueError(f"{path}: MLP{_brief(tuple(sizes))} needs {need / 2**30:,.1f} GiB, more "
                         f"than the {have / 2**30:,.1f} GiB this machine has free")
    state: Any = document.get("state")
    if not _is_state_of(state, sizes):
        raise ValueError(f"{path}: its state does not match its sizes {_brief(sizes)} "
                         f"(a state_dict() of that MLP)")
    model = MLP(sizes[0], sizes[1:])
    try:
        model.load_state_dict(state)
    except OverflowError:  # an integer JSON holds, such as 10**400
        raise ValueError(f"{path}: a parameter is too large for a float") from None
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None
    return model


def _is_count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _is_state_of(state: object, sizes: Sequence[int]) -> bool:
    """Whether state has the form of MLP(sizes[0], sizes[1:]).state_dict(): a shape listing
    each neuron's number of inputs, layer by layer, and a weight an input and a bias a
    neuron. Read from the file's data alone: nothing as large as the MLP is made."""
    if not isinstance(state, dict) or set(state) != {"shape", "parameters"}:
        return False
    shape, parameters = state["shape"], state["parameters"]
    layers = list(zip(sizes, sizes[1:]))
    if not isinstance(shape, list) or len(shape) != len(layers):
        return False
    for neurons, (n_in, n_out) in zip(shape, layers):
        if not isinstance(neurons, list) or len(neurons) != n_out:
            return False
        if not all(_is_count(n) and n == n_in for n in neurons):
            return False
    return (isinstance(parameters, list)
            and len(parameters) == sum((n_in + 1) * n_out for n_in, n_out in layers))


def _brief(value: object, limit: int = 60) -> str:
    """repr(value), cut short: what a file holds may be megabytes, a message is one line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# -- memory ----------------------------------------------------------------------------------

# No memory holds a layer wider than this (64 TiB for its biases alone); the sums below, of
# narrower ones, stay within what a float shows.
WIDEST = 2**40


SLAB = 65536  # the engine takes memory for nodes 64 KiB at a time (memory.pxi)
NEURON = 512  # a Neuron's Python objects: itself, its attributes, its list of weights


def memory_needed(sizes: Sequence[int], calls: int = 0, fused: Optional[bool] = None) -> int:
    """An upper bound on the bytes of MLP(sizes[0], sizes[1:]) and of the graph `calls` calls
    of it build (a step's forward over `calls` samples), from the sizes alone; each node is
    counted with a place in a topological order. fused: whether the calls build fused nodes
    (is_fused() where None) or micrograd's own. Raises ValueError for a layer wider than
    WIDEST."""
    if max(sizes) > WIDEST:
        raise ValueError(f"MLP{_brief(tuple(sizes))} has a layer of more than {WIDEST:,} "
                         f"neurons, wider than any memory holds")
    node = NODE_SIZE + CHILD_SIZE
    layers = list(zip(sizes, sizes[1:]))
    parameters = sum((n_in + 1) * n_out for n_in, n_out in layers)
    # a parameter: a node, and a slot in its neuron's list, in parameters()'s, in an
    # optimizer's and in Net's PARAMS node
    model = (parameters * (NODE_SIZE + 4 * CHILD_SIZE) + sum(sizes[1:]) * NEURON
             + node + CHILD_SIZE * (2 * len(sizes) + 3) + SLAB)
    if not (is_fused() if fused is None else fused):
        # micrograd's graph: a neuron's w*x and + nodes, two children each, and its ReLU; a
        # number among the inputs becomes a leaf at each of the first layer's products
        return model + calls * (sizes[0] * sizes[1] * node + sum(
            n_out * (2 * n_in * (node + 2 * CHILD_SIZE) + node + CHILD_SIZE)
            for n_in, n_out in layers))
    call = sizes[0] * node  # numbers among the inputs become leaves
    if sizes[-1] == 1 and 1 not in sizes[1:-1]:
        # engine.Net: one node a call (MLP._read_layers), its children the inputs and the
        # PARAMS node, then two doubles a hidden unit
        call += node + CHILD_SIZE * (sizes[0] + 1) + 16 * sum(sizes[1:-1])
    else:  # Value.matvec a layer: a node a neuron, its weights, inputs and bias its children
        call += sum(n_out * (node + CHILD_SIZE * (2 * n_in + 1)) for n_in, n_out in layers)
    return model + calls * call


def available_memory() -> Optional[int]:
    """Bytes the machine could give now (MemAvailable), or all of its memory, or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
