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
from cpython.object cimport PyTypeObject, visitproc
from cpython.ref cimport Py_INCREF, PyObject
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_SIZE, PySequence_Fast_ITEMS

include "ops.pxi"     # each op's forward value beside its chain rule; the dispatch on the op code
include "memory.pxi"  # slabs (where nodes live), the tape, freeing; the invariants, stated once
include "order.pxi"   # the walks that order a graph, and the backward and replay passes
include "build.pxi"   # Python numbers and sequences into leaves and op nodes: every builder
include "net.pxi"     # a one-output MLP as one node: the NET and PARAMS rules, and Net
include "batch.pxi"   # Value.evaluate, Value.backward_rows: a graph compiled and run over many rows
include "optim.pxi"   # SGD, Adam, AdamW: torch.optim's updates over the parameters, in C
include "debug.pxi"   # the debug build's invariant checks and failing allocations


@cython.final
@cython.no_gc
cdef class _Aux:
    def __cinit__(self):
        self.label = ''

    def __dealloc__(self):
        PyMem_Free(self.topo)

    def __reduce__(self):  # vars(v) copies and pickles as the plain dict it stands for
        return (dict, (dict(self),))


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


cdef tuple _local_grads(Value node):
    """d(node)/d(child) for each of node's children, in _children's order, as microgpt's
    Value keeps them: the node's chain rule run once, with a gradient of 1, onto stand-ins
    for its children (fresh leaves with their data), so that a child met in two places gets
    each place's own. No Python code runs while the stand-ins are in place."""
    cdef unsigned int i, n
    cdef PyObject** kids
    cdef PyObject* p = <PyObject*>node
    cdef double saved
    if node._opcode == NET or node._opcode == PARAMS:
        raise TypeError(f"a fused MLP's node ({node._op!r}) has no local gradient per child: "
                        f"its weights sit in its 'params' node. Build the model unfused to walk "
                        f"it by hand: micrograd_cy.nn.fused(False) or "
                        f"install_as_micrograd(fused=False)")
    if node._opcode <= CUSTOM or not node._flags & READY:  # a leaf; no rule; being built
        return ()
    n = node._n  # fixed once built
    stand = [Value.__new__(Value) for i in range(n)]  # allocations may run code: before
    kids = _children(p)
    held = [<object>kids[i] for i in range(n)]
    for i in range(n):
        (<Value>stand[i])._data = _datap(kids[i])[0]
        kids[i] = <PyObject*>stand[i]
    saved, node._grad = node._grad, 1.0
    _backprop_order(&p, 1, False)
    node._grad = saved
    for i in range(n):
        kids[i] = <PyObject*>held[i]
    return tuple([(<Value>stand[i])._grad for i in range(n)])


cdef inline bint _has_aux(Value v) noexcept:
    """Whether v's slot holds its _Aux. It may hold a plain dict instead: Python's generic
    setattr, reached past Value's own (object.__setattr__(v, ...), which 3.13 allows), puts one
    there; _aux_of turns it into an _Aux before any of the _Aux's own fields is read."""
    return v._aux != NULL and Py_TYPE(v._aux) == <PyTypeObject*>_Aux


cdef _Aux _aux_of(Value v):
    """v's _Aux, made when first needed (with the items of a plain dict found in its place)."""
    cdef PyObject* old
    while not _has_aux(v):
        old = v._aux
        aux = _Aux.__new__(_Aux)  # a dict: its allocation may run the cyclic GC, so Python
        if old != NULL:           # code, which may have given v one meanwhile
            held = <object>old
            aux.update(held)      # may run code too (a str subclass's ==)
        if v._aux == old:
            Py_INCREF(aux)
            v._aux = <PyObject*>aux
            if old != NULL:
                _decref(old)      # held above: released when held goes
    return <_Aux>v._aux


cdef inline _Aux _aux_if_any(Value v):
    return None if v._aux == NULL else _aux_of(v)


cdef extern from "Python.h":
    int PyObject_GenericSetAttr(object, object, PyObject*) except -1


