# Optimizers: torch.optim's SGD, Adam and AdamW over a fixed array of leaves, every
# parameter's update in one C loop. micrograd's `for p in parameters: p.data -= lr * p.grad`
# is SGD's plain case, with the same numbers; in Python that loop and zero_grad's cost about
# as much as backward() itself on micrograd's demo (337 parameters).
#
# What an optimizer keeps: its parameters (owned references, fixed once __init__ has
# published them), its hyperparameters as C numbers, and its state: _nslots arrays of _n
# doubles one after another in _state (SGD: momentum_buffer; Adam: exp_avg, exp_avg_sq,
# then max_exp_avg_sq), whose values count once _has_state is set (by a step or a load),
# and _steps, torch's state['step'].
#
# Python code (a number's __float__, an iterator, a dict subclass, a garbage collection at
# an allocation) may run any engine operation, this optimizer's own methods included, and
# another thread may take the GIL while it runs. So every method reads and checks all of its
# input into locals first, and only then changes the optimizer, in C, with no Python call in
# between: code that runs meanwhile meets a whole optimizer, and an error changes nothing.
# state_dict copies the state in C before it makes Python objects of it, and starts again if
# a step or a load came in between (_version).

from libc.math cimport fabs
from libc.string cimport memcpy, memset


# ---------------------------------------------------------------------------
# Arguments, checked as torch.optim checks them (and NaN and infinities refused too); each
# error names the argument

cdef double _number(object x, str who, str name) except? -1.0:
    cdef double d
    if type(x) is float:
        return <double>x
    if not _real(x, &d):
        raise TypeError(f"{who}: {name} must be a real number, not {type(x).__name__!r}")
    return d


cdef double _rate(object x, str who, str name) except? -1.0:
    """A finite number >= 0: lr, momentum, dampening, weight_decay."""
    cdef double d = _number(x, who, name)
    if not (isfinite(d) and d >= 0.0):
        raise ValueError(f"{who}: {name} must be a finite number >= 0, not {d}")
    return d


cdef double _beta(object x, str who, str name) except? -1.0:
    cdef double d = _number(x, who, name)
    if not (0.0 <= d < 1.0):
        raise ValueError(f"{who}: {name} must be in [0, 1), not {d}")
    return d


cdef double _positive(object x, str who, str name) except? -1.0:
    cdef double d = _number(x, who, name)
    if not (isfinite(d) and d > 0.0):
        raise ValueError(f"{who}: {name} must be a finite number > 0, not {d}")
    return d


cdef bint _flag(object x, str who, str name) except -1:
    if x is True or x is False:
        return x is True
    if isinstance(x, int) and not isinstance(x, bool) and (x == 0 or x == 1):
        return x == 1
    raise TypeError(f"{who}: {name} must be True or False, not {x!r}")


cdef tuple _betas(object x, str who):
    try:
        b1, b2 = x
    except (TypeError, ValueError):
        raise TypeError(f"{who}: betas must be a pair of numbers, not {x!r}") from None
    return (_beta(b1, who, "betas[0]"), _beta(b2, who, "betas[1]"))


cdef list _param_list(object params, str who):
    """params as a list of distinct leaves (a snapshot: later edits of the caller's list do
    not show). Python code may run while it is read; a Value's leafness cannot change."""
    items = list(params)
    seen = set()
    for i, p in enumerate(items):
        if not isinstance(p, Value):
            hint = " (parameter groups are not supported: one list of Values)" \
                if isinstance(p, dict) else ""
            raise TypeError(f"{who}: parameter {i} is {type(p).__name__!r}, not a Value{hint}")
        if not (<Value>p)._flags & READY:  # an __init__ to come could give it children
            raise ValueError(f"{who}: parameter {i} is a Value whose __init__ has not run "
                             f"(or not returned): make it with Value(data)")
        if (<Value>p)._n:
            raise ValueError(f"{who}: parameter {i} is not a leaf (its op is {p._op!r}): "
                             f"only leaves can be optimized")
        if id(p) in seen:
            raise ValueError(f"{who}: parameter {i} appears twice: it would be updated twice")
        seen.add(id(p))
    return items


