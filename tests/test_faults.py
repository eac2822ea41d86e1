"""Out of memory, on purpose: every allocation the engine makes fails in turn, and each time
the call raises MemoryError (or succeeds), the engine's invariants hold, and every graph
still gives PyTorch's gradients. Needs the debug build (engine._fail_allocations), which
tests/test_debug_build.py makes and runs this file on; skipped on the release build.
"""
import math
import subprocess
import sys
import textwrap

import pytest

from conftest import close, torch_mlp
from micrograd_cy import Value, engine

debug_only = pytest.mark.skipif(not engine._DEBUG, reason="needs the debug build "
                                "(tests/test_debug_build.py runs this file on it)")


def chain_with_hand_built(n):
    """A chain of n ops whose root is hand-built: ordered depth-first, its stack grows."""
    x = Value(0.5)
    v = x
    for i in range(n):
        v = (v * 1.0001 + 0.001) if i % 2 else v.tanh()
    return x, Value(0.0, (v, x), "hand") * 1.0 + v  # the hand-built node hands over too


def expected_grad(n):
    x = 0.5
    d = 1.0
    for i in range(n):
        if i % 2:
            x, d = x * 1.0001 + 0.001, d * 1.0001
        else:
            x, d = math.tanh(x), d * (1 - math.tanh(x) ** 2)
    return d  # through v only: the hand-built node has no rule


def run_failing(action, limit=400):
    """action() with the n-th allocation failing, for n = 0, 1, ... until it succeeds."""
    failures = 0
    for n in range(limit):
        engine._fail_allocations(n)
        try:
            action()
        except MemoryError:
            failures += 1
            continue
        finally:
            engine._fail_allocations(-1)
            engine._check_invariants()
        return failures
    raise AssertionError(f"still failing after {limit} allocations")


@debug_only
def test_building_graphs_out_of_memory():
    built = []
    failures = run_failing(lambda: built.append(chain_with_hand_built(300)))
    x, root = built[-1]
    root.backward()
    assert close(x.grad, expected_grad(300))
    assert failures > 0  # the tape, the slabs and the kids arrays did run out


@debug_only
def test_backward_out_of_memory_leaves_every_graph_usable(path):
    x, root = chain_with_hand_built(3000)  # deep enough that the orders grow
    other_x, other = chain_with_hand_built(50)

    def backward():
        x.grad = 0.0
        root.backward()

    failures = run_failing(backward)
    assert failures > 0
    assert close(x.grad, expected_grad(3000))
    x.grad = 0.0
    root.backward()  # again, after the failures: the same
    assert close(x.grad, expected_grad(3000))
    other.backward()
    assert close(other_x.grad, expected_grad(50))


@debug_only
def test_forward_out_of_memory_leaves_the_graph_replayable():
    x, root = chain_with_hand_built(2000)
    failures = run_failing(lambda: root.forward())
    assert failures > 0
    x.data = 0.5
    root.forward()
    x.grad = 0.0
    root.backward()
    assert close(x.grad, expected_grad(2000))


@debug_only
def test_fused_nodes_out_of_memory():
    w = [Value(0.1 * i) for i in range(200)]
    xs = [float(i) for i in range(200)]
    made = []
    run_failing(lambda: made.append((Value.sum(w), Value.dot(w, xs, 1.0, relu=True),
                                     Value.matvec([w, w], xs, [0.5, -0.5]))))
    s, d, rows = made[-1]
    (s + d + rows[0] + rows[1]).backward()
    assert w[3].grad == 1.0 + 3.0 + 3.0 + 3.0


@debug_only
def test_an_mlp_node_out_of_memory(torch):
    """nn.MLP's one node a call (engine.Net): its PARAMS node and its own, each allocation
    failing in turn; the graph that finally builds gives PyTorch's gradients."""
    from micrograd_cy import nn
    made = []

    def build():
        model = nn.MLP(3, [4, 4, 1])  # a new model: its PARAMS node is built under the failures
        made.append((model, model([0.5, -1.0, 2.0])))
    failures = run_failing(build)
    assert failures > 0
    model, out = made[-1]
    assert out._op == "mlp"
    out.backward()
    t = [torch.tensor(p.data, dtype=torch.float64, requires_grad=True) for p in model.parameters()]
    h = torch_mlp(torch, model, t, torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64))
    h[0].backward()
    assert close(out.data, h[0].item())
    assert all(close(p.grad, q.grad.item()) for p, q in zip(model.parameters(), t))


@debug_only
def test_the_switch_fails_what_it_says():
    engine._fail_allocations(0)
    try:
        with pytest.raises(MemoryError):
            Value.sum([Value(1.0), Value(2.0)])
    finally:
        engine._fail_allocations(-1)
    assert Value.sum([Value(1.0), Value(2.0)]).data == 3.0


def test_the_switch_is_refused_on_the_release_build():
    if engine._DEBUG:
        pytest.skip("this is the debug build")
    with pytest.raises(RuntimeError, match="debug build"):
        engine._fail_allocations(0)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS as Linux enforces it")
@pytest.mark.skipif(engine._DEBUG, reason="the release build's allocator, on a graph too big "
                    "for the debug build's checks")
def test_an_address_space_limit_gives_memory_error_not_a_crash(tmp_path):
    # the depth-first order of a deep graph outgrows a 1.5 GB address space
    code = textwrap.dedent("""
        import resource
        from micrograd_cy import Value, engine
        x = Value(0.5)
        v = x
        for i in range(200_000):
            v = v * 1.0 + 0.0
        root = Value(0.0, (v,), "hand") + v
        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (mapped + 64 * 2**20, resource.RLIM_INFINITY))
        hogs = []
        try:
            while True:
                hogs.append(bytearray(2**16))
        except MemoryError:
            pass
        try:
            root.backward()
        except MemoryError:
            print("MemoryError")
        del hogs
        engine._check_invariants()
        x.grad = 0.0
        root.backward()
        print("grad", x.grad)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)  # not the clone, whose source folder -c would import
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["MemoryError", "grad", "1.0"]
