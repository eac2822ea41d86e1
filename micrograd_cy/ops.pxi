# The op rules. For each op of the Op enum (engine.pxd), in its order: the forward value
# (`_<op>_fwd`, returning an Err code) beside the chain rule (`_<op>_bwd`, which gives
# d(node)/d(child) * g to each child). `_eval` and `_backprop` at the end dispatch on the
# op code to them. Adding an op: docs/architecture.md.
#
# Children are raw PyObject* to Values; the rules read and update them without touching
# reference counts. Everything between "kernel: begin" and "kernel: end" is pure C
# (tests/test_kernels.py); _raise and the names Value._op shows are Python.
from libc.math cimport (INFINITY, cos, exp, fabs, floor, isfinite, isinf, log, log1p, pow, sin,
                        sqrt, tanh)

# ---------------------------------------------------------------------------
# Forward errors: raised where Python's float arithmetic and math module raise

cdef enum Err:
    OK
    ERR_DIV_ZERO
    ERR_ZERO_NEG_POW
    ERR_COMPLEX_POW
    ERR_POW_RANGE
    ERR_EXP_RANGE
    ERR_LOG_DOMAIN
    ERR_DOMAIN
    ERR_GIVEN
    ERR_TARGET
    ERR_INDEX


cdef int _raise(int err) except -1:
    if err == ERR_DIV_ZERO:
        raise ZeroDivisionError("float division by zero")
    if err == ERR_ZERO_NEG_POW:
        raise ZeroDivisionError("0.0 cannot be raised to a negative power")
    if err == ERR_COMPLEX_POW:
        raise ValueError("a negative number raised to a fractional power is complex, "
                         "which a Value cannot hold")
    if err == ERR_POW_RANGE:
        raise OverflowError("Numerical result out of range (power)")
    if err == ERR_EXP_RANGE:
        raise OverflowError("math range error (exp)")
    if err == ERR_LOG_DOMAIN:
        raise ValueError("math domain error (log of a number <= 0)")
    if err == ERR_DOMAIN:
        raise ValueError("math domain error")
    if err == ERR_TARGET:
        raise IndexError("cross_entropy: the target must be the index of a class, a whole "
                         "number from 0 to the number of logits - 1")
    if err == ERR_INDEX:
        raise IndexError("gather: the index must be a whole number from 0 to the table's "
                         "length - 1")
    if err == ERR_GIVEN:
        raise ValueError("forward() cannot recompute a node made with Value(data, children, op, "
                         "grads=...): its value and derivatives were given, not computed. Build "
                         "the graph again instead, or make the op from ops forward() can replay")
    return 0


# kernel: begin (every line up to "kernel: end" must be pure C; tests/test_kernels.py)

cdef inline double _val(PyObject* node) noexcept:
    return (<Value>node)._data

cdef inline double* _gradp(PyObject* node) noexcept:
    return &(<Value>node)._grad

cdef inline double* _datap(PyObject* node) noexcept:
    return &(<Value>node)._data

cdef inline unsigned char* _flagsp(PyObject* node) noexcept:
    return &(<Value>node)._flags

cdef inline PyObject* _a(PyObject* node) noexcept:
    """The first child."""
    return (<Value>node)._a

cdef inline PyObject* _b(PyObject* node) noexcept:
    """A binary op's second child."""
    return (<Value>node)._s.b

cdef inline bint _nary(unsigned char op) noexcept:
    return op >= SUM or op == CUSTOM  # the n-ary ops are the last in the enum, from SUM on

cdef inline PyObject** _children(PyObject* node) noexcept:
    """The node's _n children: an array of its own for n-ary ops, else _a and _s.b."""
    if _nary((<Value>node)._opcode):
        return (<Value>node)._s.kids
    return &(<Value>node)._a  # _s follows _a: checked at import


# A child's numbers in a block of rows (batch.pxi: _Program): its data, one a row (step 1) or
# one for every row (step 0: a constant), and where what an edge gives it goes.
cdef extern from *:  # a C struct: batch.pxi's vectorized C loops read it too
    """
    typedef struct {
        Py_ssize_t x;     /* a lane slot (x >= 0), or the constant -1 - x */
        Py_ssize_t step;  /* 1: one number a row; 0: one for every row (a constant) */
        Py_ssize_t g;     /* the slot the edge gives to, in the block's grads (batch.pxi) */
    } mgcy_arg;
    """
    ctypedef struct _Arg "mgcy_arg":
        Py_ssize_t x
        Py_ssize_t step
        Py_ssize_t g