cdef int _set_attr(Value v, name, PyObject* value) except -1:
    """v.name = value (del v.name where value is NULL), as Python's generic setattr does it,
    but that v gets its _Aux before anything is stored in it: Python would put a plain dict
    where the _Aux belongs. A data descriptor of the type (data, grad, label, _op, ...)
    takes the value itself, with one lookup, as the generic path would."""
    cdef PyObject* found = NULL
    if isinstance(name, str):
        found = _type_lookup(Py_TYPE(<PyObject*>v), <PyObject*>name)
        if found != NULL and Py_TYPE(found).tp_descr_set != NULL:
            if value != NULL:
                descr = <object>found  # a reference: a setter of Python code may delete it
                return Py_TYPE(found).tp_descr_set(descr, v, <object>value)
        elif value == NULL and (v._aux == NULL or name not in <_Aux>v._aux):
            # the same words on every Python (3.9's generic delete says only the name)
            raise AttributeError(f"'{type(v).__name__}' object has no attribute '{name}'")
    if v._aux == NULL and (found == NULL or Py_TYPE(found).tp_descr_set == NULL):
        _aux_of(v)
    return PyObject_GenericSetAttr(v, name, value)


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

Stores a single scalar value and its gradient.

A node built by hand has no gradient rule, unless grads= gives d(node)/d(child) for each
child; microgpt's form, Value(data, children, local_grads), gives them in the third place."""

    __array_ufunc__ = None  # numpy scalars on the left defer to our reflected operators

    def __init__(self, data, _children=(), _op='', str label not None='', grads=None):
        cdef Py_ssize_t i, n
        cdef double* given
        if self._opcode != LEAF or self._flags & INITIALIZED:
            raise RuntimeError("Value.__init__ may run only once per Value")
        self._flags |= INITIALIZED  # first: what follows can run Python code, which may call it
        cdef str name = '' if not isinstance(_op, str) else _op
        if not isinstance(_op, str):  # microgpt's Value(data, children, local_grads)
            if _op is None or grads is not None:
                raise TypeError("the third argument is the op's name (a str) or, as in "
                                "microgpt, the local gradients (a sequence of numbers, which "
                                "grads= gives too: give them once)")
            grads = _op
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
        if name or label:
            aux = _aux_of(self)
            aux.op_name = name
            aux.label = label
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
    def _children(self):
        """This node's children in order, as microgpt's Value keeps them (a child used
        twice, as in x * x, is there twice)."""
        cdef unsigned int i
        cdef PyObject** kids = _children(<PyObject*>self)
        return tuple([<object>kids[i] for i in range(self._n)])

    @property
    def _local_grads(self):
        """d(self)/d(child) for each of _children, as microgpt's Value keeps them: so
        `child.grad += local * self.grad` over zip(_children, _local_grads) is this node's
        chain rule. () for a leaf and a node built without a rule."""
        return _local_grads(self)

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
        aux = _aux_if_any(self)
        if aux is not None and aux.op_name:
            return aux.op_name
        if self._opcode == DOT and self._flags & RELU_OUT:
            return 'ReLU(dot)'
        if self._opcode == POW:
            return f'**{int(self._s.c)}' if self._flags & INT_EXPONENT else f'**{self._s.c}'
        return _OP_NAMES[self._opcode]

    @property
    def label(self):
        return '' if self._aux == NULL else _aux_of(self).label

    @label.setter
    def label(self, str value not None):
        _aux_of(self).label = value

    @label.deleter
    def label(self):
        raise AttributeError("a Value's label cannot be deleted (set it to '')")

    def __repr__(self):
        return f"Value(data={self._data}, grad={self._grad})"

    def __reduce__(self):
        # a pickled Value is a leaf: its graph history is not kept, its attributes are; a
        # subclass's instance comes back as its class, with what its __slots__ hold too
        state = dict(<_Aux>self._aux) if self._aux != NULL and len(<_Aux>self._aux) else None
        if type(self) is Value:
            args = (self._data, self._grad, self.label)
            return (_restore, args) if state is None else (_restore, args, state)
        slots = _slot_values(self)
        return (_restore, (self._data, self._grad, self.label, type(self)),
                (state, slots) if slots else state)

    # -- the user's own attributes: v.m = 0, setattr(v, '_vis_color', 'red'), vars(v) ----
    # They live in the node's _Aux, a dict made when the first is set (a node without any
    # costs nothing more); the type's tp_dictoffset points Python's lookups there. Names the
    # type defines as data descriptors (data, grad, label, _prev, _op, ...) stay the engine's.

    def __setattr__(self, name, value):
        _set_attr(self, name, <PyObject*>value)

    def __delattr__(self, name):
        _set_attr(self, name, NULL)

    @property
    def __dict__(self):
        return _aux_of(self)

    @__dict__.setter
    def __dict__(self, value):
        if not isinstance(value, dict):
            raise TypeError(f"__dict__ must be set to a dict, not a {type(value).__name__!r}")
        items = dict(value)  # first: value may be this very dict (v.__dict__ = vars(v))
        aux = _aux_of(self)
        aux.clear()
        aux.update(items)

    @__dict__.deleter
    def __dict__(self):  # as on a Python object: its attributes go
        if self._aux != NULL:
            (<_Aux>self._aux).clear()

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

    def abs(self):
        return _unary(ABS, self)

    def __abs__(self):  # abs(v)
        return _unary(ABS, self)

    def softplus(self):
        """log(1 + exp(self)), self itself above 20: PyTorch's softplus()."""
        return _unary(SOFTPLUS, self)

    def gelu(self):
        """GELU in its tanh form: PyTorch's gelu(approximate='tanh')."""
        return _unary(GELU, self)

    def leaky_relu(self, slope=0.01):
        """self if self > 0, else slope * self: PyTorch's leaky_relu(negative_slope=slope)."""
        return _leaky_relu(self, slope)

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
    def logsumexp(values):
        """One node for log(exp(values[0]) + exp(values[1]) + ...), which never overflows
        (numbers become leaves)."""
        items = PySequence_Fast(values, "Value.logsumexp() takes an iterable")
        if PySequence_Fast_GET_SIZE(items) == 0:
            raise ValueError("Value.logsumexp() takes at least one value")
        return _nary_node(LOGSUMEXP, 0, items, None, None, 0, 0)

    @staticmethod
    def cross_entropy(logits, target):
        """One node for -log(softmax(logits)[target]), PyTorch's cross_entropy of one row:
        target is the index of the right class, an int or a Value holding it (which a
        replay with forward() reads again)."""
        return _cross_entropy(PySequence_Fast(logits, "Value.cross_entropy() takes a sequence "
                                              "of logits"), target)

    @staticmethod
    def gather(table, index):
        """One node for table[index], an embedding's lookup: index is an int or a Value
        holding one (which a replay with forward() reads again), table a sequence of Values
        (numbers become leaves). A table of rows (each a sequence of Values) gives the row
        at index, a list of nodes, one a column. An index out of range raises IndexError."""
        return _gather(PySequence_Fast(table, "Value.gather() takes a sequence as its table"),
                       index)

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

    @staticmethod
    def backward_rows(loss, inputs, rows, outputs=None, scale=1.0):
        """backward() for each row of input values, in one call: the loss of each row, a
        numpy array.

        loss: a Value built once for one row (e.g. Value.cross_entropy(model(x), t) on leaves
        x and t); inputs: a sequence of leaves of its graph; rows: N rows of len(inputs)
        numbers, as for Value.evaluate (an index input, a cross_entropy target or a gather
        index, holds a whole number). For each row, in C: the inputs take its values, the
        graph's forward rules run, then its chain rules, from the loss's grad scale; the
        grads of the graph's other leaves (the parameters) add up over the rows, to the bit
        what setting the inputs, forward() and backward() row after row adds. For the mean
        over the rows, pass scale=1/N. Python control flow on .data at build time was fixed
        when the graph was built, as for forward().
        outputs: Values of the graph whose data each row gives too; then the call returns
        (losses, outputs' data: N numbers for one Value, else N x len(outputs)).
        Nothing else in the graph changes (its nodes' data, the inputs' grads; interior grads
        too, once the graph's order is kept: the first call, or forward(), sets them to 0). A row an op cannot take raises its error, naming the row, with every grad
        as it was before the call.
        """
        if not isinstance(loss, Value):
            raise TypeError(f"Value.backward_rows() takes its loss as a Value, not "
                            f"{type(loss).__name__!r}")
        result = _backward_rows(loss, inputs, rows, outputs, scale)
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


