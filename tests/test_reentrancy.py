"""Python code running inside the engine: a number's __float__ in the middle of a build, a
subclass child's __del__ or weakref callback in the middle of a free, another thread taking
the GIL at either. Any of them may run any engine operation; the engine must never let a
walk meet a node half built or half freed (docs/architecture.md: Python code inside the
engine). Crashes are probed in a child interpreter, under Python's debug allocator, which
fills freed memory so that a read of it goes wrong at once."""
import math
import textwrap

import pytest

from conftest import close, run_probe
from test_reliability import run_in_threads
from micrograd_cy import Value

# A graph whose backward() walk hands over to a depth-first search across the stretch of
# tape where the engine is at work: `start` is built first, then 400 unrelated nodes kept
# alive, and the walk of `start + 1 + 1 + 1`, made later, passes them all.
HAND_OVER = """
from micrograd_cy import Value
a = Value(1.0)
start = a * 1.0
junk = [a * 2.0 for _ in range(400)]

def walk_across():
    u = start
    for _ in range(3):
        u = u + 1.0
    u.backward()
    assert a.grad == 1.0, a.grad
    a.grad = 0.0
"""


def probe(code):
    return run_probe(HAND_OVER + textwrap.dedent(code), env={"PYTHONMALLOC": "debug"})


def test_a_walk_from_a_float_inside_a_net_call_never_meets_the_half_built_node():
    out = probe("""
    from micrograd_cy.nn import MLP
    class Walks(float):
        def __float__(self):
            walk_across()
            return 0.5
    m = MLP(2, [4, 4, 1])
    y = m([Walks(0.5), 0.3])
    assert y.data == m([0.5, 0.3]).data
    print("ok")
    """)
    assert out.strip() == "ok"


@pytest.mark.parametrize("wider", [True, False])
def test_a_net_called_while_its_init_drops_the_old_layers_sees_the_new_ones_whole(wider):
    # dropping the old rows runs a row's __del__, which calls the net: before, it met the new
    # rows with the old sizes, and the PARAMS node it read overran its array (or read past it)
    out = probe(f"""
    from micrograd_cy.engine import Net
    hook = []
    class Row(list):
        def __del__(self):
            while hook:
                hook.pop()()
    def rows(n, nin):
        return [Row(Value(0.1 * (i + j + 1)) for j in range(nin)) for i in range(n)]
    def small():
        return [(rows(1, 2), [Value(0.5)], False)]
    def large():
        return [(rows(64, 2), [Value(0.0)] * 64, True), (rows(1, 64), [Value(0.25)], False)]
    old, new = (small, large) if {wider} else (large, small)
    net = Net(old())  # its rows die with the net's hold on them, in __init__ below
    net([1.0, 2.0])
    seen = []
    hook.append(lambda: seen.append(net([1.0, 2.0]).data))
    net.__init__(new())
    assert seen == [net([1.0, 2.0]).data], (seen, net([1.0, 2.0]).data)
    print("ok")
    """)
    assert out.strip() == "ok"


@pytest.mark.parametrize("build", [
    "Value.sum([Walks(0.5), a, 2.0])",
    "Value.dot([a, Walks(0.5)], [a, 3.0], 1.0)",
    "Value.matvec([[a, a]], [Walks(0.5), 3.0], [1.0])[0]",
    "a ** Walks(2.0)",
])
def test_a_walk_from_a_float_inside_any_builder_is_sound(build):
    out = probe(f"""
    class Walks(float):
        def __float__(self):
            walk_across()
            return float.__float__(self)
    y = {build}
    y.backward()
    print(y.data)
    """)
    assert math.isfinite(float(out))


@pytest.mark.parametrize("hook", ["__del__", "weakref"])
def test_a_walk_from_a_child_dying_inside_a_free_never_meets_freed_children(hook):
    # the parent releases s1 (its memory freed at once), then s2, whose hook walks the tape
    # across the parent's entry: it must not read s1 through the parent
    out = probe(f"""
    import weakref
    class Child(Value):
        pass
    hooks = []
    def hook(*_):
        walk_across()
        junk.append(Value(5.0) * 2.0)  # allocations in the hook reuse the freed memory
    s1, s2 = Child(1.0), Child(2.0)
    if {hook!r} == "__del__":
        Child.__del__ = lambda self: hook() if self.data == 2.0 else None
    else:
        hooks.append(weakref.ref(s2, hook))
    parent = s1 + s2
    top = parent * 1.0
    del s1, s2, parent
    for _ in range(3):
        del top
        s1, s2 = Child(1.0), Child(2.0)
        if hooks:
            hooks.append(weakref.ref(s2, hook))
        parent = s1 + s2
        top = parent * 1.0
        del s1, s2, parent
    del top
    print("ok", len(junk))
    """)
    assert out.split()[0] == "ok"


