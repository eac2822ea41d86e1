# Building nodes from Python input: numbers become doubles (or leaves), and every op
# makes its output node the same way (_unary, _binary, _pow_node, and _nary_node for the
# n-ary ops). Anything that can run Python code (a __float__, an iterator) runs before a
# node is half made, or the node counts what it owns at every step, so an exception leaves
# nothing broken.

import numbers
from operator import index as _index

# ---------------------------------------------------------------------------
# Turning Python numbers into doubles

cdef object _Real = numbers.Real
cdef object _Integral = numbers.Integral


cdef bint _integral(object x) except -1:
    """Whether x is an integer (an int, or registered as numbers.Integral)."""
    # two isinstance calls: Cython leaves the error of isinstance(x, (int, _Integral)) unchecked
    return isinstance(x, int) or isinstance(x, _Integral)


# The last class found to be a numbers.Real, so that its instances (numpy's integers, which
# the notebook multiplies Values by) skip the ABC check, about 1,000 instructions each. Only a
# class registered itself is kept: an ABC registration cannot be undone (CPython's own ABC
# cache keeps such answers too), while an instance can claim a Real __class__ alone.
cdef object _real_class = None


cdef int _real(object x, double* out) except -1:
    """Store x as a double and return 1 if x is a real number, else return 0."""
    global _real_class
    if type(x) is float:
        out[0] = <double>x
        return 1
    if type(x) is _real_class or isinstance(x, (int, float)):
        pass
    elif isinstance(x, _Real):
        if issubclass(type(x), _Real):
            _real_class = type(x)
    elif not _numpy_bool(x):
        return 0
    out[0] = float(x)
    return 1


cdef inline bint _numpy_bool(object x) except -1:
    """numpy's bool scalar: not a numbers.Real, but Python's bool is one (an int), and
    micrograd takes it as a number."""
    t = type(x)
    return t.__module__ == "numpy" and t.__name__ in ("bool_", "bool")


cdef list _numbers(object xs):
    """xs, a sequence of real numbers, as a list of floats (for grads=)."""
    cdef double d
    out = []
    for x in PySequence_Fast(xs, "grads must be a sequence of numbers, one per child"):
        if not _real(x, &d):
            raise TypeError(f"grads must hold real numbers, not {type(x).__name__!r}")
        out.append(d)
    return out


cdef double _data_arg(object x) except? -1.0:
    cdef double d
    if not _real(x, &d):
        raise TypeError(f"Value data must be a real number (int, float or a numpy "
                        f"scalar), not {type(x).__name__!r}")
    return d


# ---------------------------------------------------------------------------
# Leaves

cdef inline Value _leaf(double d):
    cdef Value v = _new(LEAF)
    v._data = d
    return v


cdef inline object _coerce(object x):
    """x as a Value, or None when x is not a real number."""
    cdef double d
    if type(x) is Value or isinstance(x, Value):
        return x
    if _real(x, &d):
        return _leaf(d)
    return None


# ---------------------------------------------------------------------------
# Op nodes: every op makes its output the same way.

cdef inline Value _done(Value out, int off, int err):
    """out, the node an op built, now complete: READY and on the tape unless off (memory.pxi:
    _join); or the error its forward value met (out dies unseen)."""
    if err:
        _raise(err)
    _join(out, off)
    _debug_check()
    return out


cdef int _unready(Value v) except -1:
    """Raise for a Value that may not be a child: one that __init__ has not finished."""
    if v._flags & INITIALIZED:
        raise ValueError("a Value whose __init__ has not returned (or failed) cannot be used "
                         "in a graph: it could be made part of itself")
    raise ValueError("a Value made by Value.__new__ cannot be used in a graph before its "
                     "__init__ has run: make it with Value(data)")


cdef inline int _ready(Value v) except -1:
    return 0 if v._flags & READY else _unready(v)