# ---------------------------------------------------------------------------
# The base: parameters, lr, state, and everything but the update rule

@cython.no_gc  # holds Values, which hold only Values (a subclass's __dict__ may hold more:
               # a cycle through it leaks, as any cycle through a node does)
@cython.binding(False)  # C method descriptors: they refuse a self of another class
cdef class Optimizer:
    """The base of SGD, Adam and AdamW (torch.optim.Optimizer's part): the parameters, the
    learning rate `lr`, zero_grad(), step(), state_dict() and load_state_dict()."""
    cdef PyObject** _params
    cdef Py_ssize_t _n
    cdef double* _state
    cdef Py_ssize_t _nslots
    cdef bint _has_state
    cdef double _steps
    cdef double _lr
    cdef bint _started  # __init__ has begun: it may not run again
    cdef unsigned long long _version  # bumped by every step and load (state_dict's check)

    def __cinit__(self):
        if type(self) is Optimizer:
            raise TypeError("Optimizer is the base of SGD, Adam and AdamW: make one of those")

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self._params != NULL:
            for i in range(self._n):
                _decref(self._params[i])
            PyMem_Free(self._params)
        PyMem_Free(self._state)

    # -- what each optimizer defines --------------------------------------------

    cdef dict _read(self, object args, str who):
        """The hyperparameters in args (a mapping: __init__'s arguments, or a saved group),
        checked, as a new dict of floats and bools in torch's order, lr first."""
        raise NotImplementedError

    cdef int _apply(self, dict hyper) except -1:
        """Set the C fields from what _read returned (floats and bools: no Python code)."""
        raise NotImplementedError

    cdef dict _group(self):
        """The hyperparameters now, as _read returns them."""
        raise NotImplementedError

    cdef dict _defaults(self):
        raise NotImplementedError

    cdef tuple _slots(self, dict hyper):
        """The names of the per-parameter arrays these hyperparameters need, in order."""
        return ()

    cdef bint _counts_steps(self) noexcept:
        """Whether the state holds torch's 'step' for each parameter."""
        return False

    cdef int _update(self, double lr) except -1:
        """One step of every parameter; called with _n > 0. Sets _has_state."""
        raise NotImplementedError

    # -- setting up -----------------------------------------------------------

    cdef int _setup(self, object params, dict args) except -1:
        cdef Py_ssize_t i, n, k
        cdef PyObject** ps
        cdef double* state = NULL
        who = type(self).__name__
        if self._started:
            raise RuntimeError(f"{who}.__init__ may run only once")
        self._started = True  # first: reading the arguments runs Python code, which may call it
        hyper = self._read(args, who)
        items = _param_list(params, who)
        n = len(items)
        k = len(self._slots(hyper))
        ps = <PyObject**>_alloc(max(n, 1) * sizeof(PyObject*))
        if ps == NULL:
            raise MemoryError()
        if k:
            state = <double*>_alloc(k * max(n, 1) * sizeof(double))
            if state == NULL:
                PyMem_Free(ps)
                raise MemoryError()
        # from here on no Python code runs: the optimizer changes as a whole
        for i in range(n):
            Py_INCREF(items[i])
            ps[i] = <PyObject*>items[i]
        PyMem_Free(self._state)  # a load that ran while the arguments were read left it
        self._params, self._n = ps, n
        self._state, self._nslots, self._has_state, self._steps = state, k, False, 0.0
        self._apply(hyper)
        self._version += 1
        return 0

    # -- the public surface -----------------------------------------------------

    @property
    def lr(self):
        """The learning rate of the next step (schedules set it)."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _rate(value, type(self).__name__, "lr")

    @lr.deleter
    def lr(self):
        raise AttributeError("an optimizer's lr cannot be deleted")

    @property
    def params(self):
        """The parameters, in the order given."""
        cdef Py_ssize_t i
        return [<object>self._params[i] for i in range(self._n)]

    def __len__(self):
        return self._n

    def step(self, lr=None):
        """Update every parameter from its grad, at self.lr (or at lr, for this step only)."""
        cdef double rate
        if lr is None:
            rate = self._lr
        elif type(lr) is float and isfinite(<double>lr) and <double>lr >= 0.0:
            rate = lr  # the schedule's float, each step: no name looked up
        else:
            rate = _rate(lr, type(self).__name__, "lr")
        if self._n:
            self._update(rate)
            self._version += 1

    def zero_grad(self):
        """Every parameter's grad to 0."""
        cdef Py_ssize_t i
        cdef PyObject** ps = self._params
        # kernel: begin
        for i in range(self._n):
            _gradp(ps[i])[0] = 0.0
        # kernel: end

    def state_dict(self):
        """torch.optim's shape, with floats for tensors: {'state': {i: {name: float}},
        'param_groups': [{hyperparameter: value, ..., 'params': [0, ..., n-1]}]}; the state
        is empty before the first step."""
        cdef Py_ssize_t i, j, n, k
        cdef double* copy = NULL
        cdef double steps
        cdef bint has
        cdef unsigned long long version
        while True:
            n, k, has, steps, version = self._n, self._nslots, self._has_state, self._steps, \
                self._version
            copy = <double*>_alloc(max(k * n, 1) * sizeof(double))
            if copy == NULL:
                raise MemoryError()
            if has and k:
                memcpy(copy, self._state, k * n * sizeof(double))
            try:  # Python objects from here: code may run, a step or a load among it
                group = self._group()
                names = self._slots(group)
                counts = self._counts_steps()
                state = {}
                if len(names) != k and has:  # a load came in between: the copy is of another
                    continue
                if has and (k or counts):
                    for i in range(n):
                        entry = {"step": steps} if counts else {}
                        for j in range(k):
                            entry[names[j]] = copy[j * n + i]
                        state[i] = entry
                group["params"] = list(range(n))
            finally:
                PyMem_Free(copy)
            if self._version == version:  # else a step or a load came in between: again
                return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict):
        """Take the hyperparameters and the state of a state_dict() (this optimizer's, or one
        of the same class and number of parameters). Everything is checked before anything
        changes: keys, shapes, that every number is finite (and the squares >= 0)."""
        cdef Py_ssize_t i, j, n = self._n, k
        cdef double* state = NULL
        cdef double steps = 0.0, d
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{who} takes a dict, not {type(state_dict).__name__!r}")
        _same_keys(state_dict, ("state", "param_groups"), who, "the state dict")
        groups = state_dict["param_groups"]
        if not isinstance(groups, (list, tuple)) or len(groups) != 1 or \
                not isinstance(groups[0], dict):
            raise ValueError(f"{who}: param_groups must be a list of one dict (one group of "
                             f"parameters)")
        group = groups[0]
        _same_keys(group, tuple(self._group()) + ("params",), who, "param_groups[0]")
        hyper = self._read(group, who)
        ids = group["params"]
        # a snapshot, then checked: reading it, or the state's values, may run code that edits it
        ids = list(ids) if isinstance(ids, (list, tuple)) else None
        if ids is None or len(ids) != n or \
                not all(isinstance(p, int) and not isinstance(p, bool) for p in ids) or \
                len(set(ids)) != n:
            raise ValueError(f"{who}: param_groups[0]['params'] must be {n} distinct ints, "
                             f"one for each parameter")
        saved = state_dict["state"]
        if not isinstance(saved, dict):
            raise TypeError(f"{who}: state must be a dict, not {type(saved).__name__!r}")
        names = self._slots(hyper)
        counts = self._counts_steps()
        k = len(names)
        if saved:
            if not (k or counts):
                raise ValueError(f"{who}: state must be empty with these hyperparameters")
            known = set(ids)
            unknown = [key for key in saved if key not in known]
            if unknown or len(saved) != n:
                raise ValueError(f"{who}: state must have an entry for each of the {n} "
                                 f"parameters or none (it has {len(saved)}"
                                 f"{', and keys not in params: ' + repr(unknown[:3]) if unknown else ''})")
        state = <double*>_alloc(max(k * n, 1) * sizeof(double))
        if state == NULL:
            raise MemoryError()
        try:
            for i in range(n if saved else 0):
                entry = saved[ids[i]]
                where = f"state[{ids[i]!r}]"
                if not isinstance(entry, dict):
                    raise TypeError(f"{who}: {where} must be a dict, not {type(entry).__name__!r}")
                _same_keys(entry, (("step",) if counts else ()) + names, who, where)
                if counts:
                    d = _number(entry["step"], who, f"{where}['step']")
                    if not (1.0 <= d <= 9007199254740992.0 and d == floor(d)) or \
                            (i and d != steps):
                        raise ValueError(f"{who}: {where}['step'] must be a whole number >= 1, "
                                         f"the same for every parameter, not {d}")
                    steps = d
                for j in range(k):
                    d = _number(entry[names[j]], who, f"{where}[{names[j]!r}]")
                    if not isfinite(d) or (d < 0.0 and names[j].endswith("_sq")):
                        raise ValueError(f"{who}: {where}[{names[j]!r}] must be a finite number"
                                         f"{' >= 0' if names[j].endswith('_sq') else ''}, not {d}")
                    state[j * n + i] = d
        except BaseException:
            PyMem_Free(state)
            raise
        # from here on no Python code runs: the optimizer changes as a whole
        if self._n != n:  # __init__ published its parameters while the state was read
            PyMem_Free(state)
            raise RuntimeError(f"{who}: the optimizer was set up while its state was read")
        PyMem_Free(self._state)
        self._state, self._nslots, self._has_state, self._steps = state, k, bool(saved), steps
        self._apply(hyper)
        self._version += 1

    def __repr__(self):
        group, defaults = self._group(), self._defaults()
        extra = "".join(f", {key}={value!r}" for key, value in group.items()
                        if key != "lr" and value != defaults[key])
        return f"{type(self).__name__}({self._n} parameters, lr={self._lr}{extra})"

    def __reduce__(self):
        # the parameters and the state_dict: copy and pickle keep the state
        return (_restore_optimizer, (type(self), self.params, self.state_dict()))


