# cython: language_level=3, embedsignature=True, embedsignature.format=clinic
# cython: boundscheck=False, wraparound=False, initializedcheck=False
"""A compiled scalar autograd engine with micrograd's API.

A Value holds a double and its gradient; operators build a DAG whose nodes own
references to their children only, in slabs of one cache line a node, and append
each node to a tape in build order. backward() walks the tape down from the root,
in one C loop that dispatches on each node's op code; graphs the tape does not hold
are ordered by a depth-first search on an explicit stack instead.

This file is Value's Python surface; the engine's concerns live in the files it
includes, one each (docs/architecture.md):
  ops.pxi     each op's forward value and chain rule, side by side
  memory.pxi  slabs, the tape, freeing
  order.pxi   the walks that order a graph and run the rules over it
  build.pxi   numbers and sequences from Python into nodes
  batch.pxi   a graph evaluated on many rows of inputs in one call
  optim.pxi   the SGD update and zero_grad over the parameters, in C
  debug.pxi   the debug build's invariant checks and failing allocations
"""
cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyTypeObject
from cpython.ref cimport Py_INCREF, PyObject
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_SIZE, PySequence_Fast_ITEMS
from libc.string cimport memcmp

import numbers

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define mgcy_prefetch(p) __builtin_prefetch((const void *)(p), 1, 3)
    #else
    #define mgcy_prefetch(p) ((void)0)
    #endif
    """
    void _prefetch "mgcy_prefetch"(const void*) noexcept nogil

# The per-node loops ask for a node this many steps ahead of the one they work on.
# A reference graph (4 MB) outgrows the caches: with 8 steps the walk of a new graph
# took about 1 ns a node more (A/B in one process); 32 to 128 did alike.
DEF PREFETCH = 32

cdef extern from "Python.h":
    unsigned long Py_TPFLAGS_HEAPTYPE

include "ops.pxi"
include "memory.pxi"
include "order.pxi"
include "build.pxi"
include "batch.pxi"
include "optim.pxi"
include "debug.pxi"


@cython.final
@cython.no_gc
cdef class _Aux:
    def __cinit__(self):
        self.label = ''

    def __dealloc__(self):
        PyMem_Free(self.topo)


@cython.final
@cython.no_gc  # holds a Value, which holds only Values: no cycle can pass through it
cdef class _ChainRule:
    """A node's `_backward`, as micrograd's closure: each call adds d(node)/d(child) * node.grad
    into every child's grad, once (a leaf's, or a hand-built node's, does nothing)."""
    cdef Value node

    def __call__(self):
        # No _grads_written bump needed: it adds node.grad times a local derivative, and a
        # nonzero interior grad was written by backward() or the grad setter, which bump it.
        cdef PyObject* node = <PyObject*>self.node
        _backprop_order(&node, 1, False)  # an order of one node (order.pxi: _backward)
        _debug_check()

    def __repr__(self):
        return f"<chain rule of {self.node!r}>"


cdef _Aux _aux_of(Value v):
    if v._aux is None:
        v._aux = _Aux.__new__(_Aux)
    return v._aux


cdef _check_layout():
    cdef Value v = Value.__new__(Value)
    if <char*>&v._s != <char*>&v._a + sizeof(PyObject*):
        raise ImportError("micrograd_cy: Value's _a and _s are not adjacent; _children() needs them so")
    cdef PyTypeObject* t = <PyTypeObject*>Value
    if t.tp_flags & Py_TPFLAGS_HEAPTYPE:  # a heap type's instances own a reference to it
        raise ImportError("micrograd_cy: Value is a heap type; its tp_dealloc expects a static one")
    t.tp_dealloc = _dealloc
    global _slabs_ok, _aux_offset
    _aux_offset = <char*>&v._grad - <char*><PyObject*>v + sizeof(double)
    # slabs hold 64-byte Values with _aux last (not so on, e.g., a Py_TRACE_REFS build)
    _slabs_ok = (t.tp_basicsize == NODE_BYTES and _aux_offset + sizeof(PyObject*) == NODE_BYTES
                 and sizeof(_Slab) <= HEAD_SLOTS * NODE_BYTES)

_check_layout()

# What a graph costs in memory, for estimates made before building one (cli.py): the bytes of
# a Value, and of one entry of a node's array of children
NODE_SIZE = (<PyTypeObject*>Value).tp_basicsize
CHILD_SIZE = sizeof(PyObject*)


