# cython: language_level=3, embedsignature=True
# cython: boundscheck=False, wraparound=False, initializedcheck=False
"""A compiled scalar autograd engine with micrograd's API.

A Value holds a double and its gradient; operators build a DAG whose nodes own
references to their children only, in slabs of one cache line a node, and append
each node to a tape in build order. backward() walks the tape down from the root,
in one C loop that dispatches on each node's op code; graphs with hand-built nodes
are ordered by a depth-first search on an explicit stack instead.
"""
cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyTypeObject
from cpython.ref cimport Py_INCREF, PyObject
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_SIZE, PySequence_Fast_ITEMS
from libc.math cimport exp, floor, isfinite, isinf, log, pow, tanh

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
    Py_ssize_t Py_REFCNT(PyObject*)
    void _decref "Py_DECREF"(PyObject*)
    PyTypeObject* Py_TYPE(PyObject*)
    unsigned long Py_TPFLAGS_HEAPTYPE

cdef extern from *:
    """
    #define mgcy_take(o) (o)
    """
    Value _take "mgcy_take"(PyObject*)  # the caller's reference to a Value becomes ours

cdef object _Real = numbers.Real
cdef object _Integral = numbers.Integral


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
    return 0


# kernel: begin (every line up to "kernel: end" must be pure C; tests/test_kernels.py)
cdef inline int _pow(double x, double y, double* out) noexcept:
    # Python's float ** float, minus the complex results
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


@cython.cdivision(True)
cdef inline double _sigmoid(double x) noexcept:
    # never overflows: exp() only ever sees a non-positive argument
    cdef double e
    if x >= 0.0:
        return 1.0 / (1.0 + exp(-x))
    e = exp(x)
    return e / (1.0 + e)


# ---------------------------------------------------------------------------
# The kernels: one node's forward value and one node's chain rule.

# Children are raw PyObject* to Values; these read and update them without
# touching reference counts.

cdef inline double _data(PyObject* node) noexcept:
    return (<Value>node).data

cdef inline double* _gradp(PyObject* node) noexcept:
    return &(<Value>node).grad

cdef inline unsigned char* _flagsp(PyObject* node) noexcept:
    return &(<Value>node)._flags

cdef inline bint _nary(unsigned char op) noexcept:
    return op == SUM or op == DOT or op == CUSTOM

cdef inline PyObject** _children(PyObject* node) noexcept:
    """The node's _n children: an array of its own for n-ary ops, else _a and _s.b."""
    if _nary((<Value>node)._opcode):
        return (<Value>node)._s.kids
    return &(<Value>node)._a  # _s follows _a: checked at import


@cython.cdivision(True)
cdef inline int _eval1(unsigned char op, double x, double c, double* out) noexcept:
    """out = op(x) for the one-child ops; c is POW's exponent. Returns an Err code."""
    cdef double y
    if op == NEG:
        out[0] = -x
    elif op == POW:
        return _pow(x, c, out)
    elif op == RELU:
        out[0] = 0.0 if x < 0.0 else x
    elif op == TANH:
        out[0] = tanh(x)
    elif op == EXP:
        y = exp(x)
        if isinf(y) and isfinite(x):
            return ERR_EXP_RANGE
        out[0] = y
    elif op == LOG:
        if not x > 0.0 and x == x:  # NaN passes through, as in math.log
            return ERR_LOG_DOMAIN
        out[0] = log(x)
    elif op == SIGMOID:
        out[0] = _sigmoid(x)
    return OK


@cython.cdivision(True)
cdef inline int _eval2(unsigned char op, double x, double y, double* out) noexcept:
    """out = x op y for the two-child ops. Returns an Err code."""
    if op == ADD:
        out[0] = x + y
    elif op == SUB:
        out[0] = x - y
    elif op == MUL:
        out[0] = x * y
    elif op == DIV:
        if y == 0.0:
            return ERR_DIV_ZERO
        out[0] = x / y
    elif op == POWV:
        return _pow(x, y, out)
    return OK


cdef int _eval(PyObject* node) noexcept:
    """Recompute node's data from its children. Returns an Err code, OK when fine."""
    cdef PyObject** kids = (<Value>node)._s.kids
    cdef unsigned int i, n = (<Value>node)._n
    cdef unsigned char op = (<Value>node)._opcode
    cdef double* out = &(<Value>node).data
    cdef double acc
    if op == LEAF or op == CUSTOM:
        return OK
    elif op == SUM:
        acc = 0.0  # as Python's sum(): 0 + a + b + ...
        for i in range(n):
            acc += _data(kids[i])
        out[0] = acc
    elif op == DOT:
        n = n // 2
        acc = _data(kids[2 * n]) if (<Value>node)._flags & HAS_BIAS else 0.0
        for i in range(n):  # bias + w0*x0 + w1*x1 + ..., micrograd's Neuron order
            acc += _data(kids[i]) * _data(kids[n + i])
        if (<Value>node)._flags & RELU_OUT and acc < 0.0:
            acc = 0.0
        out[0] = acc
    elif n == 2:
        return _eval2(op, _data((<Value>node)._a), _data((<Value>node)._s.b), out)
    else:
        return _eval1(op, _data((<Value>node)._a), (<Value>node)._s.c, out)
    return OK


cdef inline bint _first_reach(PyObject* c, Py_ssize_t* pending) noexcept:
    """In a walk: whether this is the first edge to reach c (then c is PLACED and pending)."""
    cdef unsigned char* f = _flagsp(c)
    if f[0] & (ON_TAPE | PLACED) != ON_TAPE:
        return False
    f[0] |= PLACED
    pending[0] += 1
    return True


# _backprop comes in two copies (a fused type): one adds into the children's grads, one
# also reaches them, for _walk. Each is inlined where it runs.
cdef struct _Adding:
    char unused