cdef int _same_keys(dict d, tuple wanted, str who, str where) except -1:
    missing = [key for key in wanted if key not in d]
    unknown = [key for key in d if key not in wanted]
    if missing or unknown:
        raise ValueError(f"{who}: {where} must have the keys {list(wanted)}"
                         f"{'; missing ' + repr(missing) if missing else ''}"
                         f"{'; unknown ' + repr(unknown) if unknown else ''}")
    return 0


def _restore_optimizer(cls, params, state):
    """Unpickle an optimizer: cls(params), then its state_dict loaded."""
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)) or cls is Optimizer:
        raise TypeError(f"cannot restore an optimizer as {cls!r}")
    opt = cls(params)
    opt.load_state_dict(state)
    return opt


# ---------------------------------------------------------------------------
# SGD

@cython.final
@cython.no_gc
@cython.binding(False)
cdef class SGD(Optimizer):
    """SGD(params, lr=0.01, momentum=0, dampening=0, weight_decay=0, nesterov=False)
--

torch.optim.SGD over a list of leaves, in C. With no momentum and no weight decay, step()
is micrograd's loop, `p.data -= lr * p.grad`, with the same numbers; otherwise torch's
arithmetic: g = grad + weight_decay * p; buf = g at the first step, then
buf * momentum + (1 - dampening) * g; g = g + momentum * buf with nesterov, else buf;
p -= lr * g."""
    cdef double _momentum, _dampening, _weight_decay
    cdef bint _nesterov

    def __cinit__(self):
        self._lr = 0.01  # the defaults: one whose __init__ has not run is an empty SGD

    def __init__(self, params, lr=0.01, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False):
        self._setup(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                             "weight_decay": weight_decay, "nesterov": nesterov})

    cdef dict _read(self, object args, str who):
        hyper = {"lr": _rate(args["lr"], who, "lr"),
                 "momentum": _rate(args["momentum"], who, "momentum"),
                 "dampening": _rate(args["dampening"], who, "dampening"),
                 "weight_decay": _rate(args["weight_decay"], who, "weight_decay"),
                 "nesterov": _flag(args["nesterov"], who, "nesterov")}
        if hyper["nesterov"] and (hyper["momentum"] == 0.0 or hyper["dampening"] != 0.0):
            raise ValueError(f"{who}: nesterov=True needs momentum > 0 and dampening = 0 "
                             f"(as torch.optim.SGD)")
        return hyper

    cdef int _apply(self, dict hyper) except -1:
        self._lr, self._momentum, self._dampening = hyper["lr"], hyper["momentum"], \
            hyper["dampening"]
        self._weight_decay, self._nesterov = hyper["weight_decay"], hyper["nesterov"]
        return 0

    cdef dict _group(self):
        return {"lr": self._lr, "momentum": self._momentum, "dampening": self._dampening,
                "weight_decay": self._weight_decay, "nesterov": self._nesterov}

    cdef dict _defaults(self):
        return {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}

    cdef tuple _slots(self, dict hyper):
        return ("momentum_buffer",) if hyper["momentum"] != 0.0 else ()

    cdef int _update(self, double lr) except -1:
        cdef Py_ssize_t i, n = self._n
        cdef PyObject** ps = self._params
        cdef double* buf = self._state
        cdef double g, mu = self._momentum, wd = self._weight_decay
        cdef double keep = 1.0 - self._dampening
        cdef bint first = not self._has_state, nesterov = self._nesterov
        if mu == 0.0 and wd == 0.0:
            # kernel: begin
            for i in range(n):  # micrograd's loop
                _datap(ps[i])[0] -= lr * _gradp(ps[i])[0]
            # kernel: end
            return 0
        # kernel: begin
        for i in range(n):
            g = _gradp(ps[i])[0]
            if wd != 0.0:
                g = g + wd * _datap(ps[i])[0]
            if mu != 0.0:
                buf[i] = g if first else buf[i] * mu + keep * g
                g = g + mu * buf[i] if nesterov else buf[i]
            _datap(ps[i])[0] -= lr * g
        # kernel: end
        self._has_state = mu != 0.0
        return 0

    @property
    def momentum(self):
        return self._momentum

    @property
    def dampening(self):
        return self._dampening

    @property
    def weight_decay(self):
        return self._weight_decay

    @property
    def nesterov(self):
        return self._nesterov