# -- Value's class, patchable as upstream's: Value.ln = lambda self: self.log() -------------
# A compiled class is immutable to Python; Value's metaclass lets a patch through CPython's own
# type_setattro (which also fills the C slot of a special method such as __ge__), refusing
# the names below, and lets nothing else through: on Python 3.9 the type looks like a heap
# type while the patch is made, and no Python code can run meanwhile.

cdef extern from *:
    """
    #ifndef Py_TPFLAGS_IMMUTABLETYPE
    #define Py_TPFLAGS_IMMUTABLETYPE 0
    #endif
    static PySequenceMethods mgcy_as_sequence;
    static PyMappingMethods mgcy_as_mapping;
    static PyAsyncMethods mgcy_as_async;

    /* A patched special method lands in its table; a static type may have none */
    static void mgcy_slot_tables(PyTypeObject* t) {
        if (!t->tp_as_sequence) t->tp_as_sequence = &mgcy_as_sequence;
        if (!t->tp_as_mapping) t->tp_as_mapping = &mgcy_as_mapping;
        if (!t->tp_as_async) t->tp_as_async = &mgcy_as_async;
    }

    /* The flag CPython reads to let an attribute of t be set, and its locked state. Only
       that bit is flipped and restored: setting an attribute changes others (the valid
       version tag), which must stay as it left them */
    #if PY_VERSION_HEX < 0x030A0000
    #define MGCY_LOCK_BIT Py_TPFLAGS_HEAPTYPE
    #define MGCY_LOCKED 0
    #else
    #define MGCY_LOCK_BIT Py_TPFLAGS_IMMUTABLETYPE
    #define MGCY_LOCKED Py_TPFLAGS_IMMUTABLETYPE
    #endif
    static void mgcy_unlock(PyTypeObject* t) { t->tp_flags ^= MGCY_LOCK_BIT; }
    static void mgcy_lock(PyTypeObject* t) {
        t->tp_flags = (t->tp_flags & ~MGCY_LOCK_BIT) | MGCY_LOCKED;
    }
    """
    void mgcy_slot_tables(PyTypeObject*)
    void mgcy_unlock(PyTypeObject*)
    void mgcy_lock(PyTypeObject*)


