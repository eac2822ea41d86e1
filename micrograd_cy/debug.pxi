# The debug build (setup.py: MICROGRAD_CY_DEBUG=1, or tests/test_debug_build.py): after
# every public call it checks the invariants that memory.pxi states at its top, and it can
# make allocations fail on demand. The release build compiles both away (MGCY_DEBUG is 0).

cdef extern from "Python.h":
    void Py_FatalError(const char*)

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define mgcy_popcount(x) __builtin_popcountll(x)
    #else
    static int mgcy_popcount(unsigned long long x) { int n = 0; while (x) { x &= x - 1; n++; } return n; }
    #endif
    """
    int _popcount "mgcy_popcount"(unsigned long long) noexcept nogil


cdef str _violation():
    """What breaks an invariant of memory.pxi and order.pxi now, or '' when all hold."""
    cdef Py_ssize_t si, j, free_total = 0, empty = 0, on_tape = 0, seen = 0, w
    cdef unsigned int i, k, bits
    cdef _Slab* s
    cdef PyObject* o
    cdef PyObject** kids
    cdef str found = ''
    if (_npending or _draining) and not _dealloc_depth:
        return f"{_npending} nodes pending release outside a dealloc"
    if _ntape > _cap_tape or _ntape < 0 or _tape_live < 0 or _tape_live > _ntape:
        return f"tape counts: {_ntape} entries, room for {_cap_tape}, {_tape_live} live"
    for si in range(_nslabs):
        s = _slabs[si]
        if s.index != si:
            return f"slab {si} says it is slab {s.index}"
        bits = 0
        for w in range(16):
            bits += _popcount(s.free[w])
            if w < <Py_ssize_t>s.hint and s.free[w]:
                return f"slab {si}: a free slot below its hint"
        if bits != s.nfree or s.free[0] & ((1ULL << HEAD_SLOTS) - 1):
            return f"slab {si}: {bits} free bits, nfree {s.nfree}, header bits {s.free[0] & 7}"
        free_total += s.nfree
        empty += s.nfree == SLAB_NODES
        for i in range(HEAD_SLOTS, HEAD_SLOTS + SLAB_NODES):
            o = <PyObject*>(<char*>s + i * NODE_BYTES)
            if (s.free[i >> 6] >> (i & 63)) & 1:
                if Py_TYPE(o) != <PyTypeObject*>Value or \
                        (<PyObject**>(<char*>o + _aux_offset))[0] != NULL:
                    return f"slab {si}, slot {i}: a free slot is not a dead Value"
                continue
            if Py_REFCNT(o) == 0 and _dealloc_depth:  # being freed, as Python code runs
                if (<Value>o)._n or _flagsp(o)[0] & ON_TAPE:  # inside its dealloc (memory.pxi)
                    return f"slab {si}, slot {i}: a node being freed holds children or its entry"
                continue
            if Py_REFCNT(o) <= 0 or not _flagsp(o)[0] & IN_SLAB:
                return f"slab {si}, slot {i}: a live node with refcount {Py_REFCNT(o)}, " \
                       f"flags {_flagsp(o)[0]}"
            if _flagsp(o)[0] & (EXPANDED | PLACED):
                return f"slab {si}, slot {i}: marks left on a node between calls"
            on_tape += (_flagsp(o)[0] & ON_TAPE) != 0
            if (<Value>o)._opcode == LEAF:
                if _flagsp(o)[0] & (ON_TAPE | OFF_TAPE) or not _flagsp(o)[0] & READY:
                    return f"slab {si}, slot {i}: a leaf with flags {_flagsp(o)[0]}"
            elif not _flagsp(o)[0] & READY:  # being built, as Python code runs: off the tape
                if _flagsp(o)[0] & (ON_TAPE | OFF_TAPE):
                    return f"slab {si}, slot {i}: an op node being built with flags {_flagsp(o)[0]}"
            elif (_flagsp(o)[0] & ON_TAPE != 0) == (_flagsp(o)[0] & OFF_TAPE != 0):
                return f"slab {si}, slot {i}: op {(<Value>o)._opcode} with flags {_flagsp(o)[0]}"
            kids = _children(o)
            for k in range((<Value>o)._n):
                if Py_REFCNT(kids[k]) <= 0 or not isinstance(<object>kids[k], Value):
                    return f"slab {si}, slot {i}: child {k} is not a live Value"
                if _flagsp(kids[k])[0] & IN_SLAB and _slot_free(kids[k]):
                    return f"slab {si}, slot {i}: child {k} sits in a free slot"
                if _flagsp(o)[0] & ON_TAPE and _flagsp(kids[k])[0] & OFF_TAPE and \
                        (<Value>kids[k])._opcode != PARAMS:
                    return f"slab {si}, slot {i}: on the tape, with child {k} off it"
    if free_total != _free_total or empty != _empty_slabs:
        return f"slab counts: {free_total} free slots, {empty} empty slabs; " \
               f"kept: {_free_total}, {_empty_slabs}"
    if on_tape != _tape_live:
        return f"{on_tape} live nodes are ON_TAPE, the tape counts {_tape_live}"
    # down the tape: a live node's newest entry stands above its children's
    for j in range(_ntape - 1, -1, -1):
        o = _tape[j]
        if _slot_free(o) or not _flagsp(o)[0] & ON_TAPE or _flagsp(o)[0] & PLACED:
            continue  # stale, or a node met at a newer entry already
        kids = _children(o)
        for k in range((<Value>o)._n):
            if _flagsp(kids[k])[0] & PLACED:
                found = f"tape entry {j}: a child stands above its parent"
        _flagsp(o)[0] |= PLACED
        seen += 1
    for j in range(_ntape):
        if not _slot_free(_tape[j]):
            _flagsp(_tape[j])[0] &= ~PLACED
    if found:
        return found
    if seen != _tape_live:
        return f"{_tape_live} live nodes are ON_TAPE, {seen} have an entry"
    return ''


cdef inline int _debug_check() except -1:
    """Debug build: raise AssertionError where an invariant does not hold."""
    cdef str what
    if MGCY_DEBUG:
        what = _violation()
        if what:
            raise AssertionError(f"micrograd_cy invariant broken: {what}")
    return 0


cdef inline void _debug_check_in_dealloc() noexcept:
    """Debug build: the same after a dealloc, which cannot raise: a violation stops the process."""
    if MGCY_DEBUG:
        try:
            what = _violation()
        except BaseException:
            what = 'the check itself failed'
        if what:
            Py_FatalError(("micrograd_cy invariant broken: " + what).encode())


_DEBUG = bool(MGCY_DEBUG)


def _check_invariants():
    """Raise AssertionError if an invariant of the engine does not hold (any build)."""
    what = _violation()
    if what:
        raise AssertionError(f"micrograd_cy invariant broken: {what}")


def _fail_allocations(Py_ssize_t after):
    """Debug build only: let `after` more of the engine's allocations succeed, then fail all
    of them until this is called with -1."""
    global _allocs_left
    if not MGCY_DEBUG:
        raise RuntimeError("failing allocations needs the debug build (MICROGRAD_CY_DEBUG=1)")
    _allocs_left = after