cdef struct _Walking:
    Py_ssize_t pending  # nodes reached and not yet visited

ctypedef fused _Mode:
    _Adding
    _Walking


cdef inline void _give(PyObject* c, double d, _Mode* m) noexcept:
    """Add d into c's grad. In a walk the first edge to reach c replaces the grad it kept
    from an earlier backward: 0.0 + d, exactly what zeroing then adding gives."""
    if _Mode is _Walking:
        if _first_reach(c, &m.pending):
            _gradp(c)[0] = 0.0 + d
            return
    _gradp(c)[0] += d


cdef inline void _give_none(PyObject* c, _Mode* m) noexcept:
    """An edge the chain rule gives nothing through: a walk still reaches c, grad 0."""
    if _Mode is _Walking:
        if _first_reach(c, &m.pending):
            _gradp(c)[0] = 0.0


@cython.cdivision(True)
cdef inline void _backprop(PyObject* node, _Mode* m) noexcept:
    """Add d(node)/d(child) * node.grad into each child's grad (PyTorch's rules at the edges).

    _Walking: every child is also reached, gradient or not, so that its grad starts at 0
    and the walk knows to visit it.
    """
    cdef PyObject* a = (<Value>node)._a
    cdef PyObject* b
    cdef PyObject** kids
    cdef unsigned int i, n
    cdef unsigned char op = (<Value>node)._opcode
    cdef double g = (<Value>node).grad, out, c, x, y
    # MUL, ADD and RELU each get a branch of their own before the switch: most nodes
    # Python builds are one of them, and these branches are predicted far better than the
    # switch's indirect jump, whose misses stall on a node just read from memory (MUL and
    # ADD alone took the walk of a new reference graph from 10.0 to 8.4 ns a node).
    if op == MUL:
        b = (<Value>node)._s.b
        _give(a, _data(b) * g, m)
        _give(b, _data(a) * g, m)
        return
    if op == ADD:
        _give(a, g, m)
        _give((<Value>node)._s.b, g, m)
        return
    if op == RELU:  # the third most common, in any MLP
        if (<Value>node).data > 0.0:
            _give(a, g, m)
        else:
            _give_none(a, m)
        return
    if op == SUB:
        _give(a, g, m)
        _give((<Value>node)._s.b, -g, m)
    elif op == DIV:
        y = _data((<Value>node)._s.b)
        _give(a, g / y, m)
        _give((<Value>node)._s.b, -g * ((<Value>node).data / y), m)
    elif op == NEG:
        _give(a, -g, m)
    elif op == POW:
        c = (<Value>node)._s.c
        if c != 0.0:  # d(x**0)/dx is 0 everywhere, 0 included
            _give(a, (c * pow(_data(a), c - 1.0)) * g, m)
        else:
            _give_none(a, m)
    elif op == POWV:
        b = (<Value>node)._s.b
        x = _data(a)
        y = _data(b)
        if y != 0.0:
            _give(a, (y * pow(x, y - 1.0)) * g, m)
        else:
            _give_none(a, m)
        if not (x == 0.0 and y >= 0.0):
            _give(b, ((<Value>node).data * log(x)) * g, m)
        else:
            _give_none(b, m)
    elif op == TANH:
        out = (<Value>node).data
        _give(a, g * (1.0 - out * out), m)
    elif op == EXP:
        _give(a, g * (<Value>node).data, m)
    elif op == LOG:
        _give(a, g / _data(a), m)
    elif op == SIGMOID:
        out = (<Value>node).data
        _give(a, g * (1.0 - out) * out, m)
    elif op == SUM:
        kids = (<Value>node)._s.kids
        for i in range((<Value>node)._n):
            _give(kids[i], g, m)
    elif op == DOT:
        kids = (<Value>node)._s.kids
        if (<Value>node)._flags & RELU_OUT and not (<Value>node).data > 0.0:
            if _Mode is _Walking:
                for i in range((<Value>node)._n):
                    _give_none(kids[i], m)
            return
        n = (<Value>node)._n // 2
        for i in range(n):
            _give(kids[i], _data(kids[n + i]) * g, m)
            _give(kids[n + i], _data(kids[i]) * g, m)
        if (<Value>node)._flags & HAS_BIAS:
            _give(kids[2 * n], g, m)
    elif _Mode is _Walking and op == CUSTOM:  # no rule: its children are reached, grad 0
        # (not met today: while a hand-built node lives, graphs take the depth-first order)
        kids = (<Value>node)._s.kids
        for i in range((<Value>node)._n):
            _give_none(kids[i], m)
# kernel: end


# ---------------------------------------------------------------------------
# Topological order by the tape (_walk) or, for graphs with hand-built nodes, by a
# depth-first search on an explicit stack (_order): no depth is too deep either way.

cdef inline int _grow(void** buf, Py_ssize_t* cap, size_t item, Py_ssize_t first=64) noexcept:
    """Double buf's capacity, or give it `first` items if it has none; -1 if no memory."""
    cdef Py_ssize_t new_cap = cap[0] * 2 if cap[0] else first
    cdef void* p = PyMem_Realloc(buf[0], new_cap * item)
    if p == NULL:
        return -1
    buf[0] = p
    cap[0] = new_cap
    return 0


cdef inline void _give_back(void** buf, Py_ssize_t* cap) noexcept:
    """Free buf if a huge graph grew it past 1M items; _grow starts it again from nothing."""
    if cap[0] > (1 << 20):
        PyMem_Free(buf[0])
        buf[0] = NULL
        cap[0] = 0


cdef PyObject** _fit(PyObject** order, Py_ssize_t n) noexcept:
    """order cut down to its n entries (kept as long as its root); as is if realloc fails."""
    cdef PyObject** p = <PyObject**>PyMem_Realloc(order, max(n, 1) * sizeof(PyObject*))
    return order if p == NULL else p


