# A whole multi-layer perceptron with one output as one node (nn.MLP builds it with Net):
# a call's NET node, the PARAMS node of the weights that every call shares while the
# neurons' lists hold them, their rules, the walk's reach of the weights, and the Net class
# (docs/architecture.md: "One node for a whole MLP"). The dispatchers (ops.pxi: _eval,
# _backprop) and the walk (order.pxi: _walk) call the loops here through pointers set at
# import, never inlined; _take_reached (order.pxi) reads the weights through _net_params.

from libc.string cimport memcmp

# kernel: begin
# -- NET: a multi-layer perceptron with one output, as one node (nn.MLP: Net). kids = the
#    inputs x[0..n0), then the PARAMS node of its weights, which the node reads and gives to
#    directly (a walk never meets PARAMS itself); after them, in the same array, the hidden
#    units' outputs (forward) and their grads (backward), H doubles each. Its numbers are
#    those of one ReLU'd DOT node a neuron (nn.Layer): each neuron sums b + w0*x0 + w1*x1 + ...
#    in that order, and backward gives to the weights, the biases and the inputs in the
#    order a walk of those DOT nodes would (a layer's last neuron first, each neuron's kids
#    in order), so that the grads are the same to the last bit.
# -- PARAMS: kids = the weights, layer by layer and neuron by neuron, w[0..nin) then b;
#    after them its shape as unsigned ints: L, n0, n1, ..., nL (nL = 1), then the L ReLU
#    flags, then H = n1 + ... + n(L-1). It computes nothing and gives nothing.
cdef inline unsigned int* _net_shape(PyObject* params) noexcept:
    return <unsigned int*>((<Value>params)._s.kids + (<Value>params)._n)

cdef inline double* _net_hidden(PyObject* node) noexcept:
    return <double*>((<Value>node)._s.kids + (<Value>node)._n)

cdef inline PyObject* _net_params(PyObject* node) noexcept:
    return (<Value>node)._s.kids[(<Value>node)._n - 1]

cdef inline int _net_fwd(PyObject* node, double* out) noexcept:
    cdef PyObject** x = (<Value>node)._s.kids
    cdef PyObject* params = _net_params(node)
    cdef PyObject** w = (<Value>params)._s.kids
    cdef unsigned int* shape = _net_shape(params)
    cdef unsigned int L = shape[0], l, j, i, nin, nout
    cdef double* h = _net_hidden(node)  # this layer's outputs go here...
    cdef double* prev = NULL            # ...from the last layer's (NULL: from x)
    cdef double acc
    for l in range(L):
        nin = shape[1 + l]
        nout = shape[2 + l]
        for j in range(nout):
            acc = _val(w[nin])
            if prev == NULL:
                for i in range(nin):
                    acc += _val(w[i]) * _val(x[i])
            else:
                for i in range(nin):
                    acc += _val(w[i]) * prev[i]
            if shape[2 + L + l] and acc < 0.0:
                acc = 0.0
            if l + 1 < L:
                h[j] = acc
            else:
                out[0] = acc
            w += nin + 1
        prev = h
        h += nout
    return OK

cdef inline void _give_weight(PyObject* w, double d, bint walked, _Mode* m) noexcept:
    """_give to a NET's weight: straight into its grad when no weight of its PARAMS is on
    the tape, so that a walk has nothing to reach (a leaf's grad adds up, as _give's would)."""
    if walked:
        _give(w, d, m)
    else:
        _gradp(w)[0] += d

