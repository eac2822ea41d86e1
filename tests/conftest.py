import importlib.util
import math
import os
import subprocess
import sys
import tempfile
import textwrap

import micrograd.engine
import pytest
from hypothesis import HealthCheck, settings

from micrograd_cy import Value, engine, train

# benchmarks/ (upstream_nn) lives in the clone, outside the package: appended, so the
# micrograd_cy under test, installed or the clone's, stays the one imported
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.append(ROOT)
from benchmarks.peers import upstream_nn  # noqa: E402

REL = 1e-9

# Property tests: "ci" by default (enough examples to matter, a few seconds each);
# HYPOTHESIS_PROFILE=release for a long fuzzing run before a release.
# (the `path` fixture sets a mode for the whole test: sharing it between examples is right)
_QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=300, deadline=None, suppress_health_check=_QUIET)
settings.register_profile("release", max_examples=20_000, deadline=None,
                          suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# PyTorch, the oracle, is in the test extra for the Python it has a wheel for. Tests that need
# it are marked `torch` (test_ops_torch.py and test_functional.py whole, elsewhere any test taking the `torch`
# fixture), so the other Pythons run the rest with -m "not torch" (noxfile.py). Without torch
# and without that flag the run stops: a suite that silently lost its oracle is not green.
HAVE_TORCH = importlib.util.find_spec("torch") is not None
collect_ignore = [] if HAVE_TORCH else ["test_ops_torch.py", "test_functional.py"]


def pytest_configure(config):
    if not HAVE_TORCH and "not torch" not in (config.getoption("markexpr") or ""):
        raise pytest.UsageError(
            "PyTorch, the tests' oracle, is not installed: install the test extra "
            "(pip install '.[test]') or leave its tests out with -m \"not torch\" "
            "(-m \"not torch and not slow\": the default run less them)")


def pytest_collection_modifyitems(items):
    for item in items:
        if "torch" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.torch)


@pytest.fixture(scope="session")
def torch():
    """PyTorch: a test that takes it is marked `torch`."""
    import torch
    return torch


def notebook_step(model, total_loss, k, steps=100):
    """Backward and the SGD update as demo.ipynb writes them: the loop optim.SGD and
    train.train are checked against."""
    model.zero_grad()
    total_loss.backward()
    learning_rate = train.learning_rate(k, steps)
    for p in model.parameters():
        p.data -= learning_rate * p.grad


def close(a, b, rel=REL, abs_tol=1e-12):
    """a equals b to relative 1e-9; NaNs equal NaNs and infinities match exactly."""
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


def readme_example(a, b):
    """micrograd's README expression on leaves a=-4, b=2 of any engine (Values or tensors).

    Written out as `c = c + (c + 1)` where the README has `c += c + 1`: the same association,
    so every engine computes the same sums in the same order.
    """
    c = a + b
    d = a * b + b**3
    c = c + (c + 1)
    c = c + (1 + c + (-a))
    d = d + (d * 2 + (b + a).relu())
    d = d + (3 * d + (b - a).relu())
    e = c - d
    f = e**2
    g = f / 2.0
    g = g + 10.0 / f
    return g


def torch_mlp(torch, model, params, h):
    """The output of nn.MLP `model` in PyTorch for the rows of h (a 2-D tensor): params are
    tensors in model.parameters() order (each neuron's weights, then its bias), ReLU between
    the layers, as micrograd's MLP."""
    k = 0
    for i, layer in enumerate(model.layers):
        nin, nout = len(layer.neurons[0].w), len(layer.neurons)
        rows = [params[k + j * (nin + 1):k + (j + 1) * (nin + 1)] for j in range(nout)]
        W = torch.stack([torch.stack(row[:nin]) for row in rows])
        b = torch.stack([row[nin] for row in rows])
        h = h @ W.T + b
        if i + 1 < len(model.layers):
            h = torch.relu(h)
        k += nout * (nin + 1)
    return h[:, 0]


@pytest.fixture(params=["tape", "depth-first"])
def path(request):
    """backward() and forward() order a graph by the tape where it pays, else depth-first:
    run a test each way (engine._use_depth_first forces the second)."""
    was = engine._use_depth_first(request.param == "depth-first")
    searches = engine._order_counts()[2]
    yield request.param
    engine._use_depth_first(was)
    if request.param == "depth-first":  # the switch did send the test's graphs there
        assert engine._order_counts()[2] > searches


@pytest.fixture(params=[Value, micrograd.engine.Value], ids=["micrograd_cy", "upstream"])
def ValueImpl(request):
    """The suite runs on both engines: what holds for upstream holds for ours."""
    return request.param


def run_probe(code, env=None):
    """Run code in a fresh interpreter (with env added to the environment); a crash there
    fails the test instead of killing it. (From an empty folder of its own: in the clone, `-c`
    would import the unbuilt source folder, and in the temporary folder whatever module a
    stray file there names, `attr.py` say, shadowing what hypothesis imports.)"""
    with tempfile.TemporaryDirectory() as empty:
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                             text=True, timeout=120, cwd=empty,
                             env=None if env is None else {**os.environ, **env})
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture
def patch():
    """Set class attributes (Value's, patched as users patch it) for one test, and take
    them back after."""
    undo = []

    def set_(cls, name, value):
        undo.append((cls, name, vars(cls).get(name)))
        setattr(cls, name, value)

    yield set_
    for cls, name, old in reversed(undo):
        if old is None:
            if name in vars(cls):
                delattr(cls, name)
        else:
            setattr(cls, name, old)


def in_threads(work, *args):
    """work(arg) for each arg, each in a thread of its own, all at once; re-raises the first
    exception any of them raised."""
    import threading
    errors = []

    def run(arg):
        try:
            work(arg)
        except BaseException as e:  # noqa: B036 - handed to the test below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