cdef inline void _place(PyObject* node, PyObject** topo, Py_ssize_t* n) noexcept:
    """Append node to the order; interior grads start each backward at 0."""
    _flagsp(node)[0] |= EXPANDED | PLACED
    if (<Value>node)._opcode > CUSTOM:
        _gradp(node)[0] = 0.0
    topo[n[0]] = node
    n[0] += 1


cdef inline void _unmark(PyObject* node) noexcept:
    _flagsp(node)[0] &= ~(EXPANDED | PLACED)


# Sizes the last ordering needed: a training loop builds graphs of one size, so the
# next ordering allocates once instead of growing.
cdef Py_ssize_t _topo_hint = 256
cdef Py_ssize_t _stack_hint = 64


cdef Py_ssize_t _order(Value root, PyObject*** out) except -1:
    """Fill out[0] with root's graph, children before parents; returns the count.

    Depth-first: a node is EXPANDED when first popped (its unplaced children are pushed
    above it) and PLACED when popped again. A child may be pushed twice; the second copy
    finds it PLACED and is dropped. In a DAG an EXPANDED child is always PLACED already.
    The marks stay on the nodes: the first pass over the order (backward or forward, told
    by _Aux.marked) must clear them, before anything else can order a graph.
    """
    global _topo_hint, _stack_hint
    cdef Py_ssize_t n = 0, cap = _topo_hint, sp = 1, scap = _stack_hint, i
    cdef PyObject** topo = <PyObject**>PyMem_Malloc(cap * sizeof(PyObject*))
    cdef PyObject** stack = <PyObject**>PyMem_Malloc(scap * sizeof(PyObject*))
    cdef PyObject* node
    cdef PyObject* c
    cdef PyObject** kids
    cdef unsigned int k, nk
    cdef unsigned char* f
    cdef bint failed = False
    if topo == NULL or stack == NULL:
        PyMem_Free(topo)
        PyMem_Free(stack)
        raise MemoryError()
    stack[0] = <PyObject*>root
    # kernel: begin
    while sp:
        node = stack[sp - 1]
        f = _flagsp(node)
        if f[0] & PLACED:
            sp -= 1
            continue
        if f[0] & EXPANDED:  # its children are placed: the node follows them
            sp -= 1
            if n == cap and _grow(<void**>&topo, &cap, sizeof(PyObject*)) < 0:
                failed = True
                break
            _place(node, topo, &n)
            continue
        f[0] |= EXPANDED
        kids = _children(node)
        nk = (<Value>node)._n
        if sp + nk > scap:
            while sp + nk > scap:
                if _grow(<void**>&stack, &scap, sizeof(PyObject*)) < 0:
                    failed = True
                    break
            if failed:
                break
        if n + nk + 1 > cap:
            while n + nk + 1 > cap:
                if _grow(<void**>&topo, &cap, sizeof(PyObject*)) < 0:
                    failed = True
                    break
            if failed:
                break
        for k in range(nk):
            c = kids[k]
            if _flagsp(c)[0] & PLACED:
                continue
            if (<Value>c)._n == 0:  # childless: placed at once
                _place(c, topo, &n)
            else:
                stack[sp] = c
                sp += 1
        if stack[sp - 1] == node:  # no child pushed: all are placed, and so is the node
            sp -= 1
            _place(node, topo, &n)
    # kernel: end
    PyMem_Free(stack)
    if failed:
        for i in range(n):
            _unmark(topo[i])
        for i in range(sp):
            _unmark(stack[i])
        PyMem_Free(topo)
        raise MemoryError("out of memory ordering the graph")
    _topo_hint = max(256, min(n, 1 << 20))
    _stack_hint = max(64, min(scap, 1 << 20))
    out[0] = _fit(topo, n) if cap > n else topo
    return n


cdef inline Py_ssize_t _tape_index(Value root) noexcept:
    """Where root's entry is: its newest, searched from the top (roots are usually recent)."""
    cdef Py_ssize_t i = _ntape - 1
    while _tape[i] != <PyObject*>root:
        i -= 1
    return i


cdef inline bint _on_tape(Value root) noexcept:
    """Whether root's whole graph is on the tape: root is, and no node off it is alive."""
    return root._flags & ON_TAPE and _offtape_live == 0


# kernel: begin
cdef inline PyObject* _next_reached(PyObject** tape, Py_ssize_t* i) noexcept:
    """The next node down the tape from i[0] that the walk has reached, its mark cleared;
    NULL below the bottom."""
    cdef PyObject* node
    while i[0] >= 0:
        if i[0] >= PREFETCH:
            _prefetch(tape[i[0] - PREFETCH])
        node = tape[i[0]]
        i[0] -= 1
        if _flagsp(node)[0] & PLACED:  # else another graph's node, or a stale entry
            _flagsp(node)[0] &= ~PLACED
            return node
    return NULL
# kernel: end


cdef Py_ssize_t _walk(Value root, Py_ssize_t top, PyObject** topo) noexcept:
    """Walk root's graph down the tape from top, root's entry: with topo NULL, backward()
    itself; else its order.

    A node is PLACED when a parent reaches it: its grad starts at 0 and it joins the
    pending count. The walk meets each PLACED node after all its parents (they were built
    later) and stops when no node is pending. Without topo it applies each node's chain
    rule (root.grad is 1); with topo (room for top + 1 entries) it writes the
    interior nodes there, children first, as the depth-first order would, but in build
    order, which is memory order in the slabs. Returns the number written.
    """
    cdef Py_ssize_t i = top, n = 0, lo, hi
    cdef _Walking walk
    cdef PyObject** tape = _tape  # a local: the flag stores could alias the global
    cdef PyObject* node
    cdef PyObject** kids
    cdef unsigned int k
    walk.pending = 1
    root._flags |= PLACED
    # kernel: begin
    if topo == NULL:  # backward(): reach the children as the chain rule gives to them
        root.grad = 1.0
        while walk.pending:
            node = _next_reached(tape, &i)
            if node == NULL:
                break
            _backprop(node, &walk)
            walk.pending -= 1
        return 0
    root.grad = 0.0
    while walk.pending:
        node = _next_reached(tape, &i)
        if node == NULL:
            break
        kids = _children(node)
        for k in range((<Value>node)._n):
            _give_none(kids[k], &walk)  # reached, gradient or not: replay needs them all
        topo[n] = node
        n += 1
        walk.pending -= 1
    lo = 0
    hi = n - 1
    while lo < hi:  # parents came first: turn the order around
        node = topo[lo]
        topo[lo] = topo[hi]
        topo[hi] = node
        lo += 1
        hi -= 1
    # kernel: end
    return n