# ---------------------------------------------------------------------------
# Adam and AdamW

# kernel: begin
cdef inline double _lerp(double a, double b, double w) noexcept:
    # torch's lerp (ATen/native/Lerp.h): from the nearer end, so that w = 0 and 1 are exact
    return a + w * (b - a) if fabs(w) < 0.5 else b - (b - a) * (1.0 - w)
# kernel: end


@cython.no_gc
@cython.binding(False)
cdef class Adam(Optimizer):
    """Adam(params, lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0, amsgrad=False)
--

torch.optim.Adam over a list of leaves, in C, with its arithmetic in its order: at step t,
g = grad + weight_decay * p; m = lerp(m, g, 1 - beta1); v = v * beta2 + (1 - beta2) * g * g;
(with amsgrad, vmax = max(vmax, v) stands for v below); then
p += (-lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)."""
    cdef double _beta1, _beta2, _eps, _weight_decay
    cdef bint _amsgrad
    cdef bint _decoupled  # AdamW: p *= 1 - lr * weight_decay in place of adding to g

    def __cinit__(self):
        # the defaults: one whose __init__ has not run is an empty Adam
        self._lr, self._beta1, self._beta2, self._eps = 1e-3, 0.9, 0.999, 1e-8

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False):
        self._setup(params, {"lr": lr, "betas": betas, "eps": eps,
                             "weight_decay": weight_decay, "amsgrad": amsgrad})

    cdef dict _read(self, object args, str who):
        return {"lr": _rate(args["lr"], who, "lr"), "betas": _betas(args["betas"], who),
                "eps": _positive(args["eps"], who, "eps"),
                "weight_decay": _rate(args["weight_decay"], who, "weight_decay"),
                "amsgrad": _flag(args["amsgrad"], who, "amsgrad")}

    cdef int _apply(self, dict hyper) except -1:
        self._lr, (self._beta1, self._beta2), self._eps = hyper["lr"], hyper["betas"], \
            hyper["eps"]
        self._weight_decay, self._amsgrad = hyper["weight_decay"], hyper["amsgrad"]
        return 0

    cdef dict _group(self):
        return {"lr": self._lr, "betas": (self._beta1, self._beta2), "eps": self._eps,
                "weight_decay": self._weight_decay, "amsgrad": self._amsgrad}

    cdef dict _defaults(self):
        return {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}

    cdef tuple _slots(self, dict hyper):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if hyper["amsgrad"] else ())

    cdef bint _counts_steps(self) noexcept:
        return True

    @cython.cdivision(True)  # no zero divisor: 1 - beta**t > 0 and denom >= eps > 0
    cdef int _update(self, double lr) except -1:
        cdef Py_ssize_t i, n = self._n
        cdef PyObject** ps = self._params
        cdef double* m = self._state
        cdef double* v = m + n
        cdef double* vmax = v + n
        cdef double g, denom, t
        cdef double b1 = self._beta1, b2 = self._beta2, eps = self._eps, wd = self._weight_decay
        cdef double decay, w, keep2, step_size, bc2_sqrt
        cdef bint amsgrad = self._amsgrad, decoupled = self._decoupled
        if not self._has_state:  # torch's first step: the averages start at 0
            memset(m, 0, self._nslots * n * sizeof(double))
            self._steps = 0.0
        self._steps += 1.0
        t = self._steps
        # the step's numbers, each as torch's Python computes it
        step_size = lr / (1.0 - pow(b1, t))
        bc2_sqrt = pow(1.0 - pow(b2, t), 0.5)
        decay, w, keep2 = 1.0 - lr * wd, 1.0 - b1, 1.0 - b2
        # kernel: begin
        for i in range(n):
            g = _gradp(ps[i])[0]
            if wd != 0.0:
                if decoupled:
                    _datap(ps[i])[0] = _datap(ps[i])[0] * decay
                else:
                    g = g + wd * _datap(ps[i])[0]
            m[i] = _lerp(m[i], g, w)
            v[i] = v[i] * b2 + keep2 * g * g
            if amsgrad:
                if vmax[i] < v[i] or v[i] != v[i]:  # torch.maximum: NaN wins
                    vmax[i] = v[i]
                denom = sqrt(vmax[i]) / bc2_sqrt + eps
            else:
                denom = sqrt(v[i]) / bc2_sqrt + eps
            _datap(ps[i])[0] = _datap(ps[i])[0] + (-step_size * m[i]) / denom
        # kernel: end
        self._has_state = True
        return 0

    @property
    def betas(self):
        return (self._beta1, self._beta2)

    @property
    def eps(self):
        return self._eps

    @property
    def weight_decay(self):
        return self._weight_decay

    @property
    def amsgrad(self):
        return self._amsgrad


@cython.final
@cython.no_gc
@cython.binding(False)
cdef class AdamW(Adam):
    """AdamW(params, lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01, amsgrad=False)
--

torch.optim.AdamW: Adam with decoupled weight decay (each step first multiplies p by
1 - lr * weight_decay, and g is the grad alone)."""

    def __cinit__(self):
        self._decoupled, self._weight_decay = True, 1e-2

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        self._setup(params, {"lr": lr, "betas": betas, "eps": eps,
                             "weight_decay": weight_decay, "amsgrad": amsgrad})

    cdef dict _defaults(self):
        return {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2, "amsgrad": False}