def _tape_state():
    """(entries on the tape, live nodes on it): for tests."""
    return _ntape, _tape_live


def _order_counts():
    """(tape walks, walks that handed over to a depth-first search, depth-first searches,
    tape entries walked) since import: for tests."""
    return _walks, _handovers, _searches, _walked


def _use_depth_first(bint on):
    """Tests: order every graph depth-first (on) or by the tape where it pays (off, the
    default). Returns the setting it replaces."""
    global _depth_first_only
    was = _depth_first_only
    _depth_first_only = on
    return was


cdef dict _slot_values(object v):
    """What the __slots__ of v's classes below Value hold, by attribute name (a name like
    __x is stored as _Class__x), as pickle and copy restore them: (dict, slots) states."""
    values = {}
    for cls in type(v).__mro__:
        if cls is Value:
            break
        names = cls.__dict__.get("__slots__", ())
        for name in (names,) if isinstance(names, str) else names:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{cls.__name__.lstrip('_')}{name}"
            try:
                values[name] = getattr(v, name)
            except AttributeError:  # never set
                pass
    return values


def _restore(data, grad, label, cls=Value):
    """Unpickle a Value: a leaf with the same data, grad and label (of class cls, a subclass
    of Value, whose own __init__ is not called: pickle restores its __dict__ after)."""
    if not (isinstance(cls, type) and issubclass(cls, Value)):
        raise TypeError(f"cannot restore a Value as {cls!r}")
    cdef Value v = cls.__new__(cls)
    Value.__init__(v, data, label=label)
    v.grad = grad
    return v