# ---------------------------------------------------------------------------
# Freeing: Value is not tracked by the cyclic GC (a DAG of child references
# cannot form a cycle), so CPython's trashcan does not guard deep chains.
# A node that is the last owner of a child hands it to this stack instead of
# releasing it recursively; the outermost dealloc drains it.

cdef PyObject** _pending = NULL
cdef Py_ssize_t _npending = 0
cdef Py_ssize_t _cap_pending = 0
cdef bint _draining = False


cdef inline void _release(PyObject* child) noexcept:
    global _pending, _npending, _cap_pending
    if child == NULL:
        return
    if Py_REFCNT(child) > 1:
        _decref(child)  # someone else still holds it: no dealloc here
        return
    if _npending == _cap_pending and _grow(<void**>&_pending, &_cap_pending,
                                           sizeof(PyObject*), 1024) < 0:
        _decref(child)  # out of memory: recurse, as a GC-less type would
        return
    _pending[_npending] = child  # our reference moves to the stack
    _npending += 1


# ---------------------------------------------------------------------------
# Turning Python numbers into doubles

cdef int _real(object x, double* out) except -1:
    """Store x as a double and return 1 if x is a real number, else return 0."""
    if type(x) is float:
        out[0] = <double>x
        return 1
    if isinstance(x, (int, float)) or isinstance(x, _Real):
        out[0] = float(x)
        return 1
    return 0


cdef double _data_arg(object x) except? -1.0:
    cdef double d
    if not _real(x, &d):
        raise TypeError(f"Value data must be a real number (int, float or a numpy "
                        f"scalar), not {type(x).__name__!r}")
    return d


# ---------------------------------------------------------------------------
# Allocating and freeing nodes. Nodes live in slabs: 64 KB blocks aligned to their
# size, each a header and 1,021 node slots of one cache line each. A slab hands out
# its lowest free slot first, so a graph built after the last one was freed lies in
# memory in the order it was built, and backward() walks it nearly sequentially.
# (With a plain freelist the nodes come back in the order they were freed: the
# ordering and backward passes then miss the cache on most nodes.)
# Our own tp_dealloc, installed at import, returns a node to its slab. It need not
# save and restore the exception state around every node, as Cython's generated
# dealloc does: freeing a Value runs no Python code.

cdef extern from *:
    """
    /* A block of `size` bytes aligned to `size` (a power of two), straight from the OS:
       freeing it gives the memory back at once, wherever it lies. */
    #ifdef _WIN32
    #include <malloc.h>
    static void *mgcy_slab_alloc(size_t size) { return _aligned_malloc(size, size); }
    static void mgcy_slab_free(void *p, size_t size) { (void)size; _aligned_free(p); }
    #else
    #include <stdint.h>
    #include <sys/mman.h>
    static void *mgcy_slab_alloc(size_t size) {
        char *p = (char *)mmap(NULL, 2 * size, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        char *a;
        if (p == (char *)MAP_FAILED)
            return NULL;
        a = (char *)(((uintptr_t)p + size - 1) & ~(uintptr_t)(size - 1));
        if (a > p)
            munmap(p, (size_t)(a - p));
        if (a + size < p + 2 * size)
            munmap(a + size, (size_t)(p + 2 * size - (a + size)));
        return a;
    }
    static void mgcy_slab_free(void *p, size_t size) { munmap(p, size); }
    #endif
    #if defined(__GNUC__) || defined(__clang__)
    #define mgcy_ctz(x) __builtin_ctzll(x)
    #else
    static int mgcy_ctz(unsigned long long x) { int n = 0; while (!(x & 1)) { x >>= 1; n++; } return n; }
    #endif
    """
    void* _slab_alloc "mgcy_slab_alloc"(size_t) noexcept nogil
    void _slab_free "mgcy_slab_free"(void*, size_t) noexcept nogil
    int _ctz "mgcy_ctz"(unsigned long long) noexcept nogil

cdef extern from "Python.h":
    int PyTraceMalloc_Track(unsigned int domain, size_t ptr, size_t size)
    int PyTraceMalloc_Untrack(unsigned int domain, size_t ptr)
    void Py_SET_TYPE(PyObject*, PyTypeObject*)
    void Py_SET_REFCNT(PyObject*, Py_ssize_t)

cdef enum:
    SLAB_BYTES = 65536
    NODE_BYTES = 64            # Value's size: checked at import, else slabs stay unused
    HEAD_SLOTS = 3             # the _Slab header fills the first three slots
    SLAB_NODES = 1021          # SLAB_BYTES / NODE_BYTES - HEAD_SLOTS
    KEEP_SLABS = 128           # empty slabs kept for reuse: 8 MB, two reference graphs

cdef struct _Slab:
    unsigned long long free[16]  # bit i set: slot i is free (slots 0-2 are the header)
    unsigned int nfree
    unsigned int hint            # no word of free below this one has a bit set
    Py_ssize_t index             # in _slabs

