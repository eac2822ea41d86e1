# The ordering walks: a graph's nodes, children before parents, and the passes that run
# the op rules (ops.pxi) over them.
#
# backward() on a new graph walks the tape (memory.pxi) down from the root: a node is
# reached by the first edge that gives to it, and met on the tape after all its parents,
# so the chain rule runs in the same pass, with no search and no allocation.
# The walk pays while the graph fills the stretch of tape it walks. It hands the rest of
# the graph to a depth-first search (_order, on an explicit stack: no depth is too deep)
# when it would pass more than SKIP_LIMIT entries, plus SKIP_PER_NODE for each node it
# visited, of nodes not in the graph (other graphs kept alive, or a node built long ago,
# far below). So the cost of backward() follows the size of the graph, never what else
# is alive. A graph the tape does not hold (its root is OFF_TAPE: a hand-built node is
# in it) is ordered depth-first from the start.
# forward() (replay) keeps its order on the root (_cached_order) and runs it in build
# order; backward() then reuses it.

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


cdef inline void _place(PyObject* node, PyObject** topo, Py_ssize_t* n) noexcept:
    """Append node to the order; interior grads start each backward at 0."""
    _flagsp(node)[0] |= EXPANDED | PLACED
    if (<Value>node)._opcode > CUSTOM:
        _gradp(node)[0] = 0.0
    topo[n[0]] = node
    n[0] += 1


cdef inline void _unmark(PyObject* node) noexcept:
    _flagsp(node)[0] &= ~(EXPANDED | PLACED)


cdef enum:
    SEARCH_LIMIT = 1024  # tape entries looked through for a root's before ordering depth-first
    SKIP_LIMIT = 256     # entries of other nodes a walk may pass before it hands over...
    SKIP_PER_NODE = 4    # ...plus this many for each node it visited

cdef bint _depth_first_only = False  # tests: order every graph depth-first (_use_depth_first)
# for tests (engine._order_counts()): walks, handovers, depth-first searches, entries walked
cdef Py_ssize_t _walks = 0, _handovers = 0, _searches = 0, _walked = 0


# Sizes the last ordering needed: a training loop builds graphs of one size, so the
# next ordering allocates once instead of growing.
cdef Py_ssize_t _topo_hint = 256
cdef Py_ssize_t _stack_hint = 64


cdef Py_ssize_t _order(PyObject** roots, Py_ssize_t nroots, PyObject*** out) except -1:
    """Fill out[0] with the graphs of roots, children before parents; returns the count.

    Depth-first: a node is EXPANDED when first popped (its unplaced children are pushed
    above it) and PLACED when popped again. A child may be pushed twice; the second copy
    finds it PLACED and is dropped. In a DAG an EXPANDED child is always PLACED already.
    The marks stay on the nodes: the first pass over the order must clear them, before
    anything else can order a graph. Out of memory, it clears them and raises.
    """
    global _topo_hint, _stack_hint, _searches
    cdef Py_ssize_t n = 0, cap = _topo_hint, sp = nroots, scap = max(_stack_hint, nroots), i
    cdef PyObject** topo = <PyObject**>_alloc(cap * sizeof(PyObject*))
    cdef PyObject** stack = <PyObject**>_alloc(scap * sizeof(PyObject*))
    cdef PyObject* node
    cdef PyObject* c
    cdef PyObject** kids
    cdef unsigned int k, nk
    cdef unsigned char* f
    cdef bint failed = False
    if topo == NULL or stack == NULL:
        PyMem_Free(topo)
        PyMem_Free(stack)
        raise MemoryError("out of memory ordering the graph")
    for i in range(nroots):
        stack[i] = roots[nroots - 1 - i]  # the first root is ordered first
    _searches += 1
    # kernel: begin
    while sp:
        node = stack[sp - 1]
        f = _flagsp(node)
        if f[0] & PLACED:
            sp -= 1
            continue
        if f[0] & EXPANDED:  # its children are placed: the node follows them
            if n == cap and _grow(<void**>&topo, &cap, sizeof(PyObject*)) < 0:
                failed = True  # still on the stack, so its mark is cleared below
                break
            sp -= 1
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
    if failed:  # every mark is on a node placed or still on the stack
        for i in range(n):
            _unmark(topo[i])
        for i in range(sp):
            _unmark(stack[i])
        PyMem_Free(stack)
        PyMem_Free(topo)
        raise MemoryError("out of memory ordering the graph")
    PyMem_Free(stack)
    _topo_hint = max(256, min(n, 1 << 20))
    _stack_hint = max(64, min(scap, 1 << 20))
    out[0] = _fit(topo, n) if cap > n else topo
    return n