cdef inline double* _lane_of(double* X, Py_ssize_t W, _Arg* a) noexcept:
    """Where a child's numbers are in X: W a lane slot, then the constants after nlane slots
    (X points at lane 0; constants sit below it, at X[-1 - u])."""
    return X + a.x * W if a.x >= 0 else X + a.x


# ---------------------------------------------------------------------------
# How a chain rule gives to a child. _backprop comes in two copies (a fused type): one
# adds into the children's grads (over a cached order), one also reaches them, for the
# walk down the tape (order.pxi). Each copy is inlined where it runs.

cdef struct _Adding:
    char unused
cdef struct _Walking:
    Py_ssize_t pending  # nodes reached and not yet visited

ctypedef fused _Mode:
    _Adding
    _Walking


cdef inline bint _first_reach(PyObject* c, _Walking* m) noexcept:
    """In a walk: whether this is the first edge to reach c (then c is PLACED and pending).
    A walk meets only leaves and nodes on the tape: a node with a child off the tape is
    off the tape itself (memory.pxi)."""
    cdef unsigned char* f = _flagsp(c)
    if f[0] & (ON_TAPE | PLACED) != ON_TAPE:
        return False
    f[0] |= PLACED
    m.pending += 1
    return True


cdef inline void _give(PyObject* c, double d, _Mode* m) noexcept:
    """Add d into c's grad. In a walk the first edge to reach c replaces the grad it kept
    from an earlier backward: 0.0 + d, exactly what zeroing then adding gives."""
    if _Mode is _Walking:
        if _first_reach(c, m):
            _gradp(c)[0] = 0.0 + d
            return
    _gradp(c)[0] += d


cdef inline void _give_none(PyObject* c, _Mode* m) noexcept:
    """An edge the chain rule gives nothing through: a walk still reaches c, grad 0."""
    if _Mode is _Walking:
        if _first_reach(c, m):
            _gradp(c)[0] = 0.0


cdef inline int _pow(double x, double y, double* out) noexcept:
    """Python's float ** float, minus the complex results."""
    if y == 0.0:
        out[0] = 1.0
        return OK
    if x == 0.0 and y < 0.0 and isfinite(y):
        return ERR_ZERO_NEG_POW
    if x < 0.0 and isfinite(x) and isfinite(y) and y != floor(y):
        return ERR_COMPLEX_POW
    out[0] = pow(x, y)
    if isinf(out[0]) and isfinite(x) and isfinite(y):
        return ERR_POW_RANGE
    return OK


# ---------------------------------------------------------------------------
# The ops, in enum order. g is the node's grad; PyTorch's rules hold at the edges.
# An op of one or two children gives its chain rule as numbers (`_<op>_d`), so that a node
# (_unary_bwd, _binary_bwd) and a block of rows (batch.pxi) share it: from the children's
# data x (and y), the node's out, its constant c (POW, LEAKY_RELU) and g, what it gives each
# child (d, or da and db), and whether it gives anything (one child) or to which children
# (two: GIVES_A | GIVES_B). An n-ary op's `_<op>_bwd` gives to its node's children itself.

cdef enum:
    GIVES_A = 1
    GIVES_B = 2
    BOTH = 3

# -- LEAF: a number; no children, nothing to compute

# -- CUSTOM: Value(data, _children, _op) built by hand; micrograd gives it no rule (and it
#    is never on the tape: a graph holding one is ordered depth-first)

# -- ADD: a + b
cdef inline int _add_fwd(double x, double y, double* out) noexcept:
    out[0] = x + y
    return OK

cdef inline int _add_d(double x, double y, double out, double g, double* da,
                       double* db) noexcept:
    da[0] = g
    db[0] = g
    return BOTH

# -- SUB: a - b
cdef inline int _sub_fwd(double x, double y, double* out) noexcept:
    out[0] = x - y
    return OK

cdef inline int _sub_d(double x, double y, double out, double g, double* da,
                       double* db) noexcept:
    da[0] = g
    db[0] = -g
    return BOTH

# -- MUL: a * b
cdef inline int _mul_fwd(double x, double y, double* out) noexcept:
    out[0] = x * y
    return OK

cdef inline int _mul_d(double x, double y, double out, double g, double* da,
                       double* db) noexcept:
    da[0] = y * g
    db[0] = x * g
    return BOTH

# -- DIV: a / b
@cython.cdivision(True)
cdef inline int _div_fwd(double x, double y, double* out) noexcept:
    if y == 0.0:
        return ERR_DIV_ZERO
    out[0] = x / y
    return OK

@cython.cdivision(True)
cdef inline int _div_d(double x, double y, double out, double g, double* da,
                       double* db) noexcept:
    da[0] = g / y
    db[0] = -g * (out / y)
    return BOTH

