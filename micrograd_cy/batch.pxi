# A graph built once for one row of inputs, run over N rows in one call, in C:
# Value.evaluate (the outputs' data a row) and Value.backward_rows (the loss a row, and
# backward(): the grads of the graph's other leaves add up over the rows). The inputs are
# leaves of the graph; each row gives their values.
#
# The graph is compiled to a _Program: a step a node, in the graph's order (a NET node a
# step a neuron), each reading and writing numbers by slot. The rows go through it a block of
# W at a time: a slot holds W numbers, one a row (its lanes), so that each step's loop runs
# across rows and the C compiler can vectorize it, while every row keeps its own order of
# operations: the numbers are those forward() and backward() give for that row, to the bit.
# The graph's other leaves (weights, constants) are one number for every row (step 0).
# Backward gives to slots too: an interior node's grads, the sink (an input's: kept by
# nothing), or, for a leaf that is not an input, a slot of its own for each edge, so that
# after each block the leaf's grad adds them row by row, each row's edges in the order
# backward() gives through them: what calling backward() row after row adds, to the bit.
# Nothing else in the graph changes: the nodes' data and the interior grads are not touched.

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


cdef list _values_of(object xs, str what, str name):
    """xs, a Value or a sequence of Values, as a non-empty list."""
    if isinstance(xs, Value):
        return [xs]
    try:
        out = list(xs)
    except TypeError:
        raise TypeError(f"{name} takes its {what} as a Value or a sequence of Values, "
                        f"not {type(xs).__name__!r}") from None
    if not out:
        raise ValueError(f"{name} needs at least one of its {what}")
    for k, v in enumerate(out):
        if not isinstance(v, Value):
            raise TypeError(f"{name}: {what} {k} is {type(v).__name__!r}, not a Value")
    return out


cdef bint _iterable_row(object r) except -1:
    """A row numpy could not read as numbers: an iterator, a generator, a map (not a str)."""
    return not isinstance(r, (str, bytes)) and hasattr(r, "__iter__") and \
        not isinstance(r, (list, tuple)) and not hasattr(r, "__array__")


cdef object _rows_of(object rows, Py_ssize_t k, str name):
    """rows as a C-contiguous float64 array of shape (N, k); clear errors for bad input."""
    cdef double d
    np = _numpy()
    what = (f"{name} takes its rows as real numbers, {k} a row (an iterable of rows, "
            f"each an iterable of numbers, or a 2-D array)")
    if not isinstance(rows, (list, tuple, np.ndarray)):  # a generator, a map, a range...
        try:
            rows = list(rows)
        except TypeError:
            raise TypeError(f"{what}, not {type(rows).__name__!r}") from None
    if not isinstance(rows, np.ndarray) and any(_iterable_row(r) for r in rows):
        rows = [list(r) if _iterable_row(r) else r for r in rows]  # rows of maps, generators
    try:
        a = np.asarray(rows)
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
        raise ValueError(f"{name} needs rows of {k} numbers, one for each input; got an "
                         f"array of shape {a.shape}")
    nan = np.isnan(a)
    if nan.any():  # (by row, any(axis=1), took as long as the demo's grid's evaluation)
        raise ValueError(f"{name}: row {np.flatnonzero(nan.any(axis=1))[0]} holds NaN")
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


# ---------------------------------------------------------------------------
# The program

DEF LANES = 16  # rows a block, at most (MGCY_LANES in the C below)

