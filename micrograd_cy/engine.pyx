# cython: language_level=3, embedsignature=True, embedsignature.format=clinic
# cython: boundscheck=False, wraparound=False, initializedcheck=False
"""A compiled scalar autograd engine with micrograd's API.

A Value holds a double and its gradient; operators build a DAG whose nodes own
references to their children only, in slabs of one cache line a node, and append
each node to a tape in build order. backward() walks the tape down from the root,
in one C loop that dispatches on each node's op code; graphs the tape does not hold
are ordered by a depth-first search on an explicit stack instead.

This file is Value's Python surface. The engine's concerns live in the files it includes
below, one each, in the order they build on each other (docs/architecture.md). Value's C
fields, the Op enum and the flags are declared in engine.pxd.
"""
cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyTypeObject
from cpython.ref cimport Py_INCREF, PyObject
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_SIZE, PySequence_Fast_ITEMS

include "ops.pxi"     # each op's forward value beside its chain rule; the dispatch on the op code
include "memory.pxi"  # slabs (where nodes live), the tape, freeing; the invariants, stated once
include "order.pxi"   # the walks that order a graph, and the backward and replay passes
include "build.pxi"   # Python numbers and sequences into leaves and op nodes: every builder
include "net.pxi"     # a one-output MLP as one node: the NET and PARAMS rules, and Net
include "batch.pxi"   # Value.evaluate: a graph evaluated on many rows of inputs in one call
include "optim.pxi"   # SGD, Adam, AdamW: torch.optim's updates over the parameters, in C
include "debug.pxi"   # the debug build's invariant checks and failing allocations


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
        if mod is not None:
            return NotImplemented
        if type(other) is Value:
            return _binary(POWV, self, other)
        return _pow_node(self, other)

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

    def cos(self):
        return _unary(COS, self)

    def sqrt(self):
        return _unary(SQRT, self)

    # -- fused n-ary nodes ----------------------------------------------------

    @staticmethod
    def sum(values):
        """One node for values[0] + values[1] + ... (numbers become leaves)."""
        return _nary_node(SUM, 0, PySequence_Fast(values, "Value.sum() takes an iterable"), None,
                          None, 0, 0)

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
        return _matvec(weights, inputs, biases, relu)

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