# -- NEG: -a
cdef inline int _neg_fwd(double x, double* out) noexcept:
    out[0] = -x
    return OK

cdef inline bint _neg_d(double x, double out, double c, double g, double* d) noexcept:
    d[0] = -g
    return True

# -- POW: a ** c, c a number kept in _s.c
cdef inline int _pow_fwd(double x, double c, double* out) noexcept:
    return _pow(x, c, out)

cdef inline bint _pow_d(double x, double out, double c, double g, double* d) noexcept:
    if c == 0.0:  # d(x**0)/dx is 0 everywhere, 0 included
        return False
    d[0] = (c * pow(x, c - 1.0)) * g
    return True

# -- POWV: a ** b, both Values
cdef inline int _powv_fwd(double x, double y, double* out) noexcept:
    return _pow(x, y, out)

cdef inline int _powv_d(double x, double y, double out, double g, double* da,
                        double* db) noexcept:
    cdef int gives = 0
    if y != 0.0:
        da[0] = (y * pow(x, y - 1.0)) * g
        gives |= GIVES_A
    if not (x == 0.0 and y >= 0.0):
        db[0] = (out * log(x)) * g
        gives |= GIVES_B
    return gives

# -- RELU: max(a, 0); NaN passes through, and so does its gradient (as in PyTorch)
cdef inline int _relu_fwd(double x, double* out) noexcept:
    out[0] = 0.0 if x < 0.0 else x
    return OK

cdef inline bint _relu_d(double x, double out, double c, double g, double* d) noexcept:
    d[0] = g
    return not out <= 0.0

# -- TANH
cdef inline int _tanh_fwd(double x, double* out) noexcept:
    out[0] = tanh(x)
    return OK

cdef inline bint _tanh_d(double x, double out, double c, double g, double* d) noexcept:
    d[0] = g * (1.0 - out * out)
    return True

# -- EXP
cdef inline int _exp_fwd(double x, double* out) noexcept:
    cdef double y = exp(x)
    if isinf(y) and isfinite(x):
        return ERR_EXP_RANGE
    out[0] = y
    return OK

cdef inline bint _exp_d(double x, double out, double c, double g, double* d) noexcept:
    d[0] = g * out
    return True

# -- LOG
cdef inline int _log_fwd(double x, double* out) noexcept:
    if not x > 0.0 and x == x:  # NaN passes through, as in math.log
        return ERR_LOG_DOMAIN
    out[0] = log(x)
    return OK

@cython.cdivision(True)
cdef inline bint _log_d(double x, double out, double c, double g, double* d) noexcept:
    d[0] = g / x
    return True

# -- SIGMOID: never overflows: exp() only ever sees a non-positive argument
@cython.cdivision(True)
cdef inline int _sigmoid_fwd(double x, double* out) noexcept:
    cdef double e
    if x >= 0.0:
        out[0] = 1.0 / (1.0 + exp(-x))
    else:
        e = exp(x)
        out[0] = e / (1.0 + e)
    return OK

cdef inline bint _sigmoid_d(double x, double out, double c, double g, double* d) noexcept:
    d[0] = g * (1.0 - out) * out
    return True

# -- SIN: an infinity has no sine (ValueError, as math.sin); NaN passes through
cdef inline int _sin_fwd(double x, double* out) noexcept:
    if isinf(x):
        return ERR_DOMAIN
    out[0] = sin(x)
    return OK

cdef inline bint _sin_d(double x, double out, double c, double g, double* d) noexcept:
    d[0] = g * cos(x)
    return True

# -- COS: an infinity has no cosine (ValueError, as math.cos); NaN passes through
cdef inline int _cos_fwd(double x, double* out) noexcept:
    if isinf(x):
        return ERR_DOMAIN
    out[0] = cos(x)
    return OK

cdef inline bint _cos_d(double x, double out, double c, double g, double* d) noexcept:
    d[0] = g * -sin(x)
    return True

# -- SQRT: a negative number has no real root (ValueError, as math.sqrt); d = g / (2 sqrt(x)),
#    as PyTorch computes it (inf at 0)
cdef inline int _sqrt_fwd(double x, double* out) noexcept:
    if x < 0.0:
        return ERR_DOMAIN
    out[0] = sqrt(x)
    return OK

@cython.cdivision(True)
cdef inline bint _sqrt_d(double x, double out, double c, double g, double* d) noexcept:
    d[0] = g / (2.0 * out)
    return True

# -- ABS: |a|; d = g * sign(a), whose sign is 0 at 0 and at NaN (as PyTorch's)
cdef inline int _abs_fwd(double x, double* out) noexcept:
    out[0] = fabs(x)
    return OK

