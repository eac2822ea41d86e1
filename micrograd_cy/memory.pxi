# Memory: where nodes live (slabs), the tape of nodes in build order, and freeing.
#
# What holds between any two calls into the engine (checked after every public call by
# the debug build, debug.pxi):
#   - Slabs: every slab's free bitmap has exactly nfree bits set, never one of the header
#     slots; _free_total is the sum of nfree and _empty_slabs the count of slabs with every
#     slot free. A free slot is a dead Value: its type is Value and its _aux is NULL.
#   - A live node with IN_SLAB sits in a slot whose bit is clear; one without it came
#     from Python's allocator (Value(...) itself, or an op when no slab could be had).
#   - Tape: every live node with ON_TAPE has an entry in _tape[0:_ntape]; its newest entry
#     is the one that counts, and an entry is stale when its slot is free or was reused
#     since. _tape_live counts the live nodes with ON_TAPE; when it falls to 0 the tape
#     empties. Only op-built nodes in slabs are ON_TAPE; a node's children are always
#     built before it, so they stand below it on the tape (compaction keeps the order),
#     and each is a leaf or ON_TAPE itself (a node with a child OFF_TAPE is OFF_TAPE), but
#     for a NET's PARAMS: always OFF_TAPE, and never walked (the NET reaches its weights).
#   - Marks: no node carries EXPANDED or PLACED (order.pxi sets them only inside a call).
#   - Freeing: _pending is empty and _draining is false.
# Python code may run in the middle of a build or a free (docs/architecture.md); while it
# does, an op node being built is not READY and has no tape flag (it joins the tape when
# complete: _join), and a node being freed (refcount 0) has no children and no tape flag.
# Every allocation goes through _alloc/_realloc (or the slab mapper), which the debug build
# can make fail on demand (debug.pxi), so each out-of-memory path is tested.

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(PyObject*)
    void _incref "Py_INCREF"(PyObject*)
    void _decref "Py_DECREF"(PyObject*)
    PyTypeObject* Py_TYPE(PyObject*)
    int PyTraceMalloc_Track(unsigned int domain, size_t ptr, size_t size)
    int PyTraceMalloc_Untrack(unsigned int domain, size_t ptr)
    void Py_SET_TYPE(PyObject*, PyTypeObject*)
    void Py_SET_REFCNT(PyObject*, Py_ssize_t)

cdef extern from *:
    """
    #define mgcy_take(o) (o)
    """
    Value _take "mgcy_take"(PyObject*)  # the caller's reference to a Value becomes ours


# ---------------------------------------------------------------------------
# Allocation. The debug build (setup.py: MICROGRAD_CY_DEBUG=1) can make every allocation
# from a chosen one on fail (debug.pxi: _fail_allocations); the release build compiles
# the check away.

cdef extern from *:
    """
    #ifndef MGCY_DEBUG
    #define MGCY_DEBUG 0
    #endif
    """
    const bint MGCY_DEBUG

cdef Py_ssize_t _allocs_left = -1  # debug build: allocations that succeed before all fail; -1: all do


cdef inline bint _refused() noexcept:
    global _allocs_left
    if not MGCY_DEBUG or _allocs_left < 0:
        return False
    if _allocs_left == 0:
        return True
    _allocs_left -= 1
    return False


cdef inline void* _alloc(size_t size) noexcept:
    return NULL if _refused() else PyMem_Malloc(size)


cdef inline void* _realloc(void* p, size_t size) noexcept:
    return NULL if _refused() else PyMem_Realloc(p, size)


# ---------------------------------------------------------------------------
# Growable buffers (the pending stack, the slab list, the tape, orders)

cdef inline int _grow(void** buf, Py_ssize_t* cap, size_t item, Py_ssize_t first=64) noexcept:
    """Double buf's capacity, or give it `first` items if it has none; -1 if no memory."""
    cdef Py_ssize_t new_cap = cap[0] * 2 if cap[0] else first
    cdef void* p = _realloc(buf[0], new_cap * item)
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
    cdef PyObject** p = <PyObject**>_realloc(order, max(n, 1) * sizeof(PyObject*))
    return order if p == NULL else p


# ---------------------------------------------------------------------------
# Freeing: Value is not tracked by the cyclic GC (a DAG of child references
# cannot form a cycle), so CPython's trashcan does not guard deep chains.
# A node that is the last owner of a child hands it to this stack instead of
# releasing it recursively; the outermost dealloc drains it.