@cython.no_gc
@cython.binding(False)  # methods are C method descriptors: they refuse a self that is not a Value
cdef class Value:
    """Value(data, _children=(), _op='', label='', grads=None)
--

Stores a single scalar value and its gradient."""

    __array_ufunc__ = None  # numpy scalars on the left defer to our reflected operators

    def __init__(self, data, _children=(), str _op not None='', str label not None='',
                 grads=None):
        cdef Py_ssize_t i, n
        cdef double* given
        if self._opcode != LEAF or self._flags & INITIALIZED:
            raise RuntimeError("Value.__init__ may run only once per Value")
        self._flags |= INITIALIZED  # first: what follows can run Python code, which may call it
        self._data = _data_arg(data)
        local = None if grads is None else _numbers(grads)  # Python code (a __float__) runs here
        children = PySequence_Fast(_children, "_children must be a sequence of Values")
        n = PySequence_Fast_GET_SIZE(children)
        if local is not None and len(local) != n:
            raise ValueError(f"grads= gives d(node)/d(child) for each child: {len(local)} "
                             f"numbers for {n} children")
        for c in children:
            if not isinstance(c, Value):
                raise TypeError(f"_children must hold Values, not {type(c).__name__!r}")
            _ready(c)  # itself, or a Value still being built, would make a cycle
        if n:
            self._opcode = CUSTOM
            self._flags |= OFF_TAPE
            # with grads, room for n doubles after the n children (ops.pxi: _given_grads)
            _set_kids(self, children, 0 if local is None else _slots(n * sizeof(double)))
            if local is not None:
                given = _given_grads(<PyObject*>self)
                for i in range(n):
                    given[i] = local[i]
                self._opcode = GIVEN
        if _op or label:
            _aux_of(self).op_name = _op
            self._aux.label = label
        self._flags |= READY
        _debug_check()

    # freeing is _dealloc(), installed as the type's tp_dealloc at import

    # -- micrograd's public surface ------------------------------------------

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, double value):
        self._data = value

    @data.deleter
    def data(self):
        raise AttributeError("a Value's data cannot be deleted")

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, double value):
        global _grads_written
        self._grad = value
        if self._n:  # a cached order may no longer count its interior grads as zero
            _grads_written += 1

    @grad.deleter
    def grad(self):
        raise AttributeError("a Value's grad cannot be deleted")

    @property
    def _prev(self):
        """The set of this node's children."""
        cdef unsigned int i
        cdef PyObject** kids = _children(<PyObject*>self)
        return {<object>kids[i] for i in range(self._n)}

    @property
    def _backward(self):
        """This node's chain rule as micrograd's `_backward` closure: calling it adds
        d(self)/d(child) * self.grad into each child's grad (the lecture's step-by-step backward)."""
        cdef _ChainRule rule = _ChainRule.__new__(_ChainRule)
        rule.node = self
        return rule

    @_backward.setter
    def _backward(self, value):
        raise AttributeError(
            "a Value's _backward cannot be assigned: each op's chain rule runs in C. Build a new op "
            "from its local derivatives instead, e.g. Value(math.sin(x.data), (x,), 'sin', "
            "grads=(math.cos(x.data),)), or from existing ops (README: Adding your own op)")

    @_backward.deleter
    def _backward(self):
        raise AttributeError("a Value's _backward cannot be deleted")

    @property
    def _op(self):
        """The op that produced this node, as micrograd names it ('' for a leaf)."""
        if self._aux is not None and self._aux.op_name:
            return self._aux.op_name
        if self._opcode == DOT and self._flags & RELU_OUT:
            return 'ReLU(dot)'
        if self._opcode == POW:
            return f'**{int(self._s.c)}' if self._flags & INT_EXPONENT else f'**{self._s.c}'
        return _OP_NAMES[self._opcode]

    @property
    def label(self):
        return '' if self._aux is None else self._aux.label

    @label.setter
    def label(self, str value not None):
        _aux_of(self).label = value

    @label.deleter
    def label(self):
        raise AttributeError("a Value's label cannot be deleted (set it to '')")

    def __repr__(self):
        return f"Value(data={self._data}, grad={self._grad})"

    def __reduce__(self):
        # a pickled Value is a leaf: its graph history is not kept; a subclass's instance
        # comes back as its class, with its __dict__ and what its __slots__ hold
        if type(self) is Value:
            return (_restore, (self._data, self._grad, self.label))
        state = getattr(self, "__dict__", None) or None
        slots = _slot_values(self)
        return (_restore, (self._data, self._grad, self.label, type(self)),
                (state, slots) if slots else state)

    # -- operators ------------------------------------------------------------

    def __add__(self, other):
        if type(other) is Value:  # the common case, without _apply's conversions
            return _binary(ADD, self, <Value>other)
        return _apply(ADD, self, other)

    def __mul__(self, other):
        if type(other) is Value:
            return _binary(MUL, self, <Value>other)
        return _apply(MUL, self, other)

    def __sub__(self, other):
        if _composes(self) or _composes(other):  # upstream: self + (-other)
            return NotImplemented if _coerce(other) is None else self + (-other)
        return _apply(SUB, self, other)

    def __truediv__(self, other):
        if _composes(self) or _composes(other):  # upstream: self * other**-1
            return NotImplemented if _coerce(other) is None else self * other**-1
        return _apply(DIV, self, other)

    def __pow__(self, other, mod):
        cdef Value out
        cdef double c
        if mod is not None:
            return NotImplemented
        if type(other) is Value:
            return _binary(POWV, self, other)
        if not _real(other, &c):
            return NotImplemented
        cdef bint integral = _integral(other)  # Python code may run: before the node is made
        _ready(self)
        out = _new(POW)
        out._s.c = c
        out._n = 1
        if integral:
            out._flags |= INT_EXPONENT
        Py_INCREF(self)
        out._a = <PyObject*>self
        return _done(out, self._flags & OFF_TAPE, _eval1(POW, self._data, c, &out._data))

    # A subclass that overrides one of the ops upstream builds the others from gets them
    # built from its own, as upstream's do (each comment names upstream's composition)

    def __neg__(self):  # self * -1
        if _composes(self):
            return self * -1
        return _unary(NEG, self)

    def __radd__(self, other):  # self + other
        if _composes(self):
            return NotImplemented if _coerce(other) is None else self + other
        return _apply(ADD, other, self)

    def __rmul__(self, other):  # self * other
        if _composes(self):
            return NotImplemented if _coerce(other) is None else self * other
        return _apply(MUL, other, self)

    def __rsub__(self, other):  # other + (-self)
        if _composes(self):
            return NotImplemented if _coerce(other) is None else other + (-self)
        return _apply(SUB, other, self)

    def __rtruediv__(self, other):  # other * self**-1
        if _composes(self):
            return NotImplemented if _coerce(other) is None else other * self**-1
        return _apply(DIV, other, self)

    def __rpow__(self, other, mod):  # other ** self
        return NotImplemented if mod is not None else _apply(POWV, other, self)

    def relu(self):
        return _unary(RELU, self)

    def tanh(self):
        return _unary(TANH, self)

    def exp(self):
        return _unary(EXP, self)

    def log(self):
        return _unary(LOG, self)

    def sigmoid(self):
        return _unary(SIGMOID, self)

    def sin(self):
        return _unary(SIN, self)

    # -- fused n-ary nodes ----------------------------------------------------

    @staticmethod
    def sum(values):
        """One node for values[0] + values[1] + ... (numbers become leaves)."""
        items = PySequence_Fast(values, "Value.sum() takes an iterable")
        cdef Value out = _new(SUM)
        cdef int kid_flags = _set_kids(out, items, 0)
        return _done(out, kid_flags & OFF_TAPE, _eval(<PyObject*>out))

    @staticmethod
    def dot(weights, inputs, bias=None, bint relu=False):
        """One node for bias + w[0]*x[0] + w[1]*x[1] + ..., micrograd's Neuron sum.

        With relu=True the node also applies ReLU to the sum (its _op is 'ReLU(dot)'):
        a whole ReLU neuron in one node, with the same numbers as dot(...).relu().
        """
        return _dot(PySequence_Fast(weights, "Value.dot() takes sequences of weights and inputs"),
                    PySequence_Fast(inputs, "Value.dot() takes sequences of weights and inputs"),
                    bias, relu)

    @staticmethod
    def matvec(weights, inputs, biases=None, bint relu=False):
        """[Value.dot(w, inputs, b, relu) for w, b in zip(weights, biases)] in one call.

        One node per row of weights: a layer of neurons. Numbers among the inputs become
        leaves once, shared by every row.
        """
        cdef Py_ssize_t j, m
        # snapshots: converting numbers may run code that edits lists
        cdef tuple rows = tuple(weights)
        cdef tuple bs = None
        cdef list out
        x = [v if type(v) is Value else _as_value(v)
             for v in PySequence_Fast(inputs, "Value.matvec() takes a sequence of inputs")]
        m = len(rows)
        if biases is not None:
            bs = tuple(biases)
            if len(bs) != m:
                raise ValueError(f"Value.matvec() needs one bias per row, got {m} rows and "
                                 f"{len(bs)} biases")
        out = [None] * m
        for j in range(m):
            out[j] = _dot(PySequence_Fast(rows[j], "each row of weights must be a sequence"), x,
                          None if bs is None else bs[j], relu)
        return out

    # -- the graph as a whole --------------------------------------------------

    @staticmethod
    def evaluate(outputs, inputs, rows):
        """The outputs' data for each row of input values, in one call: a numpy array.

        outputs: a Value, or a sequence of Values; inputs: a sequence of leaves of their
        graph; rows: N rows of len(inputs) numbers (any iterable of rows, each an iterable
        of numbers, or an N x k array).
        Returns an array of N numbers for one output Value, else of shape N x len(outputs).
        The graph is built once (e.g. out = model(x) on leaves x) and evaluated in C for
        every row; no gradients. After it, every node's data is computed from the inputs'
        own values and interior grads are 0, as after forward().
        """
        result = _evaluate(outputs, inputs, rows)
        _debug_check()
        return result

    def backward(self):
        """Set every node's grad to d(self)/d(node); leaves accumulate (+=)."""
        # topological order all of the children in the graph (the tape gives it, or a
        # depth-first search), and go one node at a time applying the chain rule
        _backward(self)
        _debug_check()

    def forward(self):
        """Recompute every node's data from the leaves, in the cached order (replay).

        The graph's structure is what it was when built: Python control flow that
        depended on data is not re-run. Returns self.
        """
        _forward_cached(_cached_order(self))
        _debug_check()
        return self