cdef inline bint _abs_d(double x, double out, double c, double g, double* d) noexcept:
    d[0] = g * (1.0 if x > 0.0 else -1.0 if x < 0.0 else 0.0)
    return True

# -- SOFTPLUS: log(1 + exp(a)), and a itself above 20, as PyTorch's softplus(beta=1,
#    threshold=20) computes it: never overflows; d = g * sigmoid(a), g above 20
cdef inline int _softplus_fwd(double x, double* out) noexcept:
    out[0] = x if x > 20.0 else log1p(exp(x))
    return OK

@cython.cdivision(True)
cdef inline bint _softplus_d(double x, double out, double c, double g, double* d) noexcept:
    cdef double z
    if x > 20.0:
        d[0] = g
    else:
        z = exp(x)
        d[0] = g * z / (z + 1.0)
    return True

# -- GELU, the tanh form: a/2 * (1 + tanh(beta * (a + kappa a^3))), in PyTorch's order of
#    operations (gelu(approximate='tanh')),
#    with beta = sqrt(2 / pi) (M_SQRT2 * M_2_SQRTPI * 0.5) and kappa = 0.044715
cdef inline int _gelu_fwd(double x, double* out) noexcept:
    out[0] = 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * (x * x * x))))
    return OK

cdef inline bint _gelu_d(double x, double out, double c, double g, double* d) noexcept:
    cdef double x_sq = x * x
    cdef double t = tanh(0.7978845608028654 * (x + 0.044715 * (x_sq * x)))
    cdef double right = (0.5 * x) * (1.0 - t * t) * (0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x_sq))
    d[0] = g * (0.5 * (1.0 + t) + right)
    return True

# -- LEAKY_RELU: a if a > 0 else slope * a, the slope kept in _s.c; NaN passes through
cdef inline int _leaky_relu_fwd(double x, double slope, double* out) noexcept:
    out[0] = x if x > 0.0 else x * slope
    return OK

cdef inline bint _leaky_relu_d(double x, double out, double c, double g, double* d) noexcept:
    d[0] = g if x > 0.0 else g * c
    return True

# -- SUM: kids[0] + kids[1] + ..., as Python's sum() adds: 0 + a + b + ...
cdef inline int _sum_fwd(PyObject* node, double* out) noexcept:
    cdef PyObject** kids = (<Value>node)._s.kids
    cdef unsigned int i
    cdef double acc = 0.0
    for i in range((<Value>node)._n):
        acc += _val(kids[i])
    out[0] = acc
    return OK

cdef inline void _sum_bwd(PyObject* node, double g, _Mode* m) noexcept:
    cdef PyObject** kids = (<Value>node)._s.kids
    cdef unsigned int i
    for i in range((<Value>node)._n):
        _give(kids[i], g, m)

# -- DOT: bias + w0*x0 + w1*x1 + ..., micrograd's Neuron order; kids = w[0..n), x[0..n),
#    then the bias if HAS_BIAS; ReLU'd if RELU_OUT (one node for a ReLU neuron)
cdef inline int _dot_fwd(PyObject* node, double* out) noexcept:
    cdef PyObject** kids = (<Value>node)._s.kids
    cdef unsigned int i, n = (<Value>node)._n // 2
    cdef double acc = _val(kids[2 * n]) if (<Value>node)._flags & HAS_BIAS else 0.0
    for i in range(n):
        acc += _val(kids[i]) * _val(kids[n + i])
    if (<Value>node)._flags & RELU_OUT and acc < 0.0:
        acc = 0.0
    out[0] = acc
    return OK

cdef inline void _dot_bwd(PyObject* node, double g, _Mode* m) noexcept:
    cdef PyObject** kids = (<Value>node)._s.kids
    cdef unsigned int i, n = (<Value>node)._n // 2
    if (<Value>node)._flags & RELU_OUT and (<Value>node)._data <= 0.0:  # NaN passes, as RELU
        for i in range((<Value>node)._n):
            _give_none(kids[i], m)
        return
    for i in range(n):
        _give(kids[i], _val(kids[n + i]) * g, m)
        _give(kids[n + i], _val(kids[i]) * g, m)
    if (<Value>node)._flags & HAS_BIAS:
        _give(kids[2 * n], g, m)

# -- LOGSUMEXP: log(exp(k0) + exp(k1) + ...), shifted by the largest kid as PyTorch shifts it
#    (by 0 where that is infinite): never overflows; d(out)/d(k_i) = exp(k_i - out)
# The n-ary rules read their children's data through one of these: a node's kids, or the
# numbers of one row of a block (batch.pxi), so that both compute alike.
cdef struct _Kids:
    PyObject** kids

