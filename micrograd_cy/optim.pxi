# The optimizer step in C: micrograd's update loop (for p in parameters: p.data -= lr * p.grad)
# and zero_grad over an array of the parameters, with the same arithmetic. In Python the
# two loops cost about as much as backward() itself on micrograd's demo (337 parameters).

@cython.final
@cython.no_gc  # holds Values, which hold only Values (a subclass's __dict__ may hold more:
               # a cycle through it leaks, as any cycle through a node does)
@cython.binding(False)  # C method descriptors: they refuse a self that is not an SGD
cdef class SGD:
    """SGD(params, lr=0.01): plain gradient descent over a fixed list of leaves.

    step(lr=None) does `p.data -= lr * p.grad` for every parameter, in C, with the numbers of
    micrograd's loop; zero_grad() sets every grad to 0. lr defaults to the one given here.
    """
    cdef PyObject** _params
    cdef Py_ssize_t _n
    cdef bint _started  # __init__ has begun: it may not run again
    cdef public double lr

    def __cinit__(self):
        self._params = NULL
        self._n = 0

    def __init__(self, params, double lr=0.01):
        cdef Py_ssize_t i, n
        cdef PyObject** ps
        if self._started:
            raise RuntimeError("SGD.__init__ may run only once")
        self._started = True  # first: reading params runs Python code, which may call it again
        items = list(params)  # a snapshot: later edits of the caller's list do not show
        n = len(items)
        seen = set()
        for i, p in enumerate(items):
            if not isinstance(p, Value):
                raise TypeError(f"SGD: parameter {i} is {type(p).__name__!r}, not a Value")
            if not (<Value>p)._flags & READY:  # an __init__ to come could give it children
                raise ValueError(f"SGD: parameter {i} is a Value whose __init__ has not run "
                                 f"(or not returned): make it with Value(data)")
            if (<Value>p)._n:
                raise ValueError(f"SGD: parameter {i} is not a leaf (its op is {p._op!r}): "
                                 f"only leaves can be optimized")
            if id(p) in seen:
                raise ValueError(f"SGD: parameter {i} appears twice: it would be updated twice")
            seen.add(id(p))
        _check_rate(lr)
        ps = <PyObject**>_alloc(max(n, 1) * sizeof(PyObject*))
        if ps == NULL:
            raise MemoryError()
        for i in range(n):
            Py_INCREF(items[i])
            ps[i] = <PyObject*>items[i]
        self._params = ps
        self._n = n
        self.lr = lr

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self._params != NULL:
            for i in range(self._n):
                _decref(self._params[i])
            PyMem_Free(self._params)

    def step(self, lr=None):
        """p.data -= lr * p.grad for every parameter (lr: this step's rate, else self.lr)."""
        cdef double rate = self.lr if lr is None else lr
        cdef Py_ssize_t i
        cdef PyObject** ps = self._params
        _check_rate(rate)
        # kernel: begin
        for i in range(self._n):
            _datap(ps[i])[0] -= rate * _gradp(ps[i])[0]
        # kernel: end

    def zero_grad(self):
        """Every parameter's grad to 0."""
        cdef Py_ssize_t i
        cdef PyObject** ps = self._params
        # kernel: begin
        for i in range(self._n):
            _gradp(ps[i])[0] = 0.0
        # kernel: end

    @property
    def params(self):
        """The parameters, in the order given."""
        cdef Py_ssize_t i
        return [<object>self._params[i] for i in range(self._n)]

    def __len__(self):
        return self._n

    def __repr__(self):
        return f"SGD({self._n} parameters, lr={self.lr})"

    def __reduce__(self):
        return (SGD, (self.params, self.lr))


cdef int _check_rate(double lr) except -1:
    if not isfinite(lr):
        raise ValueError(f"SGD: the learning rate must be a finite number, not {lr}")
    return 0