@cython.final
@cython.no_gc  # holds tuples of the neurons' lists of Values (see SGD on cycles)
@cython.binding(False)  # C method descriptors: they refuse a self that is not a Net
@cython.auto_pickle(False)  # its PARAMS node must never come back as a plain leaf
cdef class Net:
    """Net(layers): a multi-layer perceptron with one output, one node a call (for nn.MLP).

    layers: a sequence of (weights, biases, relu), one a layer: weights a sequence of rows
    (each a sequence of weights, one per input), biases one per row; the last layer has one
    row. net(x) is the Value that chaining Value.matvec over the layers gives, with the same
    numbers, data and gradients, as one node (its _op 'mlp', its _prev the inputs and a
    'params' node holding the weights): no node a neuron. The rows may be lists that change
    in place: each call checks that they still hold the weights the node reads.

    stock, otherwise: the net stands in for calling the caller's objects (nn.MLP's layers and
    neurons) only while their classes' methods are the stock ones: stock holds (class, name,
    function) triples, and a call where class.name is not function returns otherwise(x)
    instead (a patched Neuron.__call__ is then called). Checked in C, at each call.
    """
    cdef tuple _rows     # every layer's rows, one after the other: the caller's own sequences
    cdef tuple _biases   # one a row
    cdef tuple _sizes    # rows a layer
    cdef tuple _relus    # a flag a layer
    cdef Value _params   # the PARAMS node of the weights as last read, or None...
    cdef tuple _read_for # ...and the (sizes, relus) it was read for: __init__ makes new ones
    cdef tuple _stock    # (class, name, function) triples, each checked at every call
    cdef object _otherwise

    def __init__(self, layers, stock=(), otherwise=None):
        stock = tuple(stock)
        for check in stock:
            if not (isinstance(check, tuple) and len(check) == 3 and isinstance(check[0], type)
                    and type(check[1]) is str):
                raise TypeError("Net: stock holds (class, method name, function) triples")
        if stock and not callable(otherwise):
            raise TypeError("Net: stock needs otherwise, a callable taking the inputs")
        rows, biases, sizes, relus = [], [], [], []
        for layer in layers:
            weights, bs, relu = layer
            weights = tuple(weights)
            bs = tuple(bs)
            if len(bs) != len(weights):
                raise ValueError(f"Net: a layer needs one bias per row, got {len(weights)} rows "
                                 f"and {len(bs)} biases")
            rows += weights
            biases += bs
            sizes.append(len(weights))
            relus.append(bool(relu))
        if not sizes or sizes[len(sizes) - 1] != 1:
            raise ValueError("Net: the last layer must have exactly one row (one output)")
        self._rows, self._biases = tuple(rows), tuple(biases)
        self._sizes, self._relus = tuple(sizes), tuple(relus)
        self._params = None
        self._stock, self._otherwise = stock, otherwise

    def __call__(self, x):
        cdef Value p, out
        cdef Py_ssize_t n0
        cdef unsigned int hidden
        cdef unsigned int* shape
        cdef int kid_flags
        cdef tuple rows, biases, sizes, relus
        if self._rows is None:
            raise ValueError("a Net made by Net.__new__ has no layers: make it with Net(layers)")
        if self._stock and not _stock_methods(self._stock):
            return self._otherwise(x)
        items = PySequence_Fast(x, "a Net takes a sequence of inputs")  # may run code
        # locals, read together: reading numbers may run code that calls __init__ again
        rows, biases, sizes, relus = self._rows, self._biases, self._sizes, self._relus
        n0 = PySequence_Fast_GET_SIZE(items)
        p = self._params
        if p is None or self._read_for[0] is not sizes or self._read_for[1] is not relus \
                or not _params_hold(p, rows, biases, n0):
            p = _params_node(rows, biases, sizes, relus, n0)
            # for other layers if __init__ ran meanwhile: the next call reads them
            self._params, self._read_for = p, (sizes, relus)
            if PySequence_Fast_GET_SIZE(items) != n0:  # reading the weights ran code that did it
                raise RuntimeError("the inputs changed size while the weights were read")
        shape = _net_shape(<PyObject*>p)  # p's own: the node's rules read it, not self's
        hidden = shape[2 + 2 * shape[0]]
        out = _new(NET)
        out._s.kids = <PyObject**>_alloc((n0 + 1 + _slots(2 * hidden * sizeof(double)))
                                         * sizeof(PyObject*))
        if out._s.kids == NULL:
            raise MemoryError()
        kid_flags = _set_kids(out, items, 0)  # may run Python code; out owns what it counted
        Py_INCREF(p)
        out._s.kids[out._n] = <PyObject*>p
        out._n += 1
        return _done(out, kid_flags & OFF_TAPE or p._flags & KID_OFF_TAPE, _eval(<PyObject*>out))

    def __repr__(self):
        return f"Net({[len(self._rows[0]) if self._rows else 0] + list(self._sizes or ())})"