# DOT's usual case over a whole block of LANES rows, where a step's time goes, in C with GCC's
# vector types (the C compiler makes no vectors of the loops below by itself): each weight one
# number for every row (a constant), each input one a row. The same operations as the rules'
# (ops.pxi: _dot_fwd, _dot_bwd), lane by lane, in the same order; no fused multiply-add
# (setup.py). Written once over a vector type (MGCY_DOT_KERNELS): SSE2's, which every x86-64
# has, and AVX2's, taken where the CPU has it (twice the rows an instruction).
cdef extern from *:
    """
    #define MGCY_LANES 16
    #if defined(__GNUC__) || defined(__clang__)
    static inline double *mgcy_lane(double *X, Py_ssize_t W, const mgcy_arg *a) {
        return a->x >= 0 ? X + a->x * W : X + a->x;
    }
    /* mgcy_dot_fwd_<s>: out[0..MGCY_LANES) = bias + w0*x0 + w1*x1 + ..., ReLU'd if relu (a
       negative sum becomes +0.0; -0.0 and NaN stay).
       mgcy_dot_bwd_<s>: to each weight (a constant: its slot is the edge's own, written)
       x * g, to each input (added to) w * g, to the bias g; a row whose ReLU is dead gives
       nothing (its weights' slots -0.0, its inputs' unchanged). */
    #define MGCY_DOT_KERNELS(S, ATTR, V, M, WIDTH)                                              \
    typedef double V __attribute__((vector_size(WIDTH * 8), aligned(8)));                     \
    typedef long long M __attribute__((vector_size(WIDTH * 8), aligned(8)));                  \
    enum { MGCY_N_##S = MGCY_LANES / WIDTH };                                                  \
    static ATTR void mgcy_dot_fwd_##S(double *X, const mgcy_arg *a, Py_ssize_t n, int bias,    \
                                      int relu, double *out) {                                 \
        V s[MGCY_N_##S], zero = {0.0};                                                          \
        const V *x;                                                                             \
        double v = bias ? *mgcy_lane(X, MGCY_LANES, &a[2 * n]) : 0.0;                           \
        Py_ssize_t i;                                                                           \
        int k;                                                                                  \
        for (k = 0; k < MGCY_N_##S; k++)                                                        \
            s[k] = v - zero;  /* the bias itself: 0.0 + -0.0 would be +0.0 */                   \
        for (i = 0; i < n; i++) {                                                               \
            v = *mgcy_lane(X, MGCY_LANES, &a[i]);                                               \
            x = (const V *)mgcy_lane(X, MGCY_LANES, &a[n + i]);                                 \
            for (k = 0; k < MGCY_N_##S; k++)                                                    \
                s[k] += v * x[k];                                                               \
        }                                                                                       \
        for (k = 0; k < MGCY_N_##S; k++) {                                                      \
            if (relu)                                                                           \
                s[k] = (V)((M)s[k] & ~(s[k] < zero));                                           \
            ((V *)out)[k] = s[k];                                                               \
        }                                                                                       \
    }                                                                                           \
    static ATTR void mgcy_dot_bwd_##S(double *X, double *G, const mgcy_arg *a, Py_ssize_t n,   \
                                      int bias, int relu, Py_ssize_t out) {                    \
        V g[MGCY_N_##S], zero = {0.0}, nz = -0.0 - zero, d;                                     \
        M live[MGCY_N_##S], all = ~(M){0};                                                      \
        const V *x, *o = (const V *)(X + out * MGCY_LANES);                                     \
        V *gw, *gx;                                                                             \
        double v;                                                                               \
        Py_ssize_t i;                                                                           \
        int k;                                                                                  \
        for (k = 0; k < MGCY_N_##S; k++) {                                                      \
            g[k] = ((const V *)(G + out * MGCY_LANES))[k];                                      \
            live[k] = relu ? (M)~(o[k] <= zero) : all;  /* NaN passes, as RELU */              \
        }                                                                                       \
        for (i = 0; i < n; i++) {                                                               \
            v = *mgcy_lane(X, MGCY_LANES, &a[i]);                                               \
            x = (const V *)mgcy_lane(X, MGCY_LANES, &a[n + i]);                                 \
            gw = (V *)(G + a[i].g * MGCY_LANES);                                                \
            gx = (V *)(G + a[n + i].g * MGCY_LANES);                                            \
            for (k = 0; k < MGCY_N_##S; k++)                                                    \
                gw[k] = (V)(((M)(x[k] * g[k]) & live[k]) | ((M)nz & ~live[k]));                 \
            for (k = 0; k < MGCY_N_##S; k++) {                                                  \
                d = gx[k] + v * g[k];                                                           \
                gx[k] = (V)(((M)d & live[k]) | ((M)gx[k] & ~live[k]));                          \
            }                                                                                   \
        }                                                                                       \
        if (bias) {                                                                             \
            gw = (V *)(G + a[2 * n].g * MGCY_LANES);                                            \
            for (k = 0; k < MGCY_N_##S; k++)                                                    \
                gw[k] = (V)(((M)g[k] & live[k]) | ((M)nz & ~live[k]));                          \
        }                                                                                       \
    }
    MGCY_DOT_KERNELS(sse2, , mgcy_v2, mgcy_m2, 2)
    #if (defined(__x86_64__) || defined(__i386__)) && !defined(__clang__)
    MGCY_DOT_KERNELS(avx2, __attribute__((target("avx2"))), mgcy_v4, mgcy_m4, 4)
    static int mgcy_has_avx2 = -1;
    static inline int mgcy_avx2(void) {
        if (mgcy_has_avx2 < 0)
            mgcy_has_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
        return mgcy_has_avx2;
    }
    #else
    static inline int mgcy_avx2(void) { return 0; }
    #define mgcy_dot_fwd_avx2 mgcy_dot_fwd_sse2
    #define mgcy_dot_bwd_avx2 mgcy_dot_bwd_sse2
    #endif
    /* 1 when the step is DOT's usual case (done), 0 for the general loop */
    static inline int mgcy_dot_block(double *X, const mgcy_arg *a, Py_ssize_t n, int bias,
                                     int relu, int usual, double *out) {
        if (!usual) return 0;
        if (mgcy_avx2()) mgcy_dot_fwd_avx2(X, a, n, bias, relu, out);
        else mgcy_dot_fwd_sse2(X, a, n, bias, relu, out);
        return 1;
    }
    static inline int mgcy_dot_bwd_block(double *X, double *G, const mgcy_arg *a, Py_ssize_t n,
                                         int bias, int relu, int usual, Py_ssize_t out) {
        if (!usual) return 0;
        if (mgcy_avx2()) mgcy_dot_bwd_avx2(X, G, a, n, bias, relu, out);
        else mgcy_dot_bwd_sse2(X, G, a, n, bias, relu, out);
        return 1;
    }
    #else
    static inline int mgcy_dot_block(double *X, const mgcy_arg *a, Py_ssize_t n, int bias,
                                     int relu, int usual, double *out) { return 0; }
    static inline int mgcy_dot_bwd_block(double *X, double *G, const mgcy_arg *a, Py_ssize_t n,
                                         int bias, int relu, int usual, Py_ssize_t out) {
        return 0;
    }
    #endif
    """
    bint _dot_block "mgcy_dot_block"(double* X, const _Arg* a, Py_ssize_t n, int bias, int relu,
                                     int usual, double* out) noexcept nogil
    bint _dot_bwd_block "mgcy_dot_bwd_block"(double* X, double* G, const _Arg* a, Py_ssize_t n,
                                             int bias, int relu, int usual,
                                             Py_ssize_t out) noexcept nogil