cdef _Slab** _slabs = NULL
cdef Py_ssize_t _nslabs = 0, _cap_slabs = 0
cdef _Slab* _cur = NULL          # where the next node comes from
cdef Py_ssize_t _free_total = 0  # free slots in all slabs
cdef Py_ssize_t _empty_slabs = 0 # slabs with every slot free
cdef bint _slabs_ok = False      # set at import when Value fits a slot
cdef Py_ssize_t _aux_offset      # where a Value keeps _aux: free slots hold None there


cdef _Slab* _new_slab() noexcept:
    """A slab of free slots, each already a dead Value (type set, _aux None); NULL if no memory."""
    global _slabs, _nslabs, _cap_slabs, _free_total, _empty_slabs
    cdef _Slab* s
    cdef int i
    cdef PyObject* o
    if _nslabs == _cap_slabs and _grow(<void**>&_slabs, &_cap_slabs, sizeof(_Slab*)) < 0:
        return NULL
    s = <_Slab*>_slab_alloc(SLAB_BYTES)
    if s == NULL:
        return NULL
    PyTraceMalloc_Track(0, <size_t>s, SLAB_BYTES)  # so tracemalloc counts the nodes
    for i in range(16):
        s.free[i] = ~0ULL
    s.free[0] <<= HEAD_SLOTS
    s.nfree = SLAB_NODES
    s.hint = 0
    s.index = _nslabs
    for i in range(HEAD_SLOTS, HEAD_SLOTS + SLAB_NODES):
        o = <PyObject*>(<char*>s + i * NODE_BYTES)
        Py_SET_TYPE(o, <PyTypeObject*>Value)
        (<PyObject**>(<char*>o + _aux_offset))[0] = <PyObject*>None
        Py_INCREF(None)
    _slabs[_nslabs] = s
    _nslabs += 1
    _free_total += SLAB_NODES
    _empty_slabs += 1
    return s


cdef void _free_slab(_Slab* s) noexcept:
    cdef int i
    for i in range(SLAB_NODES):
        _decref(<PyObject*>None)
    PyTraceMalloc_Untrack(0, <size_t>s)
    _slab_free(s, SLAB_BYTES)


cdef _Slab* _slab_with_room() noexcept:
    """The next slab, in slab order, with a free slot; a new one if none has; NULL if no memory."""
    cdef Py_ssize_t i, first = 0 if _cur == NULL else _cur.index + 1
    if _free_total > 0:
        for i in range(first, first + _nslabs):
            if _slabs[i % _nslabs].nfree:
                return _slabs[i % _nslabs]
    return _new_slab()


cdef inline PyObject* _slab_pop() noexcept:
    """A free slot, the lowest of the current slab; NULL if there is no memory."""
    global _cur, _free_total, _empty_slabs
    cdef _Slab* s = _cur
    cdef unsigned int w, i
    if s == NULL or s.nfree == 0:
        s = _slab_with_room()
        if s == NULL:
            return NULL
        _cur = s
    w = s.hint
    while s.free[w] == 0:
        w += 1
    s.hint = w
    i = (w << 6) | _ctz(s.free[w])
    s.free[w] &= s.free[w] - 1
    if s.nfree == SLAB_NODES:
        _empty_slabs -= 1
    s.nfree -= 1
    _free_total -= 1
    return <PyObject*>(<char*>s + i * NODE_BYTES)


cdef inline void _slab_push(PyObject* o) noexcept:
    global _free_total, _empty_slabs
    cdef _Slab* s = <_Slab*>(<size_t>o & ~(<size_t>SLAB_BYTES - 1))
    cdef size_t i = (<size_t>o - <size_t>s) // NODE_BYTES
    cdef unsigned int w = i >> 6
    s.free[w] |= 1ULL << (i & 63)
    if w < s.hint:
        s.hint = w
    s.nfree += 1
    _free_total += 1
    if s.nfree == SLAB_NODES:
        _empty_slabs += 1


cdef inline bint _slot_free(PyObject* o) noexcept:
    cdef _Slab* s = <_Slab*>(<size_t>o & ~(<size_t>SLAB_BYTES - 1))
    cdef size_t i = (<size_t>o - <size_t>s) // NODE_BYTES
    return (s.free[i >> 6] >> (i & 63)) & 1


# ---------------------------------------------------------------------------
# The tape: every node an op builds in a slab, in the order built (a Wengert list).
# A node's children are always built before it, so walking the tape down from a root
# meets every node of its graph after all of that node's parents: backward() on a new
# graph needs no depth-first ordering, only this walk (see _walk).
# Entries are not removed when their node dies: an entry is stale when its slot is free
# or was reused since (the slot's newest entry is the live one). The tape empties when
# no node on it is alive, which in a training loop is once a step, and is compacted if
# it outgrows the live nodes. Nodes not on it (made by Value(...) with children, or by
# an op when no slab could be had) send backward() to the depth-first ordering instead.

cdef PyObject** _tape = NULL
cdef Py_ssize_t _ntape = 0, _cap_tape = 0
cdef Py_ssize_t _tape_live = 0     # live nodes with ON_TAPE
cdef Py_ssize_t _offtape_live = 0  # live nodes with children that are not on the tape


cdef void _tape_compact() noexcept:
    """Drop stale entries, keeping each live node's newest one, in order."""
    global _ntape
    cdef Py_ssize_t i, j = 0
    cdef PyObject* o
    for i in range(_ntape - 1, -1, -1):  # newest first: PLACED marks a slot already kept
        o = _tape[i]
        if _slot_free(o) or not (_flagsp(o)[0] & ON_TAPE) or _flagsp(o)[0] & PLACED:
            _tape[i] = NULL
        else:
            _flagsp(o)[0] |= PLACED
    for i in range(_ntape):
        if _tape[i] != NULL:
            _flagsp(_tape[i])[0] &= ~PLACED
            _tape[j] = _tape[i]
            j += 1
    _ntape = j