cdef struct _Lane:
    double* X         # a block's numbers (batch.pxi: _Program)
    _Arg* args        # the node's children there
    Py_ssize_t W      # the block's width
    Py_ssize_t l      # the row

ctypedef fused _From:
    _Kids
    _Lane

cdef inline double _kid(_From* f, unsigned int i) noexcept:
    if _From is _Kids:
        return _val(f.kids[i])
    else:
        return _lane_of(f.X, f.W, &f.args[i])[f.l * f.args[i].step]

cdef inline double _log_sum_exp(_From* kids, unsigned int n, double* shift,
                                bint finite_shift) noexcept:
    """log(sum(exp(kids[i] - shift))), shift the largest of the n kids' data (0 where that is
    infinite and finite_shift: torch.logsumexp's rule; log_softmax shifts by it all the same)."""
    cdef unsigned int i
    cdef double top = -INFINITY, s = 0.0
    for i in range(n):
        if _kid(kids, i) > top:
            top = _kid(kids, i)
    if finite_shift and isinf(top):
        top = 0.0
    for i in range(n):
        s += exp(_kid(kids, i) - top)
    shift[0] = top
    return log(s)

cdef inline int _logsumexp_fwd(PyObject* node, double* out) noexcept:
    cdef double shift
    cdef _Kids kids = _Kids((<Value>node)._s.kids)
    out[0] = _log_sum_exp(&kids, (<Value>node)._n, &shift, True) + shift
    return OK

cdef inline double _logsumexp_d(double x, double out, double g) noexcept:
    """What LOGSUMEXP gives a child of data x."""
    return g * exp(x - out)

cdef inline void _logsumexp_bwd(PyObject* node, double g, _Mode* m) noexcept:
    cdef PyObject** kids = (<Value>node)._s.kids
    cdef unsigned int i
    for i in range((<Value>node)._n):
        _give(kids[i], _logsumexp_d(_val(kids[i]), (<Value>node)._data, g), m)

# -- CROSS_ENTROPY: -log(softmax(logits)[t]), kids = logits[0..n), then t, the target class's
#    index held by a Value (a replay may change it), as PyTorch's cross_entropy computes it:
#    log_softmax, then the negative at t; d = g * (softmax_i - [i == t]), the target gets none
cdef inline int _index_in(double t, unsigned int n) noexcept:
    """t as an index of n entries, -1 where it is not one."""
    return <int>t if 0.0 <= t < n and t == floor(t) else -1

cdef inline int _target(PyObject* node) noexcept:
    """The index the last child holds (CROSS_ENTROPY's target, GATHER's index), -1 where it
    is not one of the other children's."""
    cdef unsigned int n = (<Value>node)._n - 1
    return _index_in(_val((<Value>node)._s.kids[n]), n)

cdef inline int _cross_entropy_of(_From* kids, unsigned int n, int t, double* out) noexcept:
    """The loss of n logits at target t."""
    cdef double shift, l
    if t < 0:
        return ERR_TARGET
    l = _log_sum_exp(kids, n, &shift, False)
    out[0] = -((_kid(kids, t) - shift) - l)
    return OK

cdef inline int _cross_entropy_fwd(PyObject* node, double* out) noexcept:
    cdef _Kids kids = _Kids((<Value>node)._s.kids)
    return _cross_entropy_of(&kids, (<Value>node)._n - 1, _target(node), out)

cdef inline double _cross_entropy_d(double x, double shift, double l, double g,
                                    bint target) noexcept:
    """What CROSS_ENTROPY gives the logit of data x (log(sum(exp(logits - shift))) = l)."""
    cdef double p = exp((x - shift) - l)
    return (-g) - p * (-g) if target else p * g

cdef inline void _cross_entropy_bwd(PyObject* node, double g, _Mode* m) noexcept:
    cdef PyObject** kids = (<Value>node)._s.kids
    cdef unsigned int i, n = (<Value>node)._n - 1
    cdef int t = _target(node)  # read now, as ops read their children's data
    cdef double shift, l
    cdef _Kids logits = _Kids(kids)
    _give_none(kids[n], m)
    if t < 0:  # set out of range since the node was computed: nothing to give
        for i in range(n):
            _give_none(kids[i], m)
        return
    l = _log_sum_exp(&logits, n, &shift, False)
    for i in range(n):
        _give(kids[i], _cross_entropy_d(_val(kids[i]), shift, l, g, <int>i == t), m)