cdef enum:
    USUAL = 128  # a DOT step's flag: constant weights and bias, a row's inputs (mgcy_dot_block)

cdef struct _Step:       # one node's rule over a block of rows
    unsigned char op
    unsigned char flags  # DOT's HAS_BIAS and RELU_OUT
    unsigned int n       # its children: args[0..n), as the node's kids (a NET: a DOT a neuron)
    Py_ssize_t out       # its lane slot
    _Arg* args
    double c             # POW's exponent, LEAKY_RELU's slope


cdef struct _Code:  # a graph compiled for rows: see _Program
    _Step* steps
    Py_ssize_t nsteps
    _Arg* args
    Py_ssize_t k, nlane, nconst, ncon, sink
    PyObject** consts      # borrowed
    Py_ssize_t* con_start  # nconst + 1: constant u's edges are con_slot[con_start[u]:con_start[u + 1]]
    Py_ssize_t* con_slot
    bint* con_added        # by con_slot: the edge adds into its slot (else writes: DOT's)
    _Arg* outs             # the outputs' numbers
    Py_ssize_t m
    Py_ssize_t root        # the loss's lane slot (backward_rows), or -1
    double* xbuf           # nconst + nlane * W numbers
    double* gbuf           # (sink + 1) * W grads; the constants' edges are -0.0 between blocks
    Py_ssize_t W           # the width the buffers have


@cython.final
@cython.no_gc  # holds no Python object: borrowed pointers into a graph its owner keeps alive
cdef class _Program:
    """A graph compiled for rows (see the top of this file). Lane slots: the inputs (0..k),
    then the nodes' and a NET's hidden units'; constants: the graph's other leaves (and
    hand-built CUSTOM nodes, whose data is given), u at X[-1 - u]. Grad slots: the lane slots,
    then the constants' edges (con_slot, grouped by constant), then the sink."""
    cdef _Code c
    cdef tuple key             # ids of the (inputs, outputs) it was compiled for

    def __cinit__(self):
        self.c.root = -1

    def __dealloc__(self):
        PyMem_Free(self.c.steps)
        PyMem_Free(self.c.args)
        PyMem_Free(self.c.consts)
        PyMem_Free(self.c.con_start)
        PyMem_Free(self.c.con_slot)
        PyMem_Free(self.c.con_added)
        PyMem_Free(self.c.outs)
        PyMem_Free(self.c.xbuf)
        PyMem_Free(self.c.gbuf)


cdef inline void _stash(PyObject* node, Py_ssize_t code, PyObject** saved, double* grads,
                        Py_ssize_t* ns) noexcept:
    """While compiling: node's slot code kept in its grad (its own grad saved), marked."""
    saved[ns[0]] = node
    grads[ns[0]] = _gradp(node)[0]
    ns[0] += 1
    _flagsp(node)[0] |= EXPANDED
    _gradp(node)[0] = <double>code


cdef inline Py_ssize_t _slot_of(PyObject* kid, _Code* p, PyObject** saved, double* grads,
                                Py_ssize_t* ns) noexcept:
    """The slot code of a child (lane slot >= 0, constant -1 - u): a leaf met first here
    becomes a constant."""
    if not _flagsp(kid)[0] & EXPANDED:
        p.consts[p.nconst] = kid
        _stash(kid, -1 - p.nconst, saved, grads, ns)
        p.nconst += 1
    return <Py_ssize_t>_gradp(kid)[0]


cdef inline void _set_arg(_Arg* a, Py_ssize_t code) noexcept:
    a.x = code
    a.step = 1 if code >= 0 else 0
    a.g = -1


cdef Py_ssize_t _compile_net(_Code* p, PyObject* node, _Step* s, _Arg* a, PyObject** saved,
                             double* grads, Py_ssize_t* ns) noexcept:
    """A NET node as its neurons' DOT steps, in the order its rules run them (net.pxi); the
    last one's lane slot is the node's. Returns the steps written."""
    cdef PyObject** x = (<Value>node)._s.kids
    cdef PyObject* params = _net_params(node)
    cdef PyObject** w = (<Value>params)._s.kids
    cdef unsigned int* shape = _net_shape(params)
    cdef unsigned int L = shape[0], l, j, i, nin, nout
    cdef Py_ssize_t written = 0, hidden = -1
    for l in range(L):
        nin = shape[1 + l]
        nout = shape[2 + l]
        for j in range(nout):
            s.op = DOT
            s.flags = HAS_BIAS | (RELU_OUT if shape[2 + L + l] else 0)
            s.n = 2 * nin + 1
            s.args = a
            s.c = 0.0
            for i in range(nin):
                _set_arg(&a[i], _slot_of(w[i], p, saved, grads, ns))
                _set_arg(&a[nin + i], _slot_of(x[i], p, saved, grads, ns) if hidden < 0
                         else hidden + i)
            _set_arg(&a[2 * nin], _slot_of(w[nin], p, saved, grads, ns))
            s.out = p.nlane + j
            a += 2 * nin + 1
            s += 1
            w += nin + 1
        hidden = p.nlane
        p.nlane += nout
        written += nout
    return written


cdef inline bint _index_arg(_Step* s, unsigned int i) noexcept:
    """Whether child i is the index a CROSS_ENTROPY or GATHER reads (given nothing)."""
    return (s.op == CROSS_ENTROPY or s.op == GATHER) and i + 1 == s.n