cdef Py_ssize_t _tape_index(Value root) noexcept:
    """Where root's newest entry is, searched from the top (roots are usually recent); -1
    when root is not on the tape or not among its top SEARCH_LIMIT entries."""
    cdef Py_ssize_t i = _ntape - 1
    cdef Py_ssize_t stop = max(_ntape - SEARCH_LIMIT, 0)
    if not root._flags & ON_TAPE or _depth_first_only:
        return -1
    while i >= stop:
        if _tape[i] == <PyObject*>root:
            return i
        i -= 1
    return -1


# _walk reaches a NET node's weights (net.pxi: _reach_weights) through this pointer, set at
# import, which the C compiler cannot inline: inlined, its loop cost _walk's backward loop
# registers (backward() on upstream nn.py's graph 7% slower, A/B in alternating processes),
# as the NET rules did (ops.pxi).
cdef void (*_reach_weights_out_of_line)(PyObject*, _Walking*) noexcept


# kernel: begin


cdef inline PyObject* _next_reached(PyObject** tape, Py_ssize_t* i, Py_ssize_t top,
                                    Py_ssize_t* skipped) noexcept:
    """The next node down the tape from i[0] that the walk has reached, its mark cleared.
    NULL below the bottom, or once the walk has passed more than SKIP_LIMIT entries, plus
    SKIP_PER_NODE for each node it visited, of nodes it did not reach: the tape no longer
    pays."""
    cdef PyObject* node
    while i[0] >= 0:
        if i[0] >= PREFETCH:
            _prefetch(tape[i[0] - PREFETCH])
        node = tape[i[0]]
        i[0] -= 1
        if _flagsp(node)[0] & PLACED:  # else another graph's node, or a stale entry
            _flagsp(node)[0] &= ~PLACED
            return node
        skipped[0] += 1  # visited so far: top - i[0] - skipped[0]
        if skipped[0] > SKIP_LIMIT + SKIP_PER_NODE * (top - i[0] - skipped[0]):
            return NULL
    return NULL
# kernel: end


cdef Py_ssize_t _walk(Value root, Py_ssize_t top, PyObject** topo, Py_ssize_t* stop) noexcept:
    """Walk root's graph down the tape from top, root's entry: with topo NULL, backward()
    itself; else its order.

    A node is PLACED when a parent reaches it: its grad starts at 0 and it joins the
    pending count. The walk meets each PLACED node after all its parents (they were built
    later) and stops when no node is pending. Without topo it applies each node's chain
    rule (root.grad is 1); with topo (room for top + 1 entries) it writes the
    interior nodes there, children first, as the depth-first order would, but in build
    order, which is memory order in the slabs. Returns the number written, or -1 if it
    handed over (see the top of this file): then stop[0] is where it stopped, and the
    nodes it reached and did not visit are still PLACED (_take_reached finds them).
    """
    global _walks, _walked
    cdef Py_ssize_t i = top, n = 0, lo, hi, skipped = 0
    cdef _Walking walk
    cdef PyObject** tape = _tape  # a local: the flag stores could alias the global
    cdef PyObject* node
    cdef PyObject** kids
    cdef unsigned int k
    walk.pending = 1
    _walks += 1
    root._flags |= PLACED
    # kernel: begin
    if topo == NULL:  # backward(): reach the children as the chain rule gives to them
        root._grad = 1.0
        while walk.pending:
            node = _next_reached(tape, &i, top, &skipped)
            if node == NULL:
                break
            _backprop(node, &walk)
            walk.pending -= 1
        stop[0] = i
        _walked += top - i
        return -1 if walk.pending else 0
    root._grad = 0.0
    while walk.pending:
        node = _next_reached(tape, &i, top, &skipped)
        if node == NULL:
            break
        kids = _children(node)
        for k in range((<Value>node)._n):
            _give_none(kids[k], &walk)  # reached, gradient or not: replay needs them all
        if (<Value>node)._opcode == NET:
            _reach_weights_out_of_line(node, &walk)
        topo[n] = node
        n += 1
        walk.pending -= 1
    stop[0] = i
    _walked += top - i
    if walk.pending:
        return -1
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