# -- GATHER: table[i], kids = table[0..n), then i, an index held by a Value (a replay may
#    change it: an embedding's lookup); d = g to the entry read, nothing to the others
cdef inline int _gather_fwd(PyObject* node, double* out) noexcept:
    cdef int t = _target(node)
    if t < 0:
        return ERR_INDEX
    out[0] = _val((<Value>node)._s.kids[t])
    return OK

cdef inline void _gather_bwd(PyObject* node, double g, _Mode* m) noexcept:
    cdef PyObject** kids = (<Value>node)._s.kids
    cdef int t = _target(node)
    cdef unsigned int i
    for i in range((<Value>node)._n):
        if <int>i == t:
            _give(kids[i], g, m)
        else:
            _give_none(kids[i], m)

# -- GIVEN: Value(data, _children, _op, grads=(d0, d1, ...)) built by hand: the user gave the
#    value and d(node)/d(child i) = d_i, which Value.__init__ keeps as doubles right after the
#    n children in the node's array; never on the tape, like CUSTOM. Nothing recomputes it:
#    forward() refuses a graph holding one before it starts (order.pxi: _cached_order marks
#    such an order), so _eval has no branch for it (one more branch there made replay of
#    micrograd-built graphs 2x slower at equal instruction count).
cdef inline double* _given_grads(PyObject* node) noexcept:
    return <double*>((<Value>node)._s.kids + (<Value>node)._n)

cdef inline void _given_bwd(PyObject* node, double g, _Mode* m) noexcept:
    cdef PyObject** kids = (<Value>node)._s.kids
    cdef double* d = _given_grads(node)
    cdef unsigned int i
    for i in range((<Value>node)._n):
        _give(kids[i], d[i] * g, m)

# -- NET and PARAMS: a whole MLP as one node; their rules are in net.pxi. PARAMS gives
#    nothing (NET nodes give to its weights): _backprop has no branch for it.
# The NET rules are called through these pointers, set at import (net.pxi), so that the C compiler
# cannot inline them: with their loops inlined, _eval and _backprop grew too big for it to
# inline them in turn into the replay and backward loops, which then made a call a node
# (replaying upstream nn.py's graph, A/B in alternating processes: forward 1.66x and
# backward 1.16x slower). A NET node's work is hundreds of multiply-adds: its call is free.
cdef int (*_net_fwd_out_of_line)(PyObject*, double*) noexcept
cdef void (*_net_bwd_out_of_line_adding)(PyObject*, double, _Adding*) noexcept
cdef void (*_net_bwd_out_of_line_walking)(PyObject*, double, _Walking*) noexcept


# kernel: end


# ---------------------------------------------------------------------------
# The names Python sees (Value._op), then the dispatch on the op code.

# An op shows its own name in lower case (SIN: 'sin'), except micrograd's spellings ('',
# '+', '*', 'ReLU'; POW shows its exponent, '**2') and a hand-built node, which shows the
# _op it was given ('' as in micrograd).
_OP_NAMES = {int(op): op.name.lower() for op in Op}
_OP_NAMES.update({LEAF: '', CUSTOM: '', ADD: '+', SUB: '-', MUL: '*', DIV: '/', POW: '**',
                  POWV: '**', RELU: 'ReLU', GIVEN: '', NET: 'mlp'})