cdef bint _tape_make_room() noexcept:
    """Room for one more entry, by compacting or growing; False when there is no memory."""
    global _tape, _cap_tape
    if _ntape > 2 * _tape_live + 4096:
        _tape_compact()
    return _ntape < _cap_tape or _grow(<void**>&_tape, &_cap_tape, sizeof(PyObject*), 4096) == 0


cdef inline bint _tape_push(PyObject* o) noexcept:
    """Append o; False when there is no memory for it (o then stays off the tape)."""
    global _ntape
    if _ntape == _cap_tape and not _tape_make_room():
        return False
    _tape[_ntape] = o
    _ntape += 1
    return True


cdef inline void _tape_forget(PyObject* o) noexcept:
    """Count a dying node out; the tape empties with its last live node."""
    global _tape_live, _offtape_live, _ntape
    if _flagsp(o)[0] & ON_TAPE:
        _tape_live -= 1
        if _tape_live == 0:
            _ntape = 0
            _give_back(<void**>&_tape, &_cap_tape)
    elif (<Value>o)._opcode != LEAF:
        _offtape_live -= 1


cdef void _trim_slabs() noexcept:
    """Give back empty slabs beyond the KEEP_SLABS a training loop reuses."""
    global _nslabs, _cur, _free_total, _empty_slabs
    cdef Py_ssize_t i, kept = 0, empty = 0
    cdef _Slab* s
    if _ntape:
        _tape_compact()  # no entry may point into a slab about to be unmapped
    for i in range(_nslabs):
        s = _slabs[i]
        if s.nfree == SLAB_NODES:
            empty += 1
            if empty > KEEP_SLABS:
                if s == _cur:
                    _cur = NULL
                _free_total -= SLAB_NODES
                _empty_slabs -= 1
                _free_slab(s)
                continue
        s.index = kept
        _slabs[kept] = s
        kept += 1
    _nslabs = kept


cdef Value _new_off_slab(unsigned char op):
    """_new() when no slab could be had: the node comes from Python's allocator."""
    global _offtape_live
    cdef Value out = Value.__new__(Value)
    out._flags = INITIALIZED
    out._opcode = op
    if op != LEAF:
        _offtape_live += 1
    return out


cdef inline Value _new(unsigned char op):
    """A fresh node with op code op, no children, data and grad 0."""
    global _tape_live, _offtape_live
    cdef Value out
    cdef PyObject* o = _slab_pop() if _slabs_ok else NULL
    if o == NULL:
        return _new_off_slab(op)
    Py_SET_REFCNT(o, 1)  # a slot is never tracemalloc's block: nothing else to tell
    out = _take(o)
    out._opcode = op
    out._n = 0
    out._a = NULL
    out._s.kids = NULL
    out.data = 0.0
    out.grad = 0.0
    if op > CUSTOM and _tape_push(o):
        out._flags = INITIALIZED | IN_SLAB | ON_TAPE
        _tape_live += 1
    else:
        out._flags = INITIALIZED | IN_SLAB
        if op != LEAF:
            _offtape_live += 1
    return out


cdef inline void _free_node(PyObject* o) noexcept:
    """Release a dead node's children (see _release) and give its memory back."""
    cdef unsigned int i
    cdef PyObject** kids = _children(o)
    for i in range((<Value>o)._n):
        _release(kids[i])
    if _nary((<Value>o)._opcode):
        PyMem_Free(kids)
    if (<Value>o)._aux is not None:
        (<Value>o)._aux = None  # frees the _Aux: strings and an order, no Python code
    _tape_forget(o)
    if (<Value>o)._flags & IN_SLAB:
        _slab_push(o)
    else:  # made by Value(...): Cython's tp_new took it from the Python allocator
        _decref(<PyObject*>(<Value>o)._aux)
        Py_TYPE(o).tp_free(o)


cdef void _dealloc(PyObject* o) noexcept:
    """Value's tp_dealloc. The children it held last go to _pending; the outermost call
    frees them here, in a loop, as their last reference goes (no recursion, no depth limit).
    """
    global _npending, _draining
    cdef PyObject* c
    _free_node(o)
    if _draining:
        return
    _draining = True
    while _npending:
        _npending -= 1
        c = _pending[_npending]  # the stack held its last reference: it dies now
        Py_SET_REFCNT(c, 0)
        _free_node(c)
    _draining = False
    _give_back(<void**>&_pending, &_cap_pending)
    if _empty_slabs > KEEP_SLABS + 1:  # counted, not searched: a full search is rare
        _trim_slabs()


cdef inline Value _leaf(double d):
    cdef Value v = _new(LEAF)
    v.data = d
    return v


cdef inline object _coerce(object x):
    """x as a Value, or None when x is not a real number."""
    cdef double d
    if type(x) is Value:
        return x
    if _real(x, &d):
        return _leaf(d)
    return None


# ---------------------------------------------------------------------------
# Building nodes: every op makes its output the same way.

cdef inline Value _check(Value out, int err):
    if err:
        _raise(err)
    return out


cdef inline Value _unary(unsigned char op, Value a):
    cdef Value out = _new(op)
    Py_INCREF(a)
    out._a = <PyObject*>a
    out._n = 1
    return _check(out, _eval1(op, a.data, 0.0, &out.data))


cdef inline Value _binary(unsigned char op, Value a, Value b):
    cdef Value out = _new(op)
    Py_INCREF(a)
    out._a = <PyObject*>a
    Py_INCREF(b)
    out._s.b = <PyObject*>b
    out._n = 2
    return _check(out, _eval2(op, a.data, b.data, &out.data))


cdef inline object _apply(unsigned char op, object x, object y):
    """x op y for numbers or Values on either side; NotImplemented for anything else."""
    a = _coerce(x)
    if a is None:
        return NotImplemented
    b = _coerce(y)
    if b is None:
        return NotImplemented
    return _binary(op, a, b)