cdef Py_ssize_t _take_reached(Py_ssize_t lo, Py_ssize_t top, PyObject** out, bint take) noexcept:
    """After a walk handed over at lo: the nodes it reached and did not visit. They are the
    PLACED children of the nodes it visited, whose entries all lie in (lo, top]; a PLACED
    node anywhere is one of them, so any entry's children will do.

    take False: returns how often they are reached (room enough for out). take True: clears
    their marks, writes them to out unless it is NULL, and returns how many there are.
    """
    cdef Py_ssize_t j, n = 0
    cdef PyObject* node
    for j in range(lo + 1, top + 1):
        node = _tape[j]
        if _slot_free(node) or not _flagsp(node)[0] & ON_TAPE:  # stale: gone, or being
            continue                              # built or freed while Python code runs
        n = _take_placed(_children(node), (<Value>node)._n, out, n, take)
        if (<Value>node)._opcode == NET:  # and its weights, which it reaches directly
            node = _net_params(node)
            n = _take_placed(_children(node), (<Value>node)._n, out, n, take)
    return n


cdef inline Py_ssize_t _take_placed(PyObject** kids, unsigned int nk, PyObject** out,
                                    Py_ssize_t n, bint take) noexcept:
    """_take_reached for one node's kids: n plus the PLACED ones among them."""
    cdef unsigned int k
    for k in range(nk):
        if _flagsp(kids[k])[0] & PLACED:
            if take:
                _flagsp(kids[k])[0] &= ~PLACED
                if out != NULL:
                    out[n] = kids[k]
            n += 1
    return n


cdef void _backprop_order(PyObject** topo, Py_ssize_t n, bint unmark) noexcept:
    """The chain rule over an order, parents first; clearing the order's marks if unmark."""
    cdef Py_ssize_t i
    # kernel: begin
    for i in range(n - 1, -1, -1):
        if i >= PREFETCH:
            _prefetch(topo[i - PREFETCH])
        if unmark:
            _unmark(topo[i])
        if (<Value>topo[i])._opcode > CUSTOM:
            _backprop(topo[i], <_Adding*>NULL)
    # kernel: end


cdef Py_ssize_t _order_rest(Py_ssize_t lo, Py_ssize_t top, PyObject*** out) except -1:
    """backward() where the walk handed over at lo: order the nodes it reached and did not
    visit, and all below them, depth-first, into *out (the caller applies the chain rule
    over it, then frees it). Their grads keep what the visited nodes gave them; the interior
    nodes below start at 0."""
    global _handovers
    cdef Py_ssize_t i, n = _take_reached(lo, top, NULL, False), norder
    cdef PyObject** roots = <PyObject**>_alloc(max(n, 1) * sizeof(PyObject*))
    cdef double* grads = <double*>_alloc(max(n, 1) * sizeof(double))
    if roots == NULL or grads == NULL:
        PyMem_Free(roots)
        PyMem_Free(grads)
        _take_reached(lo, top, NULL, True)
        raise MemoryError("out of memory ordering the graph")
    n = _take_reached(lo, top, roots, True)
    _handovers += 1
    for i in range(n):
        grads[i] = _gradp(roots[i])[0]
    try:
        norder = _order(roots, n, out)
        for i in range(n):  # _order zeroed them, as interior nodes
            _gradp(roots[i])[0] = grads[i]
    finally:
        PyMem_Free(roots)
        PyMem_Free(grads)
    return norder


# Counts every event after which interior grads may not be zero: each backward(), and a
# grad set by hand on a node with children. An order whose interior grads were zeroed
# since the last such event (by forward(), or when built) need not zero them again.
cdef unsigned long long _grads_written = 0


