# C declarations of the engine, so other Cython code can cimport Value.
from cpython.ref cimport PyObject

cpdef enum Op:  # cpdef: Python sees engine.Op, whose names give Value._op (ops.pxi)
    LEAF      # created by the user: no children
    CUSTOM    # Value(data, _children, _op) built by hand: children shown, no gradient rule
    ADD
    SUB
    MUL
    DIV
    NEG
    POW       # self ** c, c a number kept in _s.c
    POWV      # self ** other, both Values
    RELU
    TANH
    EXP
    LOG
    SIGMOID
    SIN
    COS
    SQRT
    ABS
    SOFTPLUS
    GELU      # the tanh form
    LEAKY_RELU  # its slope kept in _s.c, as POW's exponent
    # n-ary from here on (ops.pxi: _nary), unary and binary ops above
    SUM       # n-ary: sum of _kids
    DOT       # n-ary: kids = w[0..n), x[0..n), optional bias; optionally ReLU'd
    LOGSUMEXP     # n-ary: log(sum(exp(kids)))
    CROSS_ENTROPY # n-ary: kids = logits[0..n), then the target class's index
    GATHER    # n-ary: kids = table[0..n), then an index: the table's entry at it
    GIVEN     # Value(data, _children, _op, grads=...) built by hand: n-ary, local derivatives given
    NET       # n-ary: a whole MLP with one output (nn.MLP); kids = x[0..n), then its PARAMS
    PARAMS    # n-ary: an MLP's weights and biases, for its NET nodes; off the tape, never walked

cdef enum Flag:
    # bits 4 and 32 each carry three names, one per op that uses them (DOT, POW, PARAMS;
    # DOT, LEAF and CUSTOM, PARAMS): read them only together with the op code
    EXPANDED = 1       # EXPANDED and PLACED mark nodes only inside an ordering call
    PLACED = 16
    READY = 2          # built and complete: it may be a child (ops and __init__ refuse others);
                       # an op node gets it with its tape entry (memory.pxi: _join)
    HAS_BIAS = 4       # DOT's last kid is the bias
    KID_OFF_TAPE = 4   # PARAMS holds a weight off the tape: its NET nodes go off it too
    INT_EXPONENT = 4   # POW's exponent was an int: _op shows '**2', not '**2.0' (POW, not DOT)
    OFF_TAPE = 8       # has children and no entry on the tape: a walk that reaches it hands over
    RELU_OUT = 32      # DOT's result goes through a ReLU: one node for a ReLU neuron
    INITIALIZED = 32   # LEAF and CUSTOM: __init__ has started, it may not run again (not DOT)
    KID_ON_TAPE = 32   # PARAMS holds a weight on the tape: a walk must reach it through the NET
    IN_SLAB = 64       # the node lives in one of the engine's slabs, not Python's heap
    ON_TAPE = 128      # the node has an entry on the tape (memory.pxi)


cdef class _Aux(dict):
    # what few nodes need: a label, a hand-given op name, the cached topological order; as a
    # dict, the node's own attributes (its __dict__: v.m = 0, setattr(v, '_vis_color', ...))
    cdef str label
    cdef str op_name
    cdef PyObject** topo       # borrowed: the root keeps every node of its graph alive
    cdef Py_ssize_t ntopo
    cdef unsigned long long zeroed_at  # _grads_written when the interior grads were last zeroed
    cdef bint marked           # just built: the ordering's marks are still on the nodes
    cdef bint given            # the order holds a GIVEN node: forward() refuses it
    cdef object program        # the order compiled for rows (batch.pxi: Value.backward_rows)


cdef union _Slot:
    PyObject* b         # binary ops: the second child (the first is _a)
    PyObject** kids     # n-ary ops (CUSTOM, SUM, DOT, GIVEN, NET, PARAMS): an array of _n
                        # children (some keep more after them: ops.pxi)
    double c            # POW: the constant exponent


cdef class Value:
    # 64 bytes with the object header; what backward() reads shares one cache line
    cdef unsigned char _opcode
    cdef unsigned char _flags
    cdef unsigned int _n       # number of children
    cdef PyObject* _a          # owned references to the children (NULL when absent)
    cdef _Slot _s
    cdef double _data          # Python sees these as the properties data and grad
    cdef double _grad
    cdef PyObject* _aux        # an owned _Aux, NULL for most nodes; the type's tp_dictoffset
                               # points here, so Python finds a node's attributes in it