_ARITHMETIC = ("the engine builds Value's arithmetic in C: Value.sum, Value.dot, nn's neurons "
               "and backward() would not call yours. Override it in a subclass of Value, whose "
               "other ops are then built from yours, as upstream builds them")
_UNPATCHABLE = dict.fromkeys(
    ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
     "__rtruediv__", "__pow__", "__rpow__", "__neg__"), _ARITHMETIC)
_UNPATCHABLE.update(dict.fromkeys(
    ("__init__", "__new__"), "ops make their nodes in C without calling it (upstream's ops call "
    "Value(...)); subclass Value instead"))
_UNPATCHABLE["__del__"] = "the engine frees nodes itself and would never call it"
_UNPATCHABLE.update(dict.fromkeys(
    ("__setattr__", "__delattr__", "__getattribute__"),
    "a node's attributes live in a side object only the engine's own may create"))
_UNPATCHABLE.update(dict.fromkeys(
    ("data", "grad", "label", "_prev", "_op", "_backward", "_children", "_local_grads",
     "__dict__", "__slots__", "__weakref__"),
    "the engine keeps it in the node's C struct and reads it there"))


def _unpatchable(str name):
    """Why Value.name may not be set or deleted, or None where it may."""
    if name in _UNPATCHABLE:
        return _UNPATCHABLE[name]
    for cls in type(Value).__mro__:  # a class attribute of type itself: __name__, __doc__, ...
        found = cls.__dict__.get(name)
        if found is not None and hasattr(type(found), "__set__"):
            return "it is an attribute of the class object, not of its instances"
    return None


def _patch_class(cls, name, value, bint delete):
    cdef PyTypeObject* t = <PyTypeObject*>Value
    if not isinstance(name, str):
        raise TypeError(f"attribute name must be string, not '{type(name).__name__}'")
    if cls is not Value:  # a subclass is a Python class, mutable as any
        return type.__delattr__(cls, name) if delete else type.__setattr__(cls, name, value)
    name = str.__getitem__(name, slice(None))  # a plain str: no hash or == of a subclass's
    why = _unpatchable(name)
    if why is not None:
        raise TypeError(f"Value.{name} cannot be {'deleted' if delete else 'replaced'}: {why}")
    old = vars(Value).get(name)  # held here, so replacing it runs no Python code (its __del__)
    mgcy_unlock(t)
    try:
        if delete:
            type.__delattr__(Value, name)
        else:
            type.__setattr__(Value, name, value)
    finally:
        mgcy_lock(t)
    del old


class _ValueType(type):
    """Value's metaclass: Value's class may be patched as upstream's, e.g.
    `Value.ln = lambda self: self.log()`, but for the names the engine keeps (which raise
    TypeError saying why). A subclass of Value is a Python class and takes any patch."""

    def __setattr__(cls, name, value):
        _patch_class(cls, name, value, False)

    def __delattr__(cls, name):
        _patch_class(cls, name, None, True)


cdef _install_metaclass():
    cdef PyTypeObject* t = <PyTypeObject*>Value
    mgcy_slot_tables(t)
    Py_INCREF(_ValueType)  # Value, a static type, holds it for good
    Py_SET_TYPE(<PyObject*>Value, <PyTypeObject*>_ValueType)
    PyType_Modified(t)

_install_metaclass()