cdef _Aux _cached_order(Value root):
    """root's graph in topological order, built once and kept on root (in its _Aux)."""
    cdef PyObject** topo
    cdef PyObject* first = <PyObject*>root
    global _handovers
    cdef Py_ssize_t top, stop, n
    aux = _aux_of(root)
    if aux.topo != NULL:
        return aux
    top = _tape_index(root)
    if top >= 0:  # build order: the replay loops then run through memory in order
        topo = <PyObject**>_alloc((top + 1) * sizeof(PyObject*))
        if topo == NULL:
            raise MemoryError("out of memory ordering the graph")
        n = _walk(root, top, topo, &stop)
        if n >= 0:
            aux.topo = _fit(topo, n)
            aux.ntopo = n
            aux.marked = False  # the walk leaves no marks
        else:
            PyMem_Free(topo)
            _take_reached(stop, top, NULL, True)
            _handovers += 1
    if aux.topo == NULL:
        aux.ntopo = _order(&first, 1, &aux.topo)
        aux.marked = True
        for n in range(aux.ntopo):  # hand-built graphs only: a GIVEN node is never on the tape
            if (<Value>aux.topo[n])._opcode == GIVEN:
                aux.given = True
                break
    aux.zeroed_at = _grads_written
    return aux


cdef bint _start_cached(Value root, _Aux order) noexcept:
    """backward() over root's cached order, before the chain rule runs: interior grads
    restart at zero, so a second backward() adds to the leaves only once. Returns whether
    the order's marks are still on its nodes (a new order: the pass clears them)."""
    cdef Py_ssize_t i
    cdef PyObject** topo = order.topo
    cdef bint fresh = order.marked  # the first pass over a new order clears its marks
    order.marked = False
    # kernel: begin
    if order.zeroed_at != _grads_written:
        for i in range(order.ntopo):
            if i + PREFETCH < order.ntopo:
                _prefetch(topo[i + PREFETCH])
            if (<Value>topo[i])._opcode > CUSTOM:
                _gradp(topo[i])[0] = 0.0
    # kernel: end
    root._grad = 1.0
    return fresh


cdef int _forward_cached(_Aux order) except -1:
    """forward() over a cached order: every node's data from its children, in build order."""
    cdef Py_ssize_t i
    cdef int err = OK
    cdef PyObject** topo = order.topo
    cdef bint fresh = order.marked  # the first pass over a new order clears its marks
    order.marked = False
    if order.given:  # nothing recomputes a GIVEN node (ops.pxi): refuse before any change
        if fresh:
            for i in range(order.ntopo):
                _unmark(topo[i])
        _raise(ERR_GIVEN)
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
    order.zeroed_at = _grads_written
    return 0


cdef int _backward(Value root) except -1:
    """Set every node's grad to d(root)/d(node); leaves accumulate (+=)."""
    global _grads_written
    cdef Py_ssize_t top = -1, stop, n
    cdef PyObject** topo
    cdef PyObject** made = NULL  # an order made for this call only
    cdef bint unmark
    cdef _Aux order
    try:
        if not _has_aux(root) or (<_Aux>root._aux).topo == NULL:
            top = _tape_index(root)
        if top >= 0:  # a graph not replayed: one walk down the tape, nothing kept...
            if _walk(root, top, NULL, &stop) >= 0:
                return 0
            n = _order_rest(stop, top, &made)  # ...unless it handed over to a search
            topo, unmark = made, True
        else:
            order = _cached_order(root)
            unmark = _start_cached(root, order)
            topo, n = order.topo, order.ntopo
        # go one node at a time, parents before children, and apply the chain rule. This and
        # _ChainRule's are the only calls of _backprop_order: with a third, the C compiler
        # stopped inlining _backprop into its loop (a call a node: backward() 10% slower)
        _backprop_order(topo, n, unmark)
        PyMem_Free(made)
    finally:
        _grads_written += 1
    return 0


# ---------------------------------------------------------------------------
# For tests

def _order_counts():
    """(tape walks, walks that handed over to a depth-first search, depth-first searches,
    tape entries walked) since import: for tests."""
    return _walks, _handovers, _searches, _walked


def _use_depth_first(bint on):
    """Tests: order every graph depth-first (on) or by the tape where it pays (off, the
    default). Returns the setting it replaces."""
    global _depth_first_only
    was = _depth_first_only
    _depth_first_only = on
    return was