def test_a_node_built_inside_a_build_stands_below_it_on_the_tape(torch):
    # reading the list's second item builds c and puts it in the third slot: the sum has c
    # as a child though c was made after the sum started; the walk must still meet c after
    # the sum, or c's and t's grads are wrong (the leaves' come out right either way)
    a, b = Value(1.5), Value(-0.7)
    made = {}

    class Builds(float):
        def __float__(self):
            t = a * b
            c = t.tanh()
            made.update(t=t, c=c)
            items[2] = c
            return 2.0

    items = [a, Builds(2.0), None]
    s = Value.sum(items)
    c = made["c"]
    (s * c + c).backward()

    ta = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(-0.7, dtype=torch.float64, requires_grad=True)
    tt = ta * tb
    tc = tt.tanh()
    for t in (tt, tc):
        t.retain_grad()
    ts = ta + 2.0 + tc
    (ts * tc + tc).backward()
    for ours, theirs in [(c, tc), (made["t"], tt), (a, ta), (b, tb)]:
        assert close(ours.grad, theirs.grad.item())


def test_a_thread_walking_while_another_reads_slow_numbers_into_a_net():
    # a number whose float() runs Python code lets the GIL pass to the other thread in the
    # middle of a build; this one runs long enough that the other thread's walks, which hand
    # over across every node built since `junk`, often meet the build under way
    out = run_probe(HAND_OVER + """
import random, sys, threading
from micrograd_cy.nn import MLP
sys.setswitchinterval(1e-6)

class Slow(float):
    def __float__(self):
        sum(range(300))
        return float.__float__(self)

def train(model, out):
    rng = random.Random(1)
    for _ in range(150):
        y = model([Slow(rng.randint(-20, 20) / 7) for _ in range(2)])
        model.zero_grad()
        y.backward()
        out.append((y.data, [p.grad for p in model.parameters()]))

def model():
    random.seed(1)
    return MLP(2, [16, 16, 1])

alone = []
train(model(), alone)
stop = False
def walker():
    while not stop:
        walk_across()
thread = threading.Thread(target=walker)
thread.start()
together = []
try:
    train(model(), together)
finally:
    stop = True
    thread.join()
assert together == alone
print("ok")
""")
    assert out.strip() == "ok"


def stress(seed, models, shared, steps):
    """One thread's work: train its own MLP on inputs of every kind (floats, Fractions,
    numpy scalars, Values), with the shared MLP's output in the loss; backward(), a replay
    (forward() then backward()), evaluate, SGD; old graphs kept and dropped at random.
    Returns every number it saw."""
    import random
    from fractions import Fraction

    import numpy as np

    from micrograd_cy.optim import SGD

    rng = random.Random(seed)
    model = models[seed]
    opt = SGD(model.parameters(), lr=0.05)
    kept, seen = [], []
    kinds = [float, lambda v: Fraction(v).limit_denominator(1000), np.float64, Value]
    for _ in range(steps):
        x = [rng.choice(kinds)(rng.uniform(-2, 2)) for _ in range(2)]
        target = rng.choice((-1.0, 1.0))
        loss = (1 + -target * (model(x) + 0.1 * shared(x))).relu() + 1e-3 * sum(
            p * p for p in model.parameters()[:8])
        opt.zero_grad()
        loss.backward()
        seen += [loss.data] + [p.grad for p in model.parameters()]
        leaves = [Value(v.data if isinstance(v, Value) else float(v)) for v in x]
        out = model(leaves)
        seen += list(Value.evaluate(out, leaves, [[0.5, -0.5], [1.0, 2.0]]))
        leaves[0].data = 0.25
        out.forward()
        out.backward()
        seen += [out.data, leaves[0].grad]
        opt.step()
        kept.append(loss if rng.random() < 0.5 else out)
        if len(kept) > 3:
            del kept[rng.randrange(len(kept))]
    return seen


def test_threads_training_sharing_a_model_get_the_numbers_of_one_thread(path):
    """Several threads, their own models and one shared, every kind of input and operation;
    on the debug build (tests/test_debug_build.py) every call also checks the invariants."""
    import random

    from micrograd_cy import nn

    def models():
        random.seed(11)
        return {seed: nn.MLP(2, [8, 8, 1]) for seed in range(4)}, nn.MLP(2, [4, 1])

    own, shared = models()
    alone = [stress(seed, own, shared, 25) for seed in own]
    own, shared = models()
    together = run_in_threads([(seed, own, shared, 25) for seed in own], stress)
    if path == "depth-first":  # an order that depends on each graph alone: the very numbers
        assert together == alone
    else:  # a walk crowded by other threads' nodes hands over: the same terms, in another order
        for ours, theirs in zip(together, alone):
            assert all(close(a, b, rel=1e-12) for a, b in zip(ours, theirs))