cdef PyObject** _pending = NULL
cdef Py_ssize_t _npending = 0
cdef Py_ssize_t _cap_pending = 0
cdef bint _draining = False
cdef Py_ssize_t _dealloc_depth = 0  # debug build: _dealloc calls under way


cdef inline void _release(PyObject* child) noexcept:
    global _pending, _npending, _cap_pending
    if child == NULL:
        return
    if Py_REFCNT(child) > 1:
        _decref(child)  # someone else still holds it: no dealloc here
        return
    if Py_TYPE(child) != <PyTypeObject*>Value:
        # a subclass's instance: its type's dealloc (CPython's subtype_dealloc) must run,
        # to untrack it from the GC, clear its __dict__ and release its type; it calls
        # ours, whose children join _pending (a level of C recursion for each such node)
        _decref(child)
        return
    if _npending == _cap_pending and _grow(<void**>&_pending, &_cap_pending,
                                           sizeof(PyObject*), 1024) < 0:
        _decref(child)  # out of memory: recurse, as a GC-less type would
        return
    _pending[_npending] = child  # our reference moves to the stack
    _npending += 1


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
cdef Py_ssize_t _aux_offset      # where a Value keeps _aux: free slots hold NULL there


cdef _Slab* _new_slab() noexcept:
    """A slab of free slots, each already a dead Value (type set, _aux NULL); NULL if no memory."""
    global _slabs, _nslabs, _cap_slabs, _free_total, _empty_slabs
    cdef _Slab* s
    cdef int i
    cdef PyObject* o
    if _nslabs == _cap_slabs and _grow(<void**>&_slabs, &_cap_slabs, sizeof(_Slab*)) < 0:
        return NULL
    s = NULL if _refused() else <_Slab*>_slab_alloc(SLAB_BYTES)
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
        (<PyObject**>(<char*>o + _aux_offset))[0] = NULL
    _slabs[_nslabs] = s
    _nslabs += 1
    _free_total += SLAB_NODES
    _empty_slabs += 1
    return s


cdef void _free_slab(_Slab* s) noexcept:
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
# it outgrows the live nodes. Nodes with children that are not on it (OFF_TAPE: made by
# Value(...) with children, or by an op when no memory could be had) make their parents
# OFF_TAPE too, so the walk never meets one: graphs holding one are ordered depth-first.

cdef PyObject** _tape = NULL
cdef Py_ssize_t _ntape = 0, _cap_tape = 0
cdef Py_ssize_t _tape_live = 0     # live nodes with ON_TAPE


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
    global _tape_live, _ntape
    if _flagsp(o)[0] & ON_TAPE:
        _flagsp(o)[0] &= ~ON_TAPE
        _tape_live -= 1
        if _tape_live == 0:
            _ntape = 0
            _give_back(<void**>&_tape, &_cap_tape)


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
    cdef Value out = Value.__new__(Value)
    out._flags = INITIALIZED | READY if op == LEAF else 0
    out._opcode = op
    return out


cdef inline Value _new(unsigned char op):
    """A fresh node with op code op, no children, data and grad 0. A leaf is complete at
    once; an op node is being built: not READY and not on the tape until _join finds it
    complete, so that no walk meets it half made."""
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
    out._data = 0.0
    out._grad = 0.0
    out._flags = INITIALIZED | READY | IN_SLAB if op == LEAF else IN_SLAB
    return out


cdef inline void _join(Value v, bint off) noexcept:
    """v, an op node now complete (its children, its data), becomes READY and joins the tape
    above them; unless off (a child is off the tape: a walk down it would never meet that
    child) or there is no memory for the entry. So every node of a graph on the tape is a
    leaf or on the tape too, and a walk never meets a node still being built."""
    global _tape_live, _ntape
    if not off and _ntape < _cap_tape and v._flags & IN_SLAB:  # inline: every op comes here
        _tape[_ntape] = <PyObject*>v
        _ntape += 1
        v._flags |= READY | ON_TAPE
        _tape_live += 1
    else:
        _join_slow(v, off)


cdef void _join_slow(Value v, bint off) noexcept:
    """_join where the tape has no room yet, or v stays off it."""
    global _tape_live
    if not off and v._flags & IN_SLAB and _tape_push(<PyObject*>v):
        v._flags |= READY | ON_TAPE
        _tape_live += 1
    else:
        v._flags |= READY | OFF_TAPE