cdef Value _leaf_of(object x):
    """x, a real number, as a leaf; TypeError for anything else."""
    cdef double d
    if not _real(x, &d):
        raise TypeError(f"expected a Value or a real number, not {type(x).__name__!r}")
    return _leaf(d)


cdef Value _dot(object w, object x, object bias, bint relu):
    """The DOT node of w and x, two results of PySequence_Fast, plus bias if not None."""
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(w)
    if n != PySequence_Fast_GET_SIZE(x):
        raise ValueError(f"a dot product needs as many weights as inputs, got "
                         f"{n} and {PySequence_Fast_GET_SIZE(x)}")
    cdef Value out = _new(DOT)
    if relu:
        out._flags |= RELU_OUT
    _set_kids(out, w, n + (bias is not None))
    if PySequence_Fast_GET_SIZE(x) != n:  # converting w ran code that resized x
        raise RuntimeError("the inputs changed size while the weights were read")
    _set_kids(out, x, 0)
    if bias is not None:
        if type(bias) is not Value:
            bias = _leaf_of(bias)
        Py_INCREF(bias)
        out._s.kids[out._n] = <PyObject*>bias
        out._n += 1
        out._flags |= HAS_BIAS
    return _check(out, _eval(<PyObject*>out))


cdef int _set_kids(Value out, object items, Py_ssize_t extra) except -1:
    """Own a reference to each item (numbers become leaves) in out._s.kids[out._n:].

    The first call allocates room for n + extra children; out is n-ary already.
    """
    cdef Py_ssize_t i, n = PySequence_Fast_GET_SIZE(items)
    cdef PyObject** src = PySequence_Fast_ITEMS(items)
    cdef object v
    if out._s.kids == NULL:
        if n + extra > 0xFFFFFFFF:
            raise OverflowError("a node takes at most 2**32 - 1 children")
        out._s.kids = <PyObject**>PyMem_Malloc(max(n + extra, 1) * sizeof(PyObject*))
        if out._s.kids == NULL:
            raise MemoryError()
    cdef PyObject** dst = out._s.kids + out._n
    for i in range(n):
        if type(<object>src[i]) is Value:
            Py_INCREF(<object>src[i])
            dst[i] = src[i]
        else:
            v = _leaf_of(<object>src[i])  # may run Python code (a __float__)...
            Py_INCREF(v)
            dst[i] = <PyObject*>v
            if PySequence_Fast_GET_SIZE(items) != n:  # ...that changed the list under us
                out._n += 1
                raise RuntimeError("the sequence changed size while it was read")
            src = PySequence_Fast_ITEMS(items)
        out._n += 1  # counted as owned at once: dealloc releases what is there
    return 0


_OP_NAMES = {LEAF: '', ADD: '+', SUB: '-', MUL: '*', DIV: '/', NEG: 'neg', POWV: '**',
             RELU: 'ReLU', TANH: 'tanh', EXP: 'exp', LOG: 'log', SIGMOID: 'sigmoid',
             SUM: 'sum', DOT: 'dot'}


@cython.final
@cython.no_gc
cdef class _Aux:
    def __cinit__(self):
        self.label = ''

    def __dealloc__(self):
        PyMem_Free(self.topo)


cdef _Aux _aux_of(Value v):
    if v._aux is None:
        v._aux = _Aux.__new__(_Aux)
    return v._aux


# Each backward() counts here. A cached order whose interior grads were zeroed after
# the last backward() anywhere (when ordered, or by forward()) need not zero them again.
cdef unsigned long long _backward_runs = 0


cdef _Aux _cached_order(Value root):
    """root's graph in topological order, built once and kept on root (in its _Aux)."""
    cdef PyObject** topo
    cdef Py_ssize_t top
    aux = _aux_of(root)
    if aux.topo == NULL:
        if _on_tape(root):  # build order: the replay loops then run through memory in order
            top = _tape_index(root)
            topo = <PyObject**>PyMem_Malloc((top + 1) * sizeof(PyObject*))
            if topo == NULL:
                raise MemoryError()
            aux.ntopo = _walk(root, top, topo)
            aux.topo = _fit(topo, aux.ntopo)
            aux.marked = False  # the walk leaves no marks
        else:
            aux.ntopo = _order(root, &aux.topo)
            aux.marked = True
        aux.zeroed_at = _backward_runs
    return aux


cdef _check_layout():
    cdef Value v = Value.__new__(Value)
    if <char*>&v._s != <char*>&v._a + sizeof(PyObject*):
        raise ImportError("micrograd_cy: Value's _a and _s are not adjacent; _children() needs them so")
    cdef PyTypeObject* t = <PyTypeObject*>Value
    if t.tp_flags & Py_TPFLAGS_HEAPTYPE:  # a heap type's instances own a reference to it
        raise ImportError("micrograd_cy: Value is a heap type; its tp_dealloc expects a static one")
    t.tp_dealloc = _dealloc
    global _slabs_ok, _aux_offset
    _aux_offset = <char*>&v.grad - <char*><PyObject*>v + sizeof(double)
    # slabs hold 64-byte Values with _aux last (not so on, e.g., a Py_TRACE_REFS build)
    _slabs_ok = (t.tp_basicsize == NODE_BYTES and _aux_offset + sizeof(PyObject*) == NODE_BYTES
                 and sizeof(_Slab) <= HEAD_SLOTS * NODE_BYTES)

_check_layout()


def _tape_state():
    """(entries on the tape, live nodes on it, live nodes with children off it): for tests."""
    return _ntape, _tape_live, _offtape_live


def _restore(data, grad, label):
    """Unpickle a Value: a leaf with the same data, grad and label."""
    v = Value(data, label=label)
    v.grad = grad
    return v


