# Building nodes from Python input: numbers become doubles (or leaves), and every op
# makes its output node the same way (_unary, _binary, _dot). Anything that can run
# Python code (a __float__, an iterator) runs before a node is half made, or the node
# counts what it owns at every step, so an exception leaves nothing broken.

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


cdef Value _dot(object w, object x, object bias, bint relu):
    """The DOT node of w and x, two results of PySequence_Fast, plus bias if not None."""
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(w)
    if n != PySequence_Fast_GET_SIZE(x):
        _unequal(n, PySequence_Fast_GET_SIZE(x))
    cdef Value out = _new(DOT)
    if relu:
        out._flags |= RELU_OUT
    cdef int kid_flags = _set_kids(out, w, n + (bias is not None))
    if PySequence_Fast_GET_SIZE(x) != n:  # converting w ran code that resized x
        raise RuntimeError("the inputs changed size while the weights were read")
    kid_flags |= _set_kids(out, x, 0)
    cdef Value b
    if bias is not None:
        b = <Value>bias if type(bias) is Value else _as_value(bias)
        _ready(b)
        Py_INCREF(b)
        out._s.kids[out._n] = <PyObject*>b
        out._n += 1
        out._flags |= HAS_BIAS
        kid_flags |= b._flags
    return _done(out, kid_flags & OFF_TAPE, _eval(<PyObject*>out))


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


# ---------------------------------------------------------------------------
# A whole MLP as one node (Net, for nn.MLP): the weights sit in one PARAMS node, shared by
# every NET node built from them, and read again only when a neuron's list of weights no
# longer holds what PARAMS does (ops.pxi: NET and PARAMS).

cdef extern from "Python.h":  # on borrowed pointers: no reference counting, no Python code
    bint _list_exact "PyList_CheckExact"(PyObject*)
    bint _tuple_exact "PyTuple_CheckExact"(PyObject*)
    Py_ssize_t _fast_size "PySequence_Fast_GET_SIZE"(PyObject*)
    PyObject** _fast_items "PySequence_Fast_ITEMS"(PyObject*)
    PyObject* _tuple_item "PyTuple_GET_ITEM"(PyObject*, Py_ssize_t)


cdef extern from "Python.h":
    PyObject* _type_lookup "_PyType_Lookup"(PyTypeObject*, PyObject*)  # borrowed; no code runs


cdef bint _stock_methods(tuple stock) noexcept:
    """Whether each (class, name, function) of stock holds: class.name is function, as
    Python's own lookup finds it (the class's MRO; a function is its own class attribute),
    at the cost of a cache probe each."""
    cdef Py_ssize_t i
    cdef PyObject* check
    for i in range(len(stock)):
        check = _tuple_item(<PyObject*>stock, i)
        if _type_lookup(<PyTypeObject*>_tuple_item(check, 0), _tuple_item(check, 1)) != \
                _tuple_item(check, 2):
            return False
    return True


cdef Value _params_node(tuple rows, tuple biases, tuple sizes, tuple relus, Py_ssize_t n0):
    """The PARAMS node of an MLP with n0 inputs: rows and biases are those of every layer, one
    after the other, sizes the number of rows of each layer and relus its ReLU flag. Raises as
    Value.matvec would when the shapes do not chain."""
    cdef Py_ssize_t L = len(sizes), l, j, r = 0, nin = n0, nout, total = 0, hidden = 0
    cdef unsigned int* shape
    cdef int some = 0
    cdef Value b
    snapshot = [tuple(row) for row in rows]  # converting numbers may run code that edits lists
    for l in range(L):
        nout = sizes[l]
        for j in range(r, r + nout):
            if len(snapshot[j]) != nin:
                _unequal(len(snapshot[j]), nin)
        total += nout * (nin + 1)
        if l + 1 < L:
            hidden += nout
        r += nout
        nin = nout
    if total > <Py_ssize_t>0xFFFFFFFF:
        raise OverflowError("a node takes at most 2**32 - 1 children")
    out = _new(PARAMS)
    out._s.kids = <PyObject**>_alloc(max(total + _slots((2 * L + 3) * sizeof(unsigned int)), 1)
                                     * sizeof(PyObject*))
    if out._s.kids == NULL:
        raise MemoryError()
    for j in range(len(rows)):
        some |= _set_kids(out, snapshot[j], 0)
        b = _as_value(biases[j])  # may run Python code: out owns what it counted
        _ready(b)
        Py_INCREF(b)
        out._s.kids[out._n] = <PyObject*>b
        out._n += 1
        some |= b._flags
    if some & OFF_TAPE:
        out._flags |= KID_OFF_TAPE
    if some & ON_TAPE:
        out._flags |= KID_ON_TAPE
    shape = _net_shape(<PyObject*>out)
    shape[0] = L
    shape[1] = n0
    for l in range(L):
        shape[2 + l] = sizes[l]
        shape[2 + L + l] = bool(relus[l])
    shape[2 + 2 * L] = hidden
    _join(out, True)  # never on the tape: a walk never meets PARAMS (ops.pxi)
    return out


cdef bint _params_hold(Value p, tuple rows, tuple biases, Py_ssize_t n0) noexcept:
    """Whether PARAMS p holds the weights rows and biases hold now, for n0 inputs: the rows
    are the neurons' own lists, which can change in place. No Python code runs. p may have
    been read for other rows (a Net's __init__ run again meanwhile): its shape is not trusted
    to fit them."""
    cdef PyObject** kids = p._s.kids
    cdef unsigned int* shape = _net_shape(<PyObject*>p)
    cdef Py_ssize_t L = shape[0], l, j, r = 0, k = 0, nin = n0, nout
    cdef Py_ssize_t nrows = len(rows)
    cdef PyObject* row
    if shape[1] != n0 or len(biases) != nrows:
        return False
    for l in range(L):
        nout = shape[2 + l]
        for j in range(nout):
            if r == nrows:
                return False
            row = _tuple_item(<PyObject*>rows, r)
            if not (_list_exact(row) or _tuple_exact(row)) or _fast_size(row) != nin:
                return False
            if memcmp(_fast_items(row), kids + k, nin * sizeof(PyObject*)):
                return False
            k += nin
            if _tuple_item(<PyObject*>biases, r) != kids[k]:
                return False
            k += 1
            r += 1
        nin = nout
    return r == nrows