cdef inline void _net_bwd(PyObject* node, double g, _Mode* m) noexcept:
    cdef PyObject** x = (<Value>node)._s.kids
    cdef PyObject* params = _net_params(node)
    cdef bint walked = (<Value>params)._flags & KID_ON_TAPE
    cdef unsigned int* shape = _net_shape(params)
    cdef unsigned int L = shape[0], l, j, i, nin, nout, H = shape[2 + 2 * L]
    cdef PyObject** w = (<Value>params)._s.kids + (<Value>params)._n  # the end of the last layer
    cdef double* act = _net_hidden(node) + H  # the end of the hidden outputs...
    cdef double* grad = act + H               # ...and of their grads
    cdef double* a_in
    cdef double* g_in
    cdef PyObject** wj
    cdef double a, gj
    l = L
    while l > 0:
        l -= 1
        nin = shape[1 + l]
        nout = shape[2 + l]
        w -= nout * (nin + 1)
        if l > 0:  # the layer's inputs are hidden units: their grads start at 0
            a_in = act - nin
            g_in = grad - nin
            for i in range(nin):
                g_in[i] = 0.0
        j = nout
        while j > 0:
            j -= 1
            wj = w + j * (nin + 1)
            if l + 1 == L:
                a, gj = (<Value>node)._data, g
            else:
                a, gj = act[j], grad[j]
            if shape[2 + L + l] and a <= 0.0:  # a dead ReLU gives nothing; NaN passes, as RELU
                if walked:
                    for i in range(nin + 1):
                        _give_none(wj[i], m)
                if l == 0:
                    for i in range(nin):
                        _give_none(x[i], m)
                continue
            if l == 0:
                for i in range(nin):
                    _give_weight(wj[i], _val(x[i]) * gj, walked, m)
                    _give(x[i], _val(wj[i]) * gj, m)
            else:
                for i in range(nin):
                    _give_weight(wj[i], a_in[i] * gj, walked, m)
                    g_in[i] += _val(wj[i]) * gj
            _give_weight(wj[nin], gj, walked, m)
        if l > 0:
            act = a_in
            grad = g_in
# kernel: end

_net_fwd_out_of_line = _net_fwd
_net_bwd_out_of_line_adding = _net_bwd[_Adding]
_net_bwd_out_of_line_walking = _net_bwd[_Walking]


# kernel: begin
cdef inline void _reach_weights(PyObject* node, _Walking* walk) noexcept:
    """Reach a NET node's weights, which its rule reads through its PARAMS (the last child:
    off the tape and never walked itself)."""
    cdef PyObject* params = _net_params(node)
    cdef PyObject** kids = (<Value>params)._s.kids
    cdef unsigned int k
    for k in range((<Value>params)._n):
        _give_none(kids[k], walk)

# kernel: end

_reach_weights_out_of_line = _reach_weights


# ---------------------------------------------------------------------------
# The PARAMS node: read from the neurons' lists, and read again only when one of them no
# longer holds what it does (a list can change in place: neuron.w[0] = Value(2.0))

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


# ---------------------------------------------------------------------------
# Net: what nn.MLP calls

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
    # (rows, biases, sizes, relus): every layer's rows, one after the other (the caller's own
    # sequences), a bias a row, rows a layer, a ReLU flag a layer. One tuple, replaced whole:
    # dropping the old one can run Python code (a row's __del__) that calls the net, which
    # must never see one layer's rows with another's sizes
    cdef tuple _layout
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
        self._layout = (tuple(rows), tuple(biases), tuple(sizes), tuple(relus))
        self._params = None
        self._stock, self._otherwise = stock, otherwise

    def __call__(self, x):
        cdef Value p
        cdef Py_ssize_t n0
        cdef unsigned int hidden
        cdef unsigned int* shape
        cdef tuple rows, biases, sizes, relus
        if self._layout is None:
            raise ValueError("a Net made by Net.__new__ has no layers: make it with Net(layers)")
        if self._stock and not _stock_methods(self._stock):
            return self._otherwise(x)
        items = PySequence_Fast(x, "a Net takes a sequence of inputs")  # may run code
        # locals, read at once: reading numbers may run code that calls __init__ again
        rows, biases, sizes, relus = self._layout
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
        return _nary_node(NET, 0, items, None, p, KID_OFF_TAPE, _slots(2 * hidden * sizeof(double)))

    def __repr__(self):
        if self._layout is None:
            return "Net()"
        rows, _, sizes, _ = self._layout
        return f"Net({[len(rows[0])] + list(sizes)})"