cdef inline Value _unary(unsigned char op, Value a):
    _ready(a)
    cdef Value out = _new(op)
    Py_INCREF(a)
    out._a = <PyObject*>a
    out._n = 1
    return _done(out, a._flags & OFF_TAPE, _eval1(op, a._data, 0.0, &out._data))


cdef inline Value _binary(unsigned char op, Value a, Value b):
    if not (a._flags & b._flags & READY):
        _unready(b if a._flags & READY else a)
    cdef Value out = _new(op)
    Py_INCREF(a)
    out._a = <PyObject*>a
    Py_INCREF(b)
    out._s.b = <PyObject*>b
    out._n = 2
    return _done(out, (a._flags | b._flags) & OFF_TAPE, _eval2(op, a._data, b._data, &out._data))


# _binary must be inlined into the operators, as _eval into the per-node loops (ops.pxi):
# with the tape push it grew past what the C compiler inlines, and each op made a call
# (callgrind: (a * b + a).relu() 1,824 instructions, 1,688 inlined, 1,740 on b26b0de).
# Forced by its C name (tests/test_kernels.py checks that Cython still gives it that name).
cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    static CYTHON_INLINE struct __pyx_obj_12micrograd_cy_6engine_Value *__pyx_f_12micrograd_cy_6engine__binary(unsigned char, struct __pyx_obj_12micrograd_cy_6engine_Value *, struct __pyx_obj_12micrograd_cy_6engine_Value *) __attribute__((always_inline));
    #endif
    """


cdef inline object _apply(unsigned char op, object x, object y):
    """x op y for numbers or Values on either side; NotImplemented for anything else."""
    a = _coerce(x)
    if a is None:
        return NotImplemented
    b = _coerce(y)
    if b is None:
        return NotImplemented
    return _binary(op, a, b)


# The ops upstream micrograd builds the others from: __neg__ is self * -1, __sub__ is
# self + (-other), __radd__ is self + other, __truediv__ is self * other**-1, ...
cdef tuple _COMPOSING = ("__add__", "__radd__", "__mul__", "__rmul__", "__pow__", "__neg__")


cdef inline bint _composes(object x) except -1:
    """Whether x is an instance of a Value subclass that overrides an op upstream builds
    others from: those others then go through its own, as on upstream. A plain Value, a
    float or an int (the common cases: inline type checks) and other numbers do not."""
    if type(x) is Value or type(x) is float or type(x) is int:
        return False
    return _overrides(x)


cdef bint _overrides(object x) except -1:
    if not isinstance(x, Value):
        return False
    t = type(x)
    for name in _COMPOSING:
        if getattr(t, name) is not getattr(Value, name):
            return True
    return False


cdef Value _as_value(object x):
    """x itself if it is a Value (a subclass's instance too), x as a leaf if it is a real
    number; TypeError for anything else."""
    cdef double d
    if isinstance(x, Value):
        return <Value>x
    if not _real(x, &d):
        raise TypeError(f"expected a Value or a real number, not {type(x).__name__!r}")
    return _leaf(d)


cdef inline Py_ssize_t _slots(Py_ssize_t nbytes) noexcept:
    """How many child pointers' room nbytes take, after a node's children (GIVEN's
    derivatives, NET's hidden units, PARAMS' shape)."""
    return (nbytes + <Py_ssize_t>sizeof(PyObject*) - 1) // <Py_ssize_t>sizeof(PyObject*)


cdef int _unequal(Py_ssize_t weights, Py_ssize_t inputs) except -1:
    """Raise for a neuron given another number of inputs than it has weights."""
    raise ValueError(f"a dot product needs as many weights as inputs, got {weights} and {inputs}")


cdef Value _nary_node(unsigned char op, unsigned char flags, object xs, object ys, object last,
                      unsigned char last_off, Py_ssize_t room):
    """The node of an n-ary op (SUM, DOT, NET), with flags: its children are the items of
    xs, then those of ys (results of PySequence_Fast; ys may be None), then last (None: no
    such child), numbers becoming leaves. room: pointer slots after the children for the
    op's own numbers (NET's hidden units). The node leaves the tape where a child is off it,
    or where last's flags have last_off (a NET's PARAMS holding a weight off the tape)."""
    cdef Py_ssize_t ny = 0 if ys is None else PySequence_Fast_GET_SIZE(ys)
    cdef Value out = _new(op)
    out._flags |= flags
    cdef int some = _set_kids(out, xs, ny + (last is not None) + room)
    cdef int off
    cdef Value v
    if ys is not None:
        if PySequence_Fast_GET_SIZE(ys) != ny:  # converting xs ran code that resized ys
            raise RuntimeError("the inputs changed size while the weights were read")
        some |= _set_kids(out, ys, 0)
    off = some & OFF_TAPE
    if last is not None:
        v = <Value>last if type(last) is Value else _as_value(last)  # may run Python code
        _ready(v)
        Py_INCREF(v)
        out._s.kids[out._n] = <PyObject*>v
        out._n += 1
        off |= v._flags & last_off
    return _done(out, off, _eval(<PyObject*>out))


cdef inline Value _dot(object w, object x, object bias, bint relu):
    """The DOT node of w and x, two results of PySequence_Fast, plus bias if not None."""
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(w)
    if n != PySequence_Fast_GET_SIZE(x):
        _unequal(n, PySequence_Fast_GET_SIZE(x))
    return _nary_node(DOT, (RELU_OUT if relu else 0) | (HAS_BIAS if bias is not None else 0),
                      w, x, bias, OFF_TAPE, 0)


cdef list _matvec(object weights, object inputs, object biases, bint relu):
    """Value.matvec: the DOT node of each row of weights with the inputs, converted once."""
    cdef Py_ssize_t j, m
    # snapshots: converting numbers may run code that edits lists
    cdef tuple rows = tuple(weights)
    cdef tuple bs = None
    cdef list out
    items = PySequence_Fast(inputs, "Value.matvec() takes a sequence of inputs")
    cdef Py_ssize_t i, n = PySequence_Fast_GET_SIZE(items)
    cdef list x = [None] * n
    for i in range(n):
        if PySequence_Fast_GET_SIZE(items) != n:  # converting a number ran code that resized it
            raise RuntimeError("the sequence changed size while it was read")
        v = <object>PySequence_Fast_ITEMS(items)[i]
        x[i] = v if type(v) is Value else _as_value(v)
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


cdef object _pow_node(Value a, object other):
    """a ** other for a number other (POW, the exponent kept in the node); NotImplemented
    for anything else."""
    cdef double c
    if not _real(other, &c):
        return NotImplemented
    cdef bint integral = _integral(other)  # Python code may run: before the node is made
    return _unary_const(POW, a, c, INT_EXPONENT if integral else 0)


cdef inline Value _unary_const(unsigned char op, Value a, double c, unsigned char flags):
    """The node of an op of one child and a number c kept in the node (POW, LEAKY_RELU)."""
    _ready(a)
    cdef Value out = _new(op)
    out._s.c = c
    out._n = 1
    out._flags |= flags
    Py_INCREF(a)
    out._a = <PyObject*>a
    return _done(out, a._flags & OFF_TAPE, _eval1(op, a._data, c, &out._data))


cdef Value _leaky_relu(Value a, object slope):
    cdef double c
    if not _real(slope, &c):
        raise TypeError(f"leaky_relu: slope must be a real number, not {type(slope).__name__!r}")
    return _unary_const(LEAKY_RELU, a, c, 0)


cdef Value _cross_entropy(object logits, object target):
    """The CROSS_ENTROPY node of logits (a result of PySequence_Fast) and target, an int or a
    Value holding the index of the target class."""
    if PySequence_Fast_GET_SIZE(logits) == 0:
        raise ValueError("cross_entropy takes at least one logit")
    if not isinstance(target, Value):
        if isinstance(target, bool) or not isinstance(target, numbers.Integral):
            raise TypeError(f"cross_entropy: the target is a class index, an int or a Value "
                            f"holding one, not {type(target).__name__!r}")
        target = Value(float(_index(target)))
    return _nary_node(CROSS_ENTROPY, 0, logits, None, target, OFF_TAPE, 0)  # a child as any


cdef object _gather(object table, object index):
    """Value.gather: the GATHER node of table (a result of PySequence_Fast) at index, or, for a
    table of rows, a list of them: one a column, each over that column of every row."""
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(table), j, width
    if n == 0:
        raise ValueError("Value.gather() takes a table of at least one entry")
    if not isinstance(index, Value):
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"Value.gather(): the index is an int or a Value holding one, "
                            f"not {type(index).__name__!r}")
        index = Value(float(_index(index)))
    first = <object>PySequence_Fast_ITEMS(table)[0]
    if isinstance(first, Value) or not isinstance(first, (list, tuple)):
        return _nary_node(GATHER, 0, table, None, index, OFF_TAPE, 0)
    rows = [PySequence_Fast(r, "Value.gather(): each row of a table of rows is a sequence")
            for r in tuple(table)]  # a snapshot: converting numbers may run code
    width = PySequence_Fast_GET_SIZE(rows[0])
    if width == 0 and _index_in((<Value>index)._data, n) < 0:  # no node to check it
        _raise(ERR_INDEX)
    for j, r in enumerate(rows):
        if PySequence_Fast_GET_SIZE(r) != width:
            raise ValueError(f"Value.gather(): row {j} of the table has "
                             f"{PySequence_Fast_GET_SIZE(r)} entries, row 0 has {width}")
    return [_nary_node(GATHER, 0, [r[j] for r in rows], None, index, OFF_TAPE, 0)
            for j in range(width)]


cdef int _set_kids(Value out, object items, Py_ssize_t extra) except -1:
    """Own a reference to each item (numbers become leaves) in out._s.kids[out._n:];
    returns the children's flags or'ed together (their OFF_TAPE tells out to leave the tape).

    The first call allocates room for n + extra children; out is n-ary already.
    """
    cdef unsigned char every = READY, some = 0  # the children's flags and'ed, or'ed
    cdef unsigned char f
    cdef Py_ssize_t i, n = PySequence_Fast_GET_SIZE(items)
    cdef PyObject** src = PySequence_Fast_ITEMS(items)
    cdef PyObject* o
    cdef object v
    if out._s.kids == NULL:
        if n + extra > <Py_ssize_t>0xFFFFFFFF:
            raise OverflowError("a node takes at most 2**32 - 1 children")
        out._s.kids = <PyObject**>_alloc(max(n + extra, 1) * sizeof(PyObject*))
        if out._s.kids == NULL:
            raise MemoryError()
    cdef unsigned int owned = out._n  # out owns kids[:out._n]: dealloc releases those
    cdef PyObject** dst = out._s.kids + owned
    for i in range(n):
        o = src[i]
        if Py_TYPE(o) == <PyTypeObject*>Value:
            f = (<Value>o)._flags
            every &= f
            some |= f
            _incref(o)
            dst[i] = o
        else:
            out._n = owned + i  # counted before any Python code runs
            v = _as_value(<object>o)  # may run Python code (a __float__)...
            f = (<Value>v)._flags  # a subclass's instance may be off the tape, or unready
            every &= f
            some |= f
            Py_INCREF(v)
            dst[i] = <PyObject*>v
            out._n += 1
            if PySequence_Fast_GET_SIZE(items) != n:  # ...that changed the list under us
                raise RuntimeError("the sequence changed size while it was read")
            src = PySequence_Fast_ITEMS(items)
    out._n = owned + n
    if not every & READY:  # out dies with the exception: no graph ever holds the child
        for i in range(out._n):
            _ready(<Value>out._s.kids[i])
    return some
