# The ordering walks: a graph's nodes, children before parents, and the passes that run
# the op rules (ops.pxi) over them.
#
# backward() on a new graph walks the tape (memory.pxi) down from the root (_walk): a node
# is reached by the first edge that gives to it, and met on the tape after all its
# parents, so the chain rule runs in the same pass, with no search and no allocation.
# Graphs the tape does not hold are ordered by a depth-first search on an explicit
# stack (_order): no depth is too deep either way. forward() (replay) keeps its order on
# the root (_cached_order) and runs it in build order; backward() then reuses it.

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


cdef void _backward_cached(Value root, _Aux order) noexcept:
    """backward() over root's cached order: interior grads restart at zero, so a second
    backward() adds to the leaves only once."""
    global _backward_runs
    cdef Py_ssize_t i
    cdef PyObject** topo = order.topo
    cdef bint fresh = order.marked  # the first pass over a new order clears its marks
    order.marked = False
    # kernel: begin
    if order.zeroed_at != _backward_runs:
        for i in range(order.ntopo):
            if i + PREFETCH < order.ntopo:
                _prefetch(topo[i + PREFETCH])
            if (<Value>topo[i])._opcode > CUSTOM:
                _gradp(topo[i])[0] = 0.0
    _backward_runs += 1
    root.grad = 1.0
    # go one node at a time, parents before children, and apply the chain rule
    for i in range(order.ntopo - 1, -1, -1):
        if i >= PREFETCH:
            _prefetch(topo[i - PREFETCH])
        if fresh:
            _unmark(topo[i])
        if (<Value>topo[i])._opcode > CUSTOM:
            _backprop(topo[i], <_Adding*>NULL)
    # kernel: end


cdef int _forward_cached(_Aux order) except -1:
    """forward() over a cached order: every node's data from its children, in build order."""
    cdef Py_ssize_t i
    cdef int err = OK
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
    return 0


cdef int _backward(Value root) except -1:
    """Set every node's grad to d(root)/d(node); leaves accumulate (+=)."""
    global _backward_runs
    if (root._aux is None or root._aux.topo == NULL) and _on_tape(root):
        # a graph not replayed: one walk down the tape, nothing kept
        _walk(root, _tape_index(root), NULL)
        _backward_runs += 1
        return 0
    _backward_cached(root, _cached_order(root))
    return 0