cdef inline unsigned int _giving(_Step* s, unsigned int i) noexcept:
    """The child the step's chain rule gives to i-th: DOT gives w0, x0, w1, x1, ..., bias."""
    cdef unsigned int n
    if s.op == DOT:
        n = s.n // 2
        return 2 * n if i == 2 * n else (i // 2) + (n if i % 2 else 0)
    return i


cdef _Program _compile(PyObject** topo, Py_ssize_t n, list ins, list outs, Value root,
                       Py_ssize_t first_out=0):
    """The program of a graph in an order (its interior nodes, and maybe its leaves), for the
    inputs ins and the outputs outs; root: the loss (backward_rows) or None. Raises where the
    inputs or outputs are not in the graph (naming output j as j - first_out); nothing is
    left changed."""
    cdef _Program prog = _Program.__new__(_Program)
    cdef _Code* p = &prog.c
    cdef Py_ssize_t i, j, e, nargs = 0, nsteps = 0, ns = 0, cap, code, u, k = len(ins)
    cdef Py_ssize_t m = len(outs)
    cdef PyObject* node
    cdef PyObject** kids
    cdef unsigned int* shape
    cdef unsigned int l, c
    cdef unsigned char op
    cdef _Step* s
    cdef _Arg* a
    for i in range(n):  # the sizes
        op = (<Value>topo[i])._opcode
        if op == NET:
            shape = _net_shape(_net_params(topo[i]))
            for l in range(shape[0]):
                nsteps += shape[2 + l]
                nargs += shape[2 + l] * (2 * shape[1 + l] + 1)
        elif op > CUSTOM and op != PARAMS:
            nsteps += 1
            nargs += (<Value>topo[i])._n
    cap = k + n + nargs
    p.k = k
    p.m = m
    p.steps = <_Step*>_alloc(max(nsteps, 1) * sizeof(_Step))
    p.args = <_Arg*>_alloc(max(nargs, 1) * sizeof(_Arg))
    p.consts = <PyObject**>_alloc(cap * sizeof(PyObject*))
    p.outs = <_Arg*>_alloc(max(m, 1) * sizeof(_Arg))
    cdef PyObject** saved = <PyObject**>_alloc(cap * sizeof(PyObject*))
    cdef double* grads = <double*>_alloc(cap * sizeof(double))
    cdef bint* seen = <bint*>_alloc(max(k, 1) * sizeof(bint))
    if (p.steps == NULL or p.args == NULL or p.consts == NULL or p.outs == NULL or
            saved == NULL or grads == NULL or seen == NULL):
        PyMem_Free(saved)
        PyMem_Free(grads)
        PyMem_Free(seen)
        raise MemoryError("out of memory compiling the graph")
    cdef Py_ssize_t missing_out = -1, missing_in = -1
    for j in range(k):  # the inputs, then the outputs, as pointers: the loop below is pure C
        saved[j] = <PyObject*>ins[j]
    for j in range(m):
        p.outs[j].x = <Py_ssize_t><PyObject*>outs[j]
    # kernel: begin
    # Each node met keeps its slot's code in its grad, marked EXPANDED; all are put back below,
    # before anything can raise or run Python code.
    for j in range(k):
        _stash(saved[j], j, saved, grads, &ns)
        seen[j] = False
    p.nlane = k
    s = p.steps
    a = p.args
    for i in range(n):
        node = topo[i]
        op = (<Value>node)._opcode
        if op <= CUSTOM:  # a leaf, or a hand-built node: its data is given
            code = _slot_of(node, p, saved, grads, &ns)
            if 0 <= code < k:  # an input, if only a hand-built node holds it
                seen[code] = True
            continue
        if op == PARAMS:  # its NET nodes read the weights (net.pxi)
            continue
        if op == NET:
            j = _compile_net(p, node, s, a, saved, grads, &ns)
            code = s[j - 1].out
            while j > 0:
                a += s.n
                s += 1
                j -= 1
        else:
            kids = _children(node)
            s.op = op
            s.flags = (<Value>node)._flags & (HAS_BIAS | RELU_OUT) if op == DOT else 0
            s.n = (<Value>node)._n
            s.args = a
            s.c = (<Value>node)._s.c if op == POW or op == LEAKY_RELU else 0.0
            for c in range(s.n):
                _set_arg(&a[c], _slot_of(kids[c], p, saved, grads, &ns))
            s.out = p.nlane
            p.nlane += 1
            code = s.out
            a += s.n
            s += 1
        _stash(node, code, saved, grads, &ns)
    p.nsteps = s - p.steps
    for i in range(p.nsteps):
        for c in range(p.steps[i].n):
            if 0 <= p.steps[i].args[c].x < k:
                seen[p.steps[i].args[c].x] = True
    for j in range(m):  # in the graph: met in the order, or an input a node reads
        node = <PyObject*>p.outs[j].x
        code = <Py_ssize_t>_gradp(node)[0] if _flagsp(node)[0] & EXPANDED else -1 - p.nconst
        if code >= -p.nconst and not (0 <= code < k and not seen[code]):
            _set_arg(&p.outs[j], code)
        elif missing_out < 0:
            missing_out = j
    if root is not None:
        p.root = <Py_ssize_t>root._grad if root._flags & EXPANDED else -1
    for j in range(k):
        if not seen[j] and missing_in < 0:
            missing_in = j
    for i in range(ns):  # every node as it was
        _gradp(saved[i])[0] = grads[i]
        _flagsp(saved[i])[0] &= ~EXPANDED
    # kernel: end
    PyMem_Free(saved)
    PyMem_Free(grads)
    PyMem_Free(seen)
    if missing_out >= 0:
        raise ValueError(f"output {missing_out - first_out} is not in the graph")
    if missing_in >= 0:
        raise ValueError(f"input {missing_in} is not in the outputs' graph")
    for i in range(p.nsteps):
        if _usual(&p.steps[i]):
            p.steps[i].flags |= USUAL
    _compile_grads(p)
    return prog


cdef inline bint _usual(_Step* s) noexcept:
    """Whether a step is DOT's usual case: constant weights (and bias), a row's inputs."""
    cdef unsigned int i, n = s.n // 2
    if s.op != DOT:
        return False
    for i in range(n):
        if s.args[i].x >= 0 or s.args[n + i].x < 0:
            return False
    return not s.flags & HAS_BIAS or s.args[2 * n].x < 0


cdef int _compile_grads(_Code* p) except -1:
    """Where each edge gives (_Arg.g): its child's grad slot, the sink, or, for a constant, a
    slot of the edge's own, numbered in the order backward() gives through them."""
    cdef Py_ssize_t i, e = 0, u
    cdef unsigned int c, j
    cdef _Arg* a
    for i in range(p.nsteps):  # the constants' edges
        for c in range(p.steps[i].n):
            if p.steps[i].args[c].x < 0 and not _index_arg(&p.steps[i], c):
                e += 1
    p.ncon = e
    p.sink = p.nlane + p.ncon
    p.con_start = <Py_ssize_t*>_alloc((p.nconst + 1) * sizeof(Py_ssize_t))
    p.con_slot = <Py_ssize_t*>_alloc(max(p.ncon, 1) * sizeof(Py_ssize_t))
    p.con_added = <bint*>_alloc(max(p.ncon, 1) * sizeof(bint))
    if p.con_start == NULL or p.con_slot == NULL or p.con_added == NULL:
        raise MemoryError("out of memory compiling the graph")
    # kernel: begin
    for u in range(p.nconst + 1):
        p.con_start[u] = 0
    e = p.nlane
    i = p.nsteps
    while i > 0:  # backward's order: the last step first, each giving in its rule's order
        i -= 1
        for c in range(p.steps[i].n):
            j = _giving(&p.steps[i], c)
            a = &p.steps[i].args[j]
            if _index_arg(&p.steps[i], j) or 0 <= a.x < p.k:
                a.g = p.sink
            elif a.x >= 0:
                a.g = a.x
            else:
                a.g = e
                e += 1
                p.con_start[-a.x] += 1  # counted at u + 1
    for u in range(p.nconst):  # counts to starts, by constant
        p.con_start[u + 1] += p.con_start[u]
    i = p.nsteps
    while i > 0:  # each constant's edges, in the order they were numbered
        i -= 1
        for c in range(p.steps[i].n):
            a = &p.steps[i].args[_giving(&p.steps[i], c)]
            if a.x < 0 and a.g != p.sink:
                u = -1 - a.x
                p.con_slot[p.con_start[u]] = a.g
                p.con_added[p.con_start[u]] = p.steps[i].op != DOT
                p.con_start[u] += 1
    u = p.nconst
    while u > 0:  # the starts moved to the ends: back by one constant
        u -= 1
        p.con_start[u + 1] = p.con_start[u]
    p.con_start[0] = 0
    # kernel: end
    return 0


cdef int _widen(_Code* p, Py_ssize_t W) except -1:
    """The buffers for blocks of W rows."""
    cdef Py_ssize_t i
    if p.W == W:
        return 0
    PyMem_Free(p.xbuf)
    PyMem_Free(p.gbuf)
    p.W = 0
    p.xbuf = <double*>_alloc((p.nconst + p.nlane * W) * sizeof(double) + 1)
    p.gbuf = <double*>_alloc((p.sink + 1) * W * sizeof(double))
    if p.xbuf == NULL or p.gbuf == NULL:
        raise MemoryError("out of memory running the graph on rows")
    for i in range(p.nlane * W, p.sink * W):
        p.gbuf[i] = -0.0  # an edge's slot before it gives: x + -0.0 == x, whatever x is
    p.W = W
    return 0


# kernel: begin
cdef inline void _fail(int* E, Py_ssize_t l, int err) noexcept:
    """Row l met err, unless an earlier step failed it already."""
    if err and E[l] == OK:
        E[l] = err


cdef inline void _dot_fwd_lanes(_Step* s, double* X, Py_ssize_t W) noexcept:
    """DOT: bias + w0*x0 + w1*x1 + ... for each row, in that order (_dot_fwd)."""
    cdef Py_ssize_t n = s.n // 2, i, l
    cdef _Arg* a = s.args
    cdef double acc[LANES]
    cdef double* w
    cdef double* x
    cdef double v
    if W == LANES and _dot_block(X, a, n, s.flags & HAS_BIAS, s.flags & RELU_OUT, s.flags & USUAL,
                                 X + s.out * W):
        return
    if s.flags & HAS_BIAS:
        w = _lane_of(X, W, &a[2 * n])
        for l in range(W):
            acc[l] = w[l * a[2 * n].step]
    else:
        for l in range(W):
            acc[l] = 0.0
    for i in range(n):
        w = _lane_of(X, W, &a[i])
        x = _lane_of(X, W, &a[n + i])
        if a[i].step == 0 and a[n + i].step:  # a weight, an input: the usual case
            v = w[0]
            for l in range(W):
                acc[l] += v * x[l]
        elif a[i].step and a[n + i].step:
            for l in range(W):
                acc[l] += w[l] * x[l]
        else:
            for l in range(W):
                acc[l] += w[l * a[i].step] * x[l * a[n + i].step]
    if s.flags & RELU_OUT:
        for l in range(W):
            if acc[l] < 0.0:
                acc[l] = 0.0
    x = X + s.out * W
    for l in range(W):
        x[l] = acc[l]


cdef inline void _dot_bwd_lanes(_Step* s, double* X, double* G, Py_ssize_t W) noexcept:
    """DOT's chain rule for each row (_dot_bwd): to w0, x0, w1, x1, ..., then the bias; a
    dead ReLU's row gives nothing. A constant child's slot is this edge's alone and -0.0
    before (-0.0 + d == d): it is written, not added to, and a row giving nothing writes
    -0.0, so that it needs no reset (_fold)."""
    cdef Py_ssize_t n = s.n // 2, i, l, ws, xs
    cdef _Arg* a = s.args
    cdef double g[LANES]
    cdef bint live[LANES]
    cdef double* out = X + s.out * W
    cdef double* w
    cdef double* x
    cdef double* gw
    cdef double* gx
    cdef double d
    if W == LANES and _dot_bwd_block(X, G, a, n, s.flags & HAS_BIAS, s.flags & RELU_OUT,
                                     s.flags & USUAL, s.out):
        return
    for l in range(W):
        g[l] = G[s.out * W + l]
        live[l] = not (s.flags & RELU_OUT and out[l] <= 0.0)  # NaN passes, as RELU
    for i in range(n):
        w = _lane_of(X, W, &a[i])
        x = _lane_of(X, W, &a[n + i])
        ws = a[i].step
        xs = a[n + i].step
        gw = G + a[i].g * W
        gx = G + a[n + i].g * W
        if ws == 0 and xs:  # a weight and a row's number: the usual case
            for l in range(W):
                gw[l] = x[l] * g[l] if live[l] else -0.0
            for l in range(W):
                gx[l] = gx[l] + w[0] * g[l] if live[l] else gx[l]
            continue
        for l in range(W):
            d = x[l * xs] * g[l]
            if ws == 0:
                gw[l] = d if live[l] else -0.0
            elif live[l]:
                gw[l] += d
        for l in range(W):
            d = w[l * ws] * g[l]
            if xs == 0:
                gx[l] = d if live[l] else -0.0
            elif live[l]:
                gx[l] += d
    if s.flags & HAS_BIAS:
        gw = G + a[2 * n].g * W
        for l in range(W):
            if a[2 * n].step == 0:
                gw[l] = g[l] if live[l] else -0.0
            elif live[l]:
                gw[l] += g[l]


cdef inline void _step_fwd(_Step* s, double* X, Py_ssize_t W, int* E) noexcept:
    """A step's forward rule for each row of the block; a row's first error goes to E."""
    cdef unsigned char op = s.op
    cdef double* out = X + s.out * W
    cdef _Arg* a = s.args
    cdef Py_ssize_t l, xs, ys
    cdef unsigned int i
    cdef int t
    cdef double shift
    cdef double* x
    cdef double* y
    cdef _Lane row
    if op == DOT:
        _dot_fwd_lanes(s, X, W)
    elif op == SUM:
        for l in range(W):
            out[l] = 0.0
        for i in range(s.n):
            x = _lane_of(X, W, &a[i])
            xs = a[i].step
            for l in range(W):
                out[l] += x[l * xs]
    elif op == LOGSUMEXP or op == CROSS_ENTROPY or op == GATHER:
        row.X = X
        row.args = a
        row.W = W
        y = _lane_of(X, W, &a[s.n - 1])  # the index, for CROSS_ENTROPY and GATHER
        for l in range(W):
            row.l = l
            t = _index_in(y[l * a[s.n - 1].step], s.n - 1)
            if op == LOGSUMEXP:
                out[l] = _log_sum_exp(&row, s.n, &shift, True)
                out[l] += shift
            elif op == CROSS_ENTROPY:
                _fail(E, l, _cross_entropy_of(&row, s.n - 1, t, &out[l]))
            elif t < 0:
                _fail(E, l, ERR_INDEX)
            else:
                out[l] = _kid(&row, t)
    elif s.n == 2:
        x = _lane_of(X, W, &a[0])
        y = _lane_of(X, W, &a[1])
        xs = a[0].step
        ys = a[1].step
        if op == MUL and xs and ys:
            for l in range(W):
                out[l] = x[l] * y[l]
        elif op == ADD and xs and ys:
            for l in range(W):
                out[l] = x[l] + y[l]
        else:
            for l in range(W):
                _fail(E, l, _eval2(op, x[l * xs], y[l * ys], &out[l]))
    else:
        x = _lane_of(X, W, &a[0])
        xs = a[0].step
        for l in range(W):
            _fail(E, l, _eval1(op, x[l * xs], s.c, &out[l]))


cdef inline void _step_bwd(_Step* s, double* X, double* G, Py_ssize_t W) noexcept:
    """A step's chain rule for each row of the block, giving to its children's grad slots."""
    cdef unsigned char op = s.op
    cdef double* out = X + s.out * W
    cdef double* g = G + s.out * W
    cdef _Arg* a = s.args
    cdef Py_ssize_t l, xs, ys
    cdef unsigned int i, n = s.n - 1
    cdef int t, gives
    cdef double d, db, shift, lse
    cdef double* x
    cdef double* y
    cdef double* gx
    cdef double* gy
    cdef _Lane row
    if op == DOT:
        _dot_bwd_lanes(s, X, G, W)
    elif op == SUM:
        for i in range(s.n):
            gx = G + a[i].g * W
            for l in range(W):
                gx[l] += g[l]
    elif op == LOGSUMEXP:
        for i in range(s.n):
            x = _lane_of(X, W, &a[i])
            xs = a[i].step
            gx = G + a[i].g * W
            for l in range(W):
                gx[l] += _logsumexp_d(x[l * xs], out[l], g[l])
    elif op == CROSS_ENTROPY or op == GATHER:
        row.X = X
        row.args = a
        row.W = W
        y = _lane_of(X, W, &a[n])
        for l in range(W):
            t = _index_in(y[l * a[n].step], n)
            if t < 0:
                continue
            if op == GATHER:
                G[a[t].g * W + l] += g[l]
                continue
            row.l = l
            lse = _log_sum_exp(&row, n, &shift, False)
            for i in range(n):
                G[a[i].g * W + l] += _cross_entropy_d(_kid(&row, i), shift, lse, g[l],
                                                      <int>i == t)
    elif s.n == 2:
        x = _lane_of(X, W, &a[0])
        y = _lane_of(X, W, &a[1])
        xs = a[0].step
        ys = a[1].step
        gx = G + a[0].g * W
        gy = G + a[1].g * W
        for l in range(W):
            gives = _grad2(op, x[l * xs], y[l * ys], out[l], g[l], &d, &db)
            if gives & GIVES_A:
                gx[l] += d
            if gives & GIVES_B:
                gy[l] += db
    else:
        x = _lane_of(X, W, &a[0])
        xs = a[0].step
        gx = G + a[0].g * W
        for l in range(W):
            if _grad1(op, x[l * xs], out[l], s.c, g[l], &d):
                gx[l] += d


cdef inline int _run(_Code* p, const double* A, Py_ssize_t nrows, double* outs,
                     bint backward, double scale, Py_ssize_t* bad, Py_ssize_t W) noexcept:
    """Every row of A (nrows x k) through p: the outputs' numbers to outs (nrows x m); with
    backward, the constants' grads add what backward() from the root, seeded with scale,
    gives them row after row. Returns OK, or the first failing row's Err (bad[0]: the row),
    having added the rows before it only. W is p.W, a constant where it is called, so that
    the C compiler makes the loops' copy for each width (1 and LANES)."""
    cdef Py_ssize_t r0, nb, l, j, i, e, u, k = p.k, m = p.m
    cdef double* X = p.xbuf + p.nconst
    cdef double* G = p.gbuf
    cdef double* x
    cdef int E[LANES]
    for u in range(p.nconst):
        X[-1 - u] = _val(p.consts[u])
    r0 = -W
    while r0 + W < nrows:
        r0 += W
        nb = min(W, nrows - r0)
        for j in range(k):  # a short last block repeats its last row
            x = X + j * W
            for l in range(W):
                x[l] = A[(r0 + min(l, nb - 1)) * k + j]
        for l in range(W):
            E[l] = OK
        for i in range(p.nsteps):
            _step_fwd(&p.steps[i], X, W, E)
        for l in range(nb):
            if E[l]:
                bad[0] = r0 + l
                return E[l]
        for j in range(m):
            x = _lane_of(X, W, &p.outs[j])
            for l in range(nb):
                outs[(r0 + l) * m + j] = x[l * p.outs[j].step]
        if not backward:
            continue
        for i in range(p.nlane * W):
            G[i] = 0.0
        for l in range(W):  # what the inputs are given goes here, unread: kept from growing
            G[p.sink * W + l] = 0.0
        for l in range(W):
            G[p.root * W + l] = scale
        i = p.nsteps
        while i > 0:
            i -= 1
            _step_bwd(&p.steps[i], X, G, W)
        for u in range(p.nconst):  # each constant's grad adds its edges, row by row
            e = p.con_start[u]
            if e + 1 == p.con_start[u + 1]:  # one edge: a weight of an MLP
                _fold_one(_gradp(p.consts[u]), G + p.con_slot[e] * W, nb, W, p.con_added[e])
            elif e < p.con_start[u + 1]:
                _fold(_gradp(p.consts[u]), G, W, nb, p.con_slot + e, p.con_added + e,
                      p.con_start[u + 1] - e)
    return OK


cdef inline void _fold_one(double* grad, double* c, Py_ssize_t nb, Py_ssize_t W,
                           bint added) noexcept:
    """grad += c[0], += c[1], ... for the block's nb rows; c back to -0.0 if added to."""
    cdef Py_ssize_t l
    cdef double acc = grad[0]
    for l in range(nb):
        acc += c[l]
    grad[0] = acc
    if added:
        for l in range(W):
            c[l] = -0.0


cdef inline void _fold(double* grad, double* G, Py_ssize_t W, Py_ssize_t nb, Py_ssize_t* slots,
                       bint* added, Py_ssize_t n) noexcept:
    """_fold_one for a constant of n edges: each row adds them in the order given."""
    cdef Py_ssize_t l, e
    cdef double acc = grad[0]
    for l in range(nb):
        for e in range(n):
            acc += G[slots[e] * W + l]
    grad[0] = acc
    for e in range(n):
        if added[e]:
            for l in range(W):
                G[slots[e] * W + l] = -0.0
# kernel: end


cdef inline void _restore_grads(_Code* p, double* saved) noexcept:
    cdef Py_ssize_t u
    for u in range(p.nconst):
        _gradp(p.consts[u])[0] = saved[u]


cdef object _run_rows(_Code* p, object a, str name, bint backward, double scale):
    """p over the rows of a (a float64 array N x k): the outputs' numbers, N x m. Raises a
    row's error, naming the row, with every grad as it was."""
    cdef Py_ssize_t nrows = a.shape[0], bad = 0, u
    cdef int err
    result = _numpy().empty((nrows, p.m))
    if nrows == 0:
        return result
    cdef const double[:, ::1] A = a
    cdef double[:, ::1] out = result
    cdef double* saved = NULL
    _widen(p, 1 if nrows == 1 else LANES)  # one row: a GPT's step, a document
    if backward:
        saved = <double*>_alloc(max(p.nconst, 1) * sizeof(double))
        if saved == NULL:
            raise MemoryError("out of memory running the graph on rows")
        for u in range(p.nconst):
            saved[u] = _gradp(p.consts[u])[0]
    if p.W == 1:
        err = _run(p, &A[0, 0], nrows, &out[0, 0], backward, scale, &bad, 1)
    else:
        err = _run(p, &A[0, 0], nrows, &out[0, 0], backward, scale, &bad, LANES)
    if err and backward:
        _restore_grads(p, saved)
    PyMem_Free(saved)
    if err:
        try:
            _raise(err)
        except Exception as e:
            raise type(e)(f"{name}: row {bad}: {e}") from None
    return result


cdef list _inputs_of(object inputs, str name):
    """The inputs: distinct leaves."""
    ins = _values_of(inputs, "inputs", name)
    column = {}
    for j, v in enumerate(ins):
        if (<Value>v)._opcode != LEAF:
            raise ValueError(f"{name}: input {j} is not a leaf (its op is {v._op!r}): the "
                             f"rows give the inputs' values")
        if column.setdefault(id(v), j) != j:
            raise ValueError(f"{name}: inputs {column[id(v)]} and {j} are the same Value")
    return ins


cdef object _evaluate(object outputs, object inputs, object rows):
    """Value.evaluate: see there."""
    name = "Value.evaluate()"
    outs = _values_of(outputs, "outputs", name)
    ins = _inputs_of(inputs, name)
    cdef Py_ssize_t m = len(outs), k = len(ins), n = 0, i, j
    a = _rows_of(rows, k, name)
    cdef PyObject** topo = NULL
    cdef PyObject** roots = <PyObject**>_alloc(m * sizeof(PyObject*))
    try:
        if roots == NULL:
            raise MemoryError("out of memory evaluating the graph")
        for j in range(m):
            roots[j] = <PyObject*>outs[j]
        n = _order(roots, m, &topo)
        for i in range(n):  # no mark may outlive this call
            _unmark(topo[i])
        for i in range(n):
            if (<Value>topo[i])._opcode == GIVEN:
                raise ValueError("Value.evaluate() cannot recompute a node made with Value(data, "
                                 "children, op, grads=...): its value was given, not computed")
        try:
            p = _compile(topo, n, ins, outs, None)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        try:
            result = _run_rows(&(<_Program>p).c, a, name, False, 1.0)
        finally:
            _eval_all(topo, n)  # the graph as forward() leaves it, from the inputs' own values
    finally:
        PyMem_Free(topo)
        PyMem_Free(roots)
    return result[:, 0] if isinstance(outputs, Value) else result


cdef bint _same(tuple key, list ins, list outs) except -1:
    """Whether a program compiled for key serves these inputs and outputs: the same Values
    (by id: they are in the graph, which outlives its program, so no id is reused meanwhile)."""
    return key == (tuple(map(id, ins)), tuple(map(id, outs)))


cdef object _backward_rows(Value loss, object inputs, object rows, object outputs, object scale):
    """Value.backward_rows: see there."""
    name = "Value.backward_rows()"
    cdef double seed
    cdef Py_ssize_t i
    if not _real(scale, &seed):
        raise TypeError(f"{name}: scale must be a real number, not {type(scale).__name__!r}")
    if loss._opcode <= CUSTOM or loss._opcode == PARAMS:
        raise ValueError(f"{name}: the loss is a leaf (its op is {loss._op!r}): there is "
                         f"nothing to backpropagate through")
    ins = _inputs_of(inputs, name)
    outs = [] if outputs is None else _values_of(outputs, "outputs", name)
    a = _rows_of(rows, len(ins), name)
    order = _cached_order(loss)
    if order.marked:  # a new depth-first order: its marks must not outlive this call
        for i in range(order.ntopo):
            _unmark(order.topo[i])
        order.marked = False
    if order.given:
        raise ValueError(f"{name} cannot recompute a node made with Value(data, children, op, "
                         f"grads=...): its value was given, not computed")
    p = order.program
    if p is None or not _same((<_Program>p).key, ins, outs):
        try:
            p = _compile(order.topo, order.ntopo, ins, [loss] + outs, loss, 1)
        except ValueError as e:
            raise ValueError(f"{name}: {e}".replace("outputs' graph", "loss's graph")) from None
        (<_Program>p).key = (tuple(map(id, ins)), tuple(map(id, outs)))  # no references:
        order.program = p  # the graph, which holds them, holds the program
    result = _run_rows(&(<_Program>p).c, a, name, True, seed)
    if outputs is None:
        return result[:, 0]
    return result[:, 0], (result[:, 1] if isinstance(outputs, Value) else result[:, 1:])
