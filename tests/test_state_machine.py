"""A stateful property test: hypothesis interleaves building, dropping, hand-built nodes,
backward(), forward() (including replays that raise), evaluate, grads and data set by hand,
and Python code that the engine runs in the middle of its work doing any of these (numbers
whose __float__ acts while an op or a sum reads them; subclass leaves whose __del__ or weakref
callback acts while the engine frees them, or a parent of them), and after every step checks
every live node's data and grad against a plain-Python reference engine written here, and
the engine's own invariants (engine._check_invariants)."""
import functools
import math
import numbers
import weakref

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from micrograd_cy import Value, engine
from op_table import UNARY, divide

ERRORS = (ZeroDivisionError, OverflowError, ValueError)


class Ref:
    """The reference: a node holds its data, grad, children and kind, and its op as two
    functions: its value from its children's data, and what it gives each child."""

    def __init__(self, data, kids=(), kind="leaf", value=None, local=None):
        self.data, self.grad, self.kids, self.kind = data, 0.0, list(kids), kind
        self.value, self.local = value, local

    def graph(self):
        """Every node reachable, children before parents."""
        order, seen, stack = [], set(), [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                stack.extend((k, False) for k in reversed(node.kids) if id(k) not in seen)
        return order

    def backward(self):
        # interior grads restart at zero, leaves and hand-built nodes accumulate, the root is 1
        order = self.graph()
        for node in order:
            if node.kind == "op":
                node.grad = 0.0
        self.grad = 1.0
        for node in reversed(order):
            if node.kind == "op":
                for kid, d in zip(node.kids, node.local(node, node.grad)):
                    kid.grad += d

    def forward(self):
        for node in self.graph():
            if node.kind == "op":
                node.grad = 0.0
                node.data = node.value(*[k.data for k in node.kids])


def _pow(x, c):
    if x < 0 and c != int(c):
        raise ValueError("complex")
    return x ** c


def _dpow(x, c):
    """c * x ** (c - 1) as C's pow() gives it: nan for a negative base, inf at a pole."""
    try:
        return c * math.pow(x, c - 1)
    except ValueError:
        return math.nan
    except (ZeroDivisionError, OverflowError):
        return math.inf


def _mul_rule(n, g):
    return n.kids[1].data * g, n.kids[0].data * g


# name: (arity, value from the children's data, what the node gives each child from its
# grad g): the chain rules written as the engine computes them, operation for operation
OPS = {
    "+": (2, lambda a, b: a + b, lambda n, g: (g, g)),
    "-": (2, lambda a, b: a - b, lambda n, g: (g, -g)),
    "*": (2, lambda a, b: a * b, _mul_rule),
    "/": (2, lambda a, b: a / b,
          lambda n, g: (divide(g, n.kids[1].data), -g * divide(n.data, n.kids[1].data))),
    "**2": (1, lambda a: _pow(a, 2), lambda n, g: (_dpow(n.kids[0].data, 2.0) * g,)),
    "**0.5": (1, lambda a: _pow(a, 0.5), lambda n, g: (_dpow(n.kids[0].data, 0.5) * g,)),
}
OURS = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "**2": lambda a: a ** 2, "**0.5": lambda a: a ** 0.5,
}
# the unary ops from the tests' op table (tests/op_table.py)
for _name, _row in UNARY.items():
    OPS[_name] = (1, _row.value, lambda n, g, gives=_row.gives: (gives(n.kids[0].data, n.data, g),))
    OURS[_name] = _row.call

numbers_ = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False)
# what Python code run inside the engine does to both engines (Engines.act)
ACTIONS = st.sampled_from(["", "build", "backward", "forward", "evaluate", "drop"])


def _act_on(machine, action, i, j, *_):
    """machine().act(action, i, j) if the machine is still there: hooks hold it weakly, so
    that nothing but dropping a leaf frees it (no cycle left for the collector to free it at
    a time of its own, which would make the steps differ between runs)."""
    if machine() is not None:
        machine().act(action, i, j)


class Hooked(Value):
    """A subclass's leaf whose __del__ acts on a machine (Engines.hooked_leaf)."""

    def __del__(self):
        _act_on(*self.then)


class Watched(Value):
    """A subclass's leaf that a weakref callback watches (Engines.hooked_leaf)."""