cdef inline void _free_node(PyObject* o) noexcept:
    """Release a dead node's children (see _release) and give its memory back. The node is
    emptied and off the tape before the first child goes: releasing a subclass's instance
    runs Python code (its __del__, weakref callbacks) that may build, walk the tape or free,
    and must never meet this node's children half released."""
    cdef unsigned int i, n = (<Value>o)._n
    cdef PyObject** kids = _children(o)  # _a and _s.b, or its array: read, never cleared
    cdef PyObject* aux = (<Value>o)._aux  # released last: it holds the user's attributes
    (<Value>o)._n = 0
    (<Value>o)._aux = NULL
    _tape_forget(o)
    for i in range(n):
        _release(kids[i])
    if _nary((<Value>o)._opcode):
        PyMem_Free(kids)
    if (<Value>o)._flags & IN_SLAB:
        _slab_push(o)
    else:  # made by Value(...): Cython's tp_new took it from the Python allocator
        Py_TYPE(o).tp_free(o)
    if aux != NULL:  # the node is gone: what its attributes' release runs cannot meet it
        _decref(aux)


cdef void _dealloc(PyObject* o) noexcept:
    """Value's tp_dealloc. The children it held last go to _pending; the outermost call
    frees them here, in a loop, as their last reference goes (no recursion, no depth limit).
    A subclass's instance among them runs Python code as it goes, which may call into the
    engine again, this function too: _pending then grows, and this loop drains it.
    """
    global _npending, _draining, _dealloc_depth
    cdef PyObject* c
    if MGCY_DEBUG:  # Python code running inside a dealloc may check the invariants: count
        _dealloc_depth += 1
    _free_node(o)
    if not _draining:
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
    if MGCY_DEBUG:
        _dealloc_depth -= 1
        if _dealloc_depth == 0:  # not inside another node's dealloc
            _debug_check_in_dealloc()


# ---------------------------------------------------------------------------
# At import: Value's layout checked (slabs are used only where it is what they assume), and
# its tp_dealloc installed

cdef extern from "Python.h":
    unsigned long Py_TPFLAGS_HEAPTYPE
    void PyType_Modified(PyTypeObject*)


cdef int _traverse_attrs(PyObject* o, visitproc visit, void* arg) except -1:
    """Value's tp_traverse. Plain nodes are not tracked by the cyclic GC; a subclass's
    instance is, and CPython's traverse for it calls this one: the collector then sees
    cycles through its attributes (s.me = s) and frees them, as for any Python object."""
    cdef PyObject* aux = (<Value>o)._aux
    return visit(aux, arg) if aux != NULL else 0


cdef int _clear_attrs(object o) except -1:
    """Value's tp_clear, for the collector to break such a cycle."""
    cdef PyObject* aux = (<Value>o)._aux
    (<Value>o)._aux = NULL
    if aux != NULL:
        _decref(aux)
    return 0


cdef _check_layout():
    cdef Value v = Value.__new__(Value)
    if <char*>&v._s != <char*>&v._a + sizeof(PyObject*):
        raise ImportError("micrograd_cy: Value's _a and _s are not adjacent; _children() needs them so")
    cdef PyTypeObject* t = <PyTypeObject*>Value
    if t.tp_flags & Py_TPFLAGS_HEAPTYPE:  # a heap type's instances own a reference to it
        raise ImportError("micrograd_cy: Value is a heap type; its tp_dealloc expects a static one")
    t.tp_dealloc = _dealloc
    global _slabs_ok, _aux_offset
    _aux_offset = <char*>&v._aux - <char*><PyObject*>v
    t.tp_dictoffset = _aux_offset  # a node's attributes are its _Aux's items (engine.pyx)
    t.tp_traverse = _traverse_attrs
    t.tp_clear = _clear_attrs
    PyType_Modified(t)
    # slabs hold 64-byte Values with _aux last (not so on, e.g., a Py_TRACE_REFS build)
    _slabs_ok = (t.tp_basicsize == NODE_BYTES and _aux_offset + sizeof(PyObject*) == NODE_BYTES
                 and sizeof(_Slab) <= HEAD_SLOTS * NODE_BYTES)

_check_layout()

# What a graph costs in memory, for estimates made before building one (nn.memory_needed):
# the bytes of a Value, and of one entry of a node's array of children
NODE_SIZE = (<PyTypeObject*>Value).tp_basicsize
CHILD_SIZE = sizeof(PyObject*)


def _tape_state():
    """(entries on the tape, live nodes on it): for tests."""
    return _ntape, _tape_live