# _eval must be inlined into the per-node loops (the replay, Value.evaluate): called once a
# node, replaying upstream nn.py's graph took 1.66x as long (A/B in alternating processes).
# So must the dispatches on numbers, _eval1, _eval2, _grad1 and _grad2, and the node rules
# around them (_unary_bwd, _binary_bwd), into them: with a second caller (batch.pxi) the C
# compiler called them instead, and replaying upstream nn.py's
# graph took 13% more instructions (callgrind), a graph of mixed ops 5%.
# The C compiler weighs its size against a limit, which the NET branch tipped: forced here,
# by its C name (tests/test_kernels.py checks that Cython still gives it that name). So is
# _backprop's adding copy, into backward()'s loop over a cached order: the six ops of issue 22
# tipped it, and replaying upstream nn.py's graph took 19% more instructions (callgrind).
cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    static CYTHON_INLINE int __pyx_f_12micrograd_cy_6engine__eval(PyObject *) __attribute__((always_inline));
    struct __pyx_t_12micrograd_cy_6engine__Adding;
    static CYTHON_INLINE void __pyx_fuse_0__pyx_f_12micrograd_cy_6engine__backprop(PyObject *, struct __pyx_t_12micrograd_cy_6engine__Adding *) __attribute__((always_inline));
    struct __pyx_t_12micrograd_cy_6engine__Walking;
    static CYTHON_INLINE void __pyx_fuse_0__pyx_f_12micrograd_cy_6engine__unary_bwd(PyObject *, unsigned char, double, struct __pyx_t_12micrograd_cy_6engine__Adding *) __attribute__((always_inline));
    static CYTHON_INLINE void __pyx_fuse_1__pyx_f_12micrograd_cy_6engine__unary_bwd(PyObject *, unsigned char, double, struct __pyx_t_12micrograd_cy_6engine__Walking *) __attribute__((always_inline));
    static CYTHON_INLINE void __pyx_fuse_0__pyx_f_12micrograd_cy_6engine__binary_bwd(PyObject *, unsigned char, double, struct __pyx_t_12micrograd_cy_6engine__Adding *) __attribute__((always_inline));
    static CYTHON_INLINE void __pyx_fuse_1__pyx_f_12micrograd_cy_6engine__binary_bwd(PyObject *, unsigned char, double, struct __pyx_t_12micrograd_cy_6engine__Walking *) __attribute__((always_inline));
    static CYTHON_INLINE int __pyx_f_12micrograd_cy_6engine__eval1(unsigned char, double, double, double *) __attribute__((always_inline));
    static CYTHON_INLINE int __pyx_f_12micrograd_cy_6engine__eval2(unsigned char, double, double, double *) __attribute__((always_inline));
    static CYTHON_INLINE int __pyx_f_12micrograd_cy_6engine__grad1(unsigned char, double, double, double, double, double *) __attribute__((always_inline));
    static CYTHON_INLINE int __pyx_f_12micrograd_cy_6engine__grad2(unsigned char, double, double, double, double, double *, double *) __attribute__((always_inline));
    #endif
    """


# kernel: begin
cdef inline bint _grad1(unsigned char op, double x, double out, double c, double g,
                        double* d) noexcept:
    """The chain rule of a one-child op as numbers: whether it gives its child anything, d."""
    if op == RELU:
        return _relu_d(x, out, c, g, d)
    if op == NEG:
        return _neg_d(x, out, c, g, d)
    if op == POW:
        return _pow_d(x, out, c, g, d)
    if op == TANH:
        return _tanh_d(x, out, c, g, d)
    if op == EXP:
        return _exp_d(x, out, c, g, d)
    if op == LOG:
        return _log_d(x, out, c, g, d)
    if op == SIGMOID:
        return _sigmoid_d(x, out, c, g, d)
    if op == SIN:
        return _sin_d(x, out, c, g, d)
    if op == COS:
        return _cos_d(x, out, c, g, d)
    if op == SQRT:
        return _sqrt_d(x, out, c, g, d)
    if op == ABS:
        return _abs_d(x, out, c, g, d)
    if op == SOFTPLUS:
        return _softplus_d(x, out, c, g, d)
    if op == GELU:
        return _gelu_d(x, out, c, g, d)
    if op == LEAKY_RELU:
        return _leaky_relu_d(x, out, c, g, d)
    return False


cdef inline int _grad2(unsigned char op, double x, double y, double out, double g, double* da,
                       double* db) noexcept:
    """The chain rule of a two-child op as numbers: GIVES_A | GIVES_B, da and db."""
    if op == MUL:
        return _mul_d(x, y, out, g, da, db)
    if op == ADD:
        return _add_d(x, y, out, g, da, db)
    if op == SUB:
        return _sub_d(x, y, out, g, da, db)
    if op == DIV:
        return _div_d(x, y, out, g, da, db)
    if op == POWV:
        return _powv_d(x, y, out, g, da, db)
    return 0


cdef inline void _unary_bwd(PyObject* node, unsigned char op, double g, _Mode* m) noexcept:
    cdef double d
    if _grad1(op, _val(_a(node)), (<Value>node)._data, (<Value>node)._s.c, g, &d):
        _give(_a(node), d, m)
    else:
        _give_none(_a(node), m)


cdef inline void _binary_bwd(PyObject* node, unsigned char op, double g, _Mode* m) noexcept:
    cdef PyObject* a = _a(node)
    cdef PyObject* b = _b(node)
    cdef double da, db
    cdef int gives = _grad2(op, _val(a), _val(b), (<Value>node)._data, g, &da, &db)
    if gives & GIVES_A:
        _give(a, da, m)
    else:
        _give_none(a, m)
    if gives & GIVES_B:
        _give(b, db, m)
    else:
        _give_none(b, m)


@cython.cdivision(True)
cdef inline int _eval1(unsigned char op, double x, double c, double* out) noexcept:
    """out = op(x) for the one-child ops; c is POW's exponent. Returns an Err code."""
    cdef int err = OK
    if op == NEG:
        err = _neg_fwd(x, out)
    elif op == POW:
        err = _pow_fwd(x, c, out)
    elif op == RELU:
        err = _relu_fwd(x, out)
    elif op == TANH:
        err = _tanh_fwd(x, out)
    elif op == EXP:
        err = _exp_fwd(x, out)
    elif op == LOG:
        err = _log_fwd(x, out)
    elif op == SIGMOID:
        err = _sigmoid_fwd(x, out)
    elif op == SIN:
        err = _sin_fwd(x, out)
    elif op == COS:
        err = _cos_fwd(x, out)
    elif op == SQRT:
        err = _sqrt_fwd(x, out)
    elif op == ABS:
        err = _abs_fwd(x, out)
    elif op == SOFTPLUS:
        err = _softplus_fwd(x, out)
    elif op == GELU:
        err = _gelu_fwd(x, out)
    elif op == LEAKY_RELU:
        err = _leaky_relu_fwd(x, c, out)
    return err