class Engines(RuleBasedStateMachine):
    """The pool holds (Value, Ref) pairs; dropping one drops our last reference to it."""

    def __init__(self):
        super().__init__()
        self.pool, self.errors, self.watchers = [], [], []

    def pick(self, i):
        return self.pool[i % len(self.pool)]

    def act(self, action, i, j):
        """Something done to both engines from Python code the engine runs (a __float__, a
        subclass's __del__, a weakref callback): an error is kept for the invariant below,
        since a __del__ cannot raise."""
        if not self.pool or not action:
            return
        try:
            if action == "build":
                (a, ra), (b, rb) = self.pick(i), self.pick(j)
                self.pool.append((a * b, Ref(ra.data * rb.data, (ra, rb), "op", *OPS["*"][1:])))
            elif action == "backward":
                self.backward(i)
            elif action == "forward":
                self.forward(i)
            elif action == "evaluate":
                self.evaluate(i)
            elif action == "drop":
                self.pool.pop(i % len(self.pool))
        except BaseException as e:  # noqa: BLE001 - checked by an invariant
            self.errors.append(e)

    def sneaky(self, x, action, i, j):
        """A number whose __float__ first does something to both engines."""
        machine = self

        class Sneaky:
            def __float__(self):
                machine.act(action, i, j)
                return x

        numbers.Real.register(Sneaky)
        return Sneaky()

    @rule(x=numbers_)
    def leaf(self, x):
        self.pool.append((Value(x), Ref(x)))

    @rule(x=numbers_, action=ACTIONS, i=st.integers(0, 99), j=st.integers(0, 99))
    def sneaky_leaf(self, x, action, i, j):
        number = self.sneaky(x, action, i, j)
        self.pool.append((Value(number), Ref(x)))

    @rule(x=numbers_, action=ACTIONS, hook=st.sampled_from(["__del__", "weakref"]),
          i=st.integers(0, 99), j=st.integers(0, 99))
    def hooked_leaf(self, x, action, hook, i, j):
        """A subclass's leaf that does something to both engines as it is freed: perhaps
        while the engine frees a parent of it, when a graph holding it is dropped."""
        if hook == "__del__":
            leaf = Hooked(x)
            leaf.then = (weakref.ref(self), action, i, j)
        else:
            leaf = Watched(x)
            self.watchers.append(weakref.ref(leaf, functools.partial(
                _act_on, weakref.ref(self), action, i, j)))
        self.pool.append((leaf, Ref(x)))

    def evaluate(self, i):
        """Value.evaluate on one row of a leaf's own value: what forward() leaves."""
        ours, ref = self.pick(i)
        stack, seen, leaf = [ours], set(), None
        while stack and leaf is None:
            node = stack.pop()
            if id(node) not in seen:
                seen.add(id(node))
                if not node._prev and node._op == "":
                    leaf = node
                stack.extend(node._prev)
        if leaf is not None:
            self.replay(ref, lambda: Value.evaluate(ours, [leaf], [[leaf.data]]), "evaluate")

    @precondition(lambda self: self.pool)
    @rule(op=st.sampled_from(sorted(OPS)), i=st.integers(0, 99), j=st.integers(0, 99),
          x=numbers_, action=ACTIONS)
    def op(self, op, i, j, x, action):
        arity, value, local = OPS[op]
        (a, ra), (b, rb) = self.pick(i), self.pick(j)
        if arity == 2 and action:  # the right operand is a number with a __float__ of its own
            b, rb = self.sneaky(x, action, i, j), Ref(x)
        args, rargs = ((a, b), (ra, rb)) if arity == 2 else ((a,), (ra,))
        try:
            out, raised = OURS[op](*args), None
        except ERRORS as e:  # its type only: the exception's traceback would hold this frame,
            out, raised = None, type(e)  # and its Values, in a cycle freed at the GC's time
        try:  # after ours: the number's __float__ may have changed data (a forward())
            expected = value(*[r.data for r in rargs])
        except ERRORS as e:
            assert raised is not None and issubclass(raised, type(e)), \
                f"{op} did not raise {type(e).__name__}"
            return
        if raised is not None and not (isinstance(expected, complex) or abs(expected) > 1e100):
            raise AssertionError(f"{op} raised {raised.__name__}, the reference gave {expected}")
        if isinstance(expected, complex) or abs(expected) > 1e100:
            return
        self.pool.append((out, Ref(expected, rargs, "op", value, local)))

    @precondition(lambda self: len(self.pool) >= 2)
    @rule(idx=st.lists(st.integers(0, 99), min_size=1, max_size=6), relu=st.booleans(),
          fused=st.sampled_from(["sum", "dot"]), x=numbers_, action=ACTIONS)
    def fused_op(self, idx, relu, fused, x, action):
        pairs = [self.pick(i) for i in idx]
        if fused == "sum":
            if action:  # a number in the list whose __float__ acts while the sum is built
                pairs.insert(len(pairs) // 2, (self.sneaky(x, action, idx[0], idx[-1]), Ref(x)))
            out = Value.sum([p[0] for p in pairs])
            ref = Ref(0.0, [p[1] for p in pairs], "op", lambda *xs: sum(xs),
                      lambda n, g: (g,) * len(n.kids))
        else:
            n = len(pairs) // 2 or 1
            w, x = pairs[:n], (pairs[n:2 * n] if len(pairs) >= 2 * n else pairs[:n])
            out = Value.dot([p[0] for p in w], [p[0] for p in x], relu=relu)

            def value(*d, n=n, relu=relu):
                acc = 0.0
                for k in range(n):
                    acc += d[k] * d[n + k]
                return 0.0 if relu and acc < 0 else acc

            def local(node, g, n=n, relu=relu):
                if relu and node.data <= 0:
                    return (0.0,) * (2 * n)
                d = [k.data for k in node.kids]
                return tuple(x * g for x in d[n:]) + tuple(w * g for w in d[:n])

            ref = Ref(0.0, [p[1] for p in w + x], "op", value, local)
        ref.data = ref.value(*[k.data for k in ref.kids])
        self.pool.append((out, ref))

    @precondition(lambda self: self.pool)
    @rule(x=numbers_, idx=st.lists(st.integers(0, 99), max_size=3))
    def hand_built(self, x, idx):
        pairs = [self.pick(i) for i in idx]
        self.pool.append((Value(x, [p[0] for p in pairs], "hand"),
                          Ref(x, [p[1] for p in pairs], "custom")))

    @precondition(lambda self: self.pool)
    @rule(i=st.integers(0, 99))
    def drop(self, i):
        self.pool.pop(i % len(self.pool))

    @precondition(lambda self: self.pool)
    @rule(i=st.integers(0, 99))
    def backward(self, i):
        ours, ref = self.pick(i)
        ours.backward()
        ref.backward()

    @precondition(lambda self: self.pool)
    @rule(i=st.integers(0, 99))
    def forward(self, i):
        ours, ref = self.pick(i)
        self.replay(ref, ours.forward, "forward()")

    def replay(self, ref, ours, what):
        """ref.forward() and ours() (a replay of ours), which must raise where it raises."""
        try:
            ref.forward()
        except ERRORS as e:
            try:
                ours()
            except type(e):
                pass
            else:
                raise AssertionError(f"{what} did not raise {type(e).__name__}")
            self.resync(ref)  # which nodes a failed replay reached first depends on its order
            return
        ours()

    @precondition(lambda self: self.pool)
    @rule(i=st.integers(0, 99), j=st.integers(0, 99), x=numbers_)
    def replay_step(self, i, j, x):
        """A training loop's step on a replayed graph, with a grad set by hand between."""
        self.forward(i)
        self.set_by_hand(j, x, "grad")
        self.backward(i)

    @precondition(lambda self: self.pool)
    @rule(i=st.integers(0, 99), x=numbers_, what=st.sampled_from(["data", "grad"]))
    def set_by_hand(self, i, x, what):
        ours, ref = self.pick(i)
        if what == "data" and ref.kind == "op":
            return  # a replay would overwrite it anyway; set leaves' data
        setattr(ours, what, x)
        setattr(ref, what, x)

    def resync(self, ref):
        by_id = {id(r): v for v, r in self.pool}
        for node in ref.graph():
            if id(node) in by_id:
                node.data, node.grad = by_id[id(node)].data, by_id[id(node)].grad

    @invariant()
    def same_numbers(self):
        for ours, ref in self.pool:
            for a, b in [(ours.data, ref.data), (ours.grad, ref.grad)]:
                if math.isnan(b) or math.isinf(b) or abs(b) > 1e12:
                    continue  # the forward values already differ only where Python's do
                assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (ours, ref.data, ref.grad)

    @invariant()
    def invariants_hold(self):
        engine._check_invariants()

    @invariant()
    def hooks_raised_nothing(self):
        assert not self.errors, self.errors

    def teardown(self):
        self.pool.clear()  # the hooks of its leaves run now, on an empty pool


# a fifth of the profile's examples (60 in CI, 4,000 in a release run), 30 steps each
Engines.TestCase.settings = settings(stateful_step_count=30,
                                     max_examples=max(50, settings().max_examples // 5))


def test_the_engines_agree(path):
    # the same machine with every graph ordered depth-first, and by the tape where it pays
    Engines.TestCase("runTest").runTest()
