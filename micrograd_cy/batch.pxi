# Batch evaluation: a graph built once, evaluated on N rows of input values in one call
# (Value.evaluate). The inputs are leaves of the graph; each row sets them and runs the
# forward rules (ops.pxi: _eval) over the graph's order, in C, and the outputs' data go to
# a row of the result. No gradient: for inference and plots. Afterwards the graph is as
# forward() leaves it: the inputs keep their own values, every node's data is computed
# from them, interior grads are 0.

cdef object _np = None


cdef object _numpy():
    global _np
    if _np is None:
        import importlib  # Cython's import statement returns a None put in sys.modules
        try:
            _np = importlib.import_module("numpy")
        except ImportError:  # the engine needs nothing else; evaluate's arrays need numpy
            raise ImportError("Value.evaluate() needs numpy: pip install numpy "
                              "(or micrograd_cy[demo])") from None
    return _np


cdef list _values_of(object xs, str what):
    """xs, a Value or a sequence of Values, as a non-empty list."""
    if isinstance(xs, Value):
        return [xs]
    try:
        out = list(xs)
    except TypeError:
        raise TypeError(f"Value.evaluate() takes its {what} as a Value or a sequence of Values, "
                        f"not {type(xs).__name__!r}") from None
    if not out:
        raise ValueError(f"Value.evaluate() needs at least one of its {what}")
    for k, v in enumerate(out):
        if not isinstance(v, Value):
            raise TypeError(f"Value.evaluate(): {what} {k} is {type(v).__name__!r}, not a Value")
    return out


cdef bint _iterable_row(object r) except -1:
    """A row numpy could not read as numbers: an iterator, a generator, a map (not a str)."""
    return not isinstance(r, (str, bytes)) and hasattr(r, "__iter__") and \
        not isinstance(r, (list, tuple)) and not hasattr(r, "__array__")


cdef object _rows_of(object rows, Py_ssize_t k):
    """rows as a C-contiguous float64 array of shape (N, k); clear errors for bad input."""
    cdef double d
    np = _numpy()
    what = (f"Value.evaluate() takes its rows as real numbers, {k} a row (an iterable of rows, "
            f"each an iterable of numbers, or a 2-D array)")
    if not isinstance(rows, (list, tuple, np.ndarray)):  # a generator, a map, a range...
        try:
            rows = list(rows)
        except TypeError:
            raise TypeError(f"{what}, not {type(rows).__name__!r}") from None
    try:
        a = np.asarray(rows)
        if a.dtype.kind == "O" and a.ndim == 1 and any(_iterable_row(r) for r in rows):
            a = np.asarray([list(r) if _iterable_row(r) else r for r in rows])  # rows of maps
    except (TypeError, ValueError) as e:  # a ragged list, an object numpy cannot read
        raise TypeError(f"{what}: {e}") from None
    if a.dtype.kind == "O":  # Python objects: each must be a real number (None is not NaN)
        for x in a.ravel():
            if not _real(x, &d):
                raise TypeError(f"{what}, not {type(x).__name__!r}")
    elif a.dtype.kind not in "biuf":  # strings, complex numbers, dates
        raise TypeError(f"{what}, not an array of {a.dtype}")
    try:
        a = a.astype(np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise TypeError(f"{what}: {e}") from None
    if a.ndim == 1 and (k == 1 or a.size == 0):  # one input: a row may be a bare number
        a = a.reshape(-1, k)
    if a.ndim != 2 or a.shape[1] != k:
        raise ValueError(f"Value.evaluate() needs rows of {k} numbers, one for each input; got an "
                         f"array of shape {a.shape}")
    bad = np.flatnonzero(np.isnan(a).any(axis=1))
    if bad.size:
        raise ValueError(f"Value.evaluate(): row {bad[0]} holds NaN")
    return np.ascontiguousarray(a)


# kernel: begin
cdef inline int _eval_all(PyObject** topo, Py_ssize_t n) noexcept:
    """The forward rules over an order; the first Err met (the pass stops there), or OK."""
    cdef Py_ssize_t i
    cdef int err
    for i in range(n):
        if (<Value>topo[i])._opcode > CUSTOM:
            err = _eval(topo[i])
            if err:
                return err
    return OK
# kernel: end


cdef object _evaluate(object outputs, object inputs, object rows):
    """Value.evaluate: see there."""
    outs = _values_of(outputs, "outputs")
    ins = _values_of(inputs, "inputs")
    cdef Py_ssize_t m = len(outs), k = len(ins), n, i, j, r = 0, nrows
    column = {}
    for j, v in enumerate(ins):
        if (<Value>v)._opcode != LEAF:
            raise ValueError(f"Value.evaluate(): input {j} is not a leaf (its op is "
                             f"{v._op!r}): the rows give the inputs' values")
        if column.setdefault(id(v), j) != j:
            raise ValueError(f"Value.evaluate(): inputs {column[id(v)]} and {j} are the same Value")
    a = _rows_of(rows, k)
    nrows = a.shape[0]
    result = _numpy().empty((nrows, m))
    cdef const double[:, ::1] A = a
    cdef double[:, ::1] out = result
    cdef PyObject** topo = NULL
    cdef PyObject** roots = <PyObject**>_alloc(m * sizeof(PyObject*))
    cdef PyObject** inp = <PyObject**>_alloc(k * sizeof(PyObject*))
    cdef double* saved = <double*>_alloc(k * sizeof(double))
    cdef int err = OK
    try:
        if roots == NULL or inp == NULL or saved == NULL:
            raise MemoryError("out of memory evaluating the graph")
        for j in range(m):
            roots[j] = <PyObject*>outs[j]
        for j in range(k):
            inp[j] = <PyObject*>ins[j]
            saved[j] = (<Value>ins[j])._data
        n = _order(roots, m, &topo)
        for i in range(n):  # no mark may outlive this call
            _unmark(topo[i])
        unseen = set(column)
        for i in range(n):
            if (<Value>topo[i])._opcode == GIVEN:
                raise ValueError("Value.evaluate() cannot recompute a node made with Value(data, "
                                 "children, op, grads=...): its value was given, not computed")
            if (<Value>topo[i])._opcode == LEAF:
                unseen.discard(id(<object>topo[i]))
        if unseen:
            raise ValueError(f"Value.evaluate(): input {min(column[u] for u in unseen)} is not "
                             f"in the outputs' graph")
        # kernel: begin
        for r in range(nrows):
            for j in range(k):
                (<Value>inp[j])._data = A[r, j]
            err = _eval_all(topo, n)
            if err:
                break
            for j in range(m):
                out[r, j] = (<Value>roots[j])._data
        # kernel: end
        for j in range(k):  # the graph as forward() leaves it, from the inputs' own values
            (<Value>inp[j])._data = saved[j]
        _eval_all(topo, n)  # not raised: the call reports a row's error, not the inputs' own
        if err:
            try:
                _raise(err)
            except Exception as e:
                raise type(e)(f"Value.evaluate(): row {r}: {e}") from None
    finally:
        PyMem_Free(topo)
        PyMem_Free(roots)
        PyMem_Free(inp)
        PyMem_Free(saved)
    return result[:, 0] if isinstance(outputs, Value) else result