@cython.cdivision(True)
cdef inline int _eval2(unsigned char op, double x, double y, double* out) noexcept:
    """out = x op y for the two-child ops. Returns an Err code."""
    cdef int err = OK
    if op == ADD:
        err = _add_fwd(x, y, out)
    elif op == SUB:
        err = _sub_fwd(x, y, out)
    elif op == MUL:
        err = _mul_fwd(x, y, out)
    elif op == DIV:
        err = _div_fwd(x, y, out)
    elif op == POWV:
        err = _powv_fwd(x, y, out)
    return err


cdef inline int _eval(PyObject* node) noexcept:
    """Recompute node's data from its children. Returns an Err code, OK when fine."""
    cdef unsigned char op = (<Value>node)._opcode
    cdef double* out = &(<Value>node)._data
    cdef int err = OK
    # MUL and ADD first, as in _backprop below, and inlined: through the call and the
    # switch, replaying upstream nn.py's graph took 4.5 ns a node, with these 2.5
    if op == MUL:
        return _mul_fwd(_val(_a(node)), _val(_b(node)), out)
    if op == ADD:
        return _add_fwd(_val(_a(node)), _val(_b(node)), out)
    if CUSTOM < op < SUM:  # the other ops of one or two children
        if (<Value>node)._n == 2:
            return _eval2(op, _val(_a(node)), _val(_b(node)), out)
        return _eval1(op, _val(_a(node)), (<Value>node)._s.c, out)
    if op == LEAF or op == CUSTOM or op == PARAMS:  # PARAMS: nothing to compute, NETs read it
        pass
    elif op == SUM:
        err = _sum_fwd(node, out)
    elif op == DOT:
        err = _dot_fwd(node, out)
    elif op == LOGSUMEXP:
        err = _logsumexp_fwd(node, out)
    elif op == CROSS_ENTROPY:
        err = _cross_entropy_fwd(node, out)
    elif op == GATHER:
        err = _gather_fwd(node, out)
    elif op == NET:
        err = _net_fwd_out_of_line(node, out)
    return err


cdef inline void _backprop(PyObject* node, _Mode* m) noexcept:
    """Give d(node)/d(child) * node.grad to each child.

    _Walking: every child is also reached, gradient or not, so that its grad starts at 0
    and the walk knows to visit it.
    """
    cdef unsigned char op = (<Value>node)._opcode
    cdef double g = (<Value>node)._grad
    # MUL, ADD and RELU each get a branch of their own before the switch: most nodes
    # Python builds are one of them, and these branches are predicted far better than the
    # switch's indirect jump, whose misses stall on a node just read from memory (MUL and
    # ADD alone took the walk of a new reference graph from 10.0 to 8.4 ns a node).
    if op == MUL:
        _binary_bwd(node, MUL, g, m)
        return
    if op == ADD:
        _binary_bwd(node, ADD, g, m)
        return
    if op == RELU:  # the third most common, in any MLP
        _unary_bwd(node, RELU, g, m)
        return
    if op < SUM:  # the other ops of one or two children
        if (<Value>node)._n == 2:
            _binary_bwd(node, op, g, m)
        else:
            _unary_bwd(node, op, g, m)
    elif op == SUM:
        _sum_bwd(node, g, m)
    elif op == DOT:
        _dot_bwd(node, g, m)
    elif op == LOGSUMEXP:
        _logsumexp_bwd(node, g, m)
    elif op == CROSS_ENTROPY:
        _cross_entropy_bwd(node, g, m)
    elif op == GATHER:
        _gather_bwd(node, g, m)
    elif op == GIVEN:
        _given_bwd(node, g, m)
    elif op == NET:
        if _Mode is _Walking:
            _net_bwd_out_of_line_walking(node, g, m)
        else:
            _net_bwd_out_of_line_adding(node, g, m)
# kernel: end