@cython.final
@cython.no_gc
cdef class Value:
    """Stores a single scalar value and its gradient."""

    __array_ufunc__ = None  # numpy scalars on the left defer to our reflected operators

    def __init__(self, data, _children=(), str _op not None='', str label not None=''):
        global _offtape_live
        if self._flags & INITIALIZED:
            raise RuntimeError("Value.__init__ may run only once per Value")
        self.data = _data_arg(data)
        children = PySequence_Fast(_children, "_children must be a sequence of Values")
        for c in children:
            if type(c) is not Value:
                raise TypeError(f"_children must hold Values, not {type(c).__name__!r}")
        if PySequence_Fast_GET_SIZE(children):
            self._opcode = CUSTOM
            _offtape_live += 1
            _set_kids(self, children, 0)
        if _op or label:
            _aux_of(self).op_name = _op
            self._aux.label = label
        self._flags |= INITIALIZED

    # freeing is _dealloc(), installed as the type's tp_dealloc at import

    # -- micrograd's public surface ------------------------------------------

    @property
    def _prev(self):
        """The set of this node's children."""
        cdef unsigned int i
        cdef PyObject** kids = _children(<PyObject*>self)
        return {<object>kids[i] for i in range(self._n)}

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

    def __repr__(self):
        return f"Value(data={self.data}, grad={self.grad})"

    def __reduce__(self):
        # a pickled Value is a leaf: its graph history is not kept
        return (_restore, (self.data, self.grad, self.label))

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
        return _apply(SUB, self, other)

    def __truediv__(self, other):
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
        out = _new(POW)
        out._s.c = c
        out._n = 1
        if isinstance(other, (int, _Integral)):
            out._flags |= INT_EXPONENT
        Py_INCREF(self)
        out._a = <PyObject*>self
        return _check(out, _eval1(POW, self.data, c, &out.data))

    def __neg__(self):  # -self
        return _unary(NEG, self)

    def __radd__(self, other):  # other + self
        return _apply(ADD, other, self)

    def __rmul__(self, other):  # other * self
        return _apply(MUL, other, self)

    def __rsub__(self, other):  # other - self
        return _apply(SUB, other, self)

    def __rtruediv__(self, other):  # other / self
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

    # -- fused n-ary nodes ----------------------------------------------------

    @staticmethod
    def sum(values):
        """One node for values[0] + values[1] + ... (numbers become leaves)."""
        items = PySequence_Fast(values, "Value.sum() takes an iterable")
        out = _new(SUM)
        _set_kids(out, items, 0)
        return _check(out, _eval(<PyObject*>out))

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
        rows = tuple(weights)  # a snapshot: converting numbers may run code that edits lists
        x = [v if type(v) is Value else _leaf_of(v)
             for v in PySequence_Fast(inputs, "Value.matvec() takes a sequence of inputs")]
        m = len(rows)
        if biases is not None:
            biases = tuple(biases)
            if PySequence_Fast_GET_SIZE(biases) != m:
                raise ValueError(f"Value.matvec() needs one bias per row, got {m} rows and "
                                 f"{PySequence_Fast_GET_SIZE(biases)} biases")
        out = [None] * m
        for j in range(m):
            out[j] = _dot(PySequence_Fast(rows[j], "each row of weights must be a sequence"), x,
                          None if biases is None else biases[j], relu)
        return out

    # -- the graph as a whole --------------------------------------------------

    def backward(self):
        """Set every node's grad to d(self)/d(node); leaves accumulate (+=)."""
        global _backward_runs
        cdef Py_ssize_t i
        cdef _Aux order
        if (self._aux is None or self._aux.topo == NULL) and _on_tape(self):
            # a graph not replayed: one walk down the tape, nothing kept
            _walk(self, _tape_index(self), NULL)
            _backward_runs += 1
            return
        order = _cached_order(self)
        cdef PyObject** topo = order.topo
        cdef bint fresh = order.marked  # the first pass over a new order clears its marks
        order.marked = False
        # interior grads restart at zero, so a second backward() adds to leaves only once
        # kernel: begin
        if order.zeroed_at != _backward_runs:
            for i in range(order.ntopo):
                if i + PREFETCH < order.ntopo:
                    _prefetch(topo[i + PREFETCH])
                if (<Value>topo[i])._opcode > CUSTOM:
                    _gradp(topo[i])[0] = 0.0
        _backward_runs += 1
        self.grad = 1.0
        # go one node at a time, parents before children, and apply the chain rule
        for i in range(order.ntopo - 1, -1, -1):
            if i >= PREFETCH:
                _prefetch(topo[i - PREFETCH])
            if fresh:
                _unmark(topo[i])
            if (<Value>topo[i])._opcode > CUSTOM:
                _backprop(topo[i], <_Adding*>NULL)
        # kernel: end

    def forward(self):
        """Recompute every node's data from the leaves, in the cached order (replay).

        The graph's structure is what it was when built: Python control flow that
        depended on data is not re-run. Returns self.
        """
        cdef Py_ssize_t i
        cdef int err = OK
        cdef _Aux order = _cached_order(self)
        cdef PyObject** topo = order.topo
        cdef bint fresh = order.marked  # the first pass over a new order clears its marks
        order.marked = False
        # kernel: begin
        for i in range(order.ntopo):
            if i + PREFETCH < order.ntopo:
                _prefetch(topo[i + PREFETCH])
            if fresh:
                _unmark(topo[i])
            if (<Value>topo[i])._opcode > CUSTOM:
                _gradp(topo[i])[0] = 0.0  # stale: they belonged to the old data
                err = _eval(topo[i])
                if err:
                    break
        # kernel: end
        if err:
            if fresh:  # a new order's marks must not outlive this call
                for i in range(i, order.ntopo):
                    _unmark(topo[i])
            _raise(err)
        order.zeroed_at = _backward_runs
        return self
