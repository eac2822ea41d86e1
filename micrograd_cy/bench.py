"""Side-by-side benchmark: micrograd's moons demo step on every engine configuration.

Each configuration trains MLP(2, [16, 16, 1]) on make_moons(100, noise=0.1) from the same
seed with the notebook's SVM loss and SGD, in a child process of its own (one process tree,
no shared heap or GC state). The configurations take turns over several rounds, so a slow
spell on a shared machine hits them all alike, and the table reports medians over every
round's steps. Ratios are taken within the run: absolute times drift, ratios hold.
"""
import argparse
import gc
import importlib.machinery
import json
import math
import operator
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc

from micrograd_cy import demo, viz

# name -> (description, steps a round by default; the first step of each is a warm-up)
CONFIGS = {
    "upstream": ("upstream micrograd, as shipped", 3),
    "upstream-nogc": ("upstream micrograd, gc.disable()", 4),
    "dropin": ("upstream nn.py on micrograd_cy", 15),
    "dropin-replay": ("the same graph, replayed", 30),
    "native": ("micrograd_cy nn + fused loss", 30),
    "replay": ("micrograd_cy, graph replayed", 30),
    "replay-sgd": ("the same, optim.SGD's step in C", 30),
    "floats": ("floor: upstream nn.py's forward on floats", 15),
    "notebook": ("demo.ipynb's code, install_as_micrograd()", 15),
    "notebook-floats": ("floats: its forward alone, our nn's shape", 15),
    "torch": ("PyTorch, batched float64, 1 thread", 30),
    "jax": ("JAX, jit(value_and_grad), float64", 30),
    "batch": ("Value.evaluate, 25,600 rows, forward", 5),
    "torch-batch": ("PyTorch no_grad, the same 25,600 rows", 5),
}
PEERS = ("torch", "jax", "torch-batch")  # engines of others: run when installed
UPSTREAM = ("upstream", "upstream-nogc", "dropin", "dropin-replay", "floats")  # run its code
ROUNDS = 5  # this machine kind runs at one speed or half of it for seconds at a time

TARGETS = [  # (config, column, op, bound, what); the reference graph is upstream's, 65,818 nodes
    ("dropin", "vs_upstream", ">=", 200, "drop-in >= 200x upstream as shipped"),
    ("dropin", "vs_nogc", ">=", 20, "drop-in >= 20x upstream with GC off"),
    ("native", "vs_upstream", ">=", 800, "native >= 800x upstream as shipped"),
    ("replay", "vs_upstream", ">=", 3000, "replay >= 3000x upstream as shipped"),
    ("dropin-replay", "bwd_ns", "<=", 10, "backward <= 10 ns/node, reference graph, cached order"),
    ("dropin", "bwd_ns", "<=", 10, "backward <= 10 ns/node, reference graph, ordering included"),
    ("dropin", "bytes", "<=", 96, "<= 96 bytes/node, reference graph"),
    ("replay-sgd", "vs_jax", ">=", 1.25, "replay (optim.SGD) >= 1.25x JAX jit"),
    ("notebook", "vs_torch", ">=", 1.0, "demo.ipynb's code >= PyTorch batched"),
    ("batch", "step", "<=", 0.2, "decision-boundary grid (25,600 rows) < 0.2 s"),
]


def _engine(config):
    """(nn module, Value class, loss function) of a configuration."""
    if config.startswith("upstream"):
        import micrograd.engine
        import micrograd.nn
        return micrograd.nn, micrograd.engine.Value, demo.svm_loss
    from micrograd_cy import engine, nn
    if config.startswith("dropin"):
        return demo.upstream_nn(engine), engine.Value, demo.svm_loss
    if config == "notebook":  # as demo.ipynb runs after install_as_micrograd()
        import micrograd_cy
        micrograd_cy.install_as_micrograd()
        import micrograd.engine
        import micrograd.nn
        return micrograd.nn, micrograd.engine.Value, demo.svm_loss
    return nn, engine.Value, demo.svm_loss_fused


def _bytes_per_node(model, X, y, Value, loss_fn):
    """Memory a step's graph holds per node, by tracemalloc (the order included)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    total_loss, _ = loss_fn(model, X, y, Value)
    total_loss.backward()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    nodes = len(viz.trace(total_loss)[0])
    del total_loss
    model.zero_grad()
    return used / nodes, nodes


# The floor: upstream nn.py's forward, line for line, on plain floats. No engine driven by
# upstream's nn.py can build its graph faster than this computes the numbers alone.

def _relu(x):
    return 0 if x < 0 else x  # upstream's relu: Value(0 if self.data < 0 else self.data)


class _FloatNeuron:
    def __init__(self, neuron):
        self.w = [p.data for p in neuron.w]
        self.b = neuron.b.data
        self.nonlin = neuron.nonlin

    def __call__(self, x):
        act = sum((wi*xi for wi, xi in zip(self.w, x)), self.b)
        return _relu(act) if self.nonlin else act


class _FloatLayer:
    def __init__(self, layer):
        self.neurons = [_FloatNeuron(n) for n in layer.neurons]

    def __call__(self, x):
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out


class _FloatMLP:
    def __init__(self, mlp):
        self.layers = [_FloatLayer(layer) for layer in mlp.layers]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self):
        return [p for layer in self.layers for n in layer.neurons for p in n.w + [n.b]]


def _float_loss(model, X, y, alpha=1e-4):
    """demo.svm_loss on floats."""
    inputs = [list(map(float, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [_relu(1 + -yi*scorei) for yi, scorei in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * sum((p*p for p in model.parameters()))
    return data_loss + reg_loss


class _FloatShapedLikeOurs:
    """Our nn's MLP on plain floats: each neuron as micrograd_cy.nn computes it (bias +
    w[0]*x[0] + ..., folded left), written with Python's fastest float idiom."""

    def __init__(self, mlp):
        self.layers = [[([p.data for p in n.w], n.b.data, n.nonlin) for n in layer.neurons]
                       for layer in mlp.layers]
        self.params = [p for layer in self.layers for w, b, _ in layer for p in w + [b]]

    def __call__(self, x):
        mul = operator.mul
        for layer in self.layers:
            x = [_relu(sum(map(mul, w, x), b)) if nonlin else sum(map(mul, w, x), b)
                 for w, b, nonlin in layer]
        return x[0]

    def parameters(self):
        return self.params


def _run_floats(config, steps):
    """The demo loss's forward on floats, timed: upstream nn.py's shape (floats, the floor
    of the drop-in rows) or ours (notebook-floats, beside the notebook row)."""
    import random

    X, y = demo.moons()
    random.seed(1337)  # the same initial parameters as every other row
    if config == "floats":
        import micrograd.nn
        model = _FloatMLP(micrograd.nn.MLP(2, [16, 16, 1]))
    else:
        from micrograd_cy import nn
        model = _FloatShapedLikeOurs(nn.MLP(2, [16, 16, 1]))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = _float_loss(model, X, y)
        times.append(time.perf_counter() - t0)
    # no gradients, no update: only the first step's loss is the others' first step
    return {"config": config, "losses": [float(loss)], "nodes": None, "bytes": None,
            "step": times[1:], "fwd": times[1:], "bwd": [0.0] * (steps - 1)}


def _initial_arrays():
    """The demo's MLP(2, [16, 16, 1]) initial parameters (seed 1337) as numpy arrays, (W, b)
    a layer, and the moons data: what the batched engines start from."""
    import random

    import numpy as np

    from micrograd_cy import nn
    X, y = demo.moons()
    random.seed(1337)
    model = nn.MLP(2, [16, 16, 1])
    layers = [(np.array([[p.data for p in n.w] for n in layer.neurons]),
               np.array([n.b.data for n in layer.neurons])) for layer in model.layers]
    return model, layers, X, y.astype(np.float64)


def _batched_scores(h, params, relu):
    """The MLP's scores for the rows of h, all at once: params is [W0, b0, W1, b1, ...]
    (arrays or tensors of any library with @ and .T), relu between layers."""
    for i in range(0, len(params), 2):
        h = h @ params[i].T + params[i + 1]
        if i + 2 < len(params):
            h = relu(h)
    return h[:, 0]


def _batched_loss(X, y, params, relu, alpha=1e-4):
    """demo.svm_loss, batched: the mean hinge loss plus alpha times the sum of squares."""
    return relu(1 - y * _batched_scores(X, params, relu)).mean() + \
        alpha * sum((p * p).sum() for p in params)


def _run_peer(config, steps):
    """The demo step on another engine, batched over the 100 samples, float64: PyTorch
    (autograd, one thread) or JAX (one jit of value_and_grad and the SGD update)."""
    _, layers, X, y = _initial_arrays()
    times = {"step": [], "fwd": [], "bwd": []}
    losses = []
    if config == "torch":
        import torch
        torch.set_num_threads(1)
        Xt, yt = torch.tensor(X), torch.tensor(y)
        params = [torch.tensor(a, requires_grad=True) for pair in layers for a in pair]

        for k in range(steps):
            t0 = time.perf_counter()
            loss = _batched_loss(Xt, yt, params, torch.relu)
            t1 = time.perf_counter()
            for p in params:
                p.grad = None
            t2 = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            with torch.no_grad():
                learning_rate = 1.0 - 0.9 * k / demo.STEPS
                for p in params:
                    p -= learning_rate * p.grad
            t4 = time.perf_counter()
            losses.append(loss.item())
            times["step"].append(t4 - t0)
            times["fwd"].append(t1 - t0)
            times["bwd"].append(t3 - t2)
    else:
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_platforms", "cpu")
        Xj, yj = jnp.asarray(X), jnp.asarray(y)
        params = [jnp.asarray(a) for pair in layers for a in pair]

        @jax.jit
        def step(params, learning_rate):
            loss, grads = jax.value_and_grad(_batched_loss, argnums=2)(Xj, yj, params, jax.nn.relu)
            return loss, [p - learning_rate * g for p, g in zip(params, grads)]

        step(params, 1.0)[0].block_until_ready()  # compiled before the clock starts
        for k in range(steps):
            t0 = time.perf_counter()
            loss, params = step(params, 1.0 - 0.9 * k / demo.STEPS)
            loss.block_until_ready()
            t1 = time.perf_counter()
            losses.append(float(loss))
            times["step"].append(t1 - t0)
            times["fwd"].append(t1 - t0)
            times["bwd"].append(0.0)
    return {"config": config, "losses": losses, "nodes": None, "bytes": None,
            **{k: v[1:] for k, v in times.items()}}


def _run_batch(config, steps):
    """The model's scores on the plot's 25,600 grid points, forward only: Value.evaluate on
    a graph built once, or PyTorch under no_grad. Its loss: the demo's first, from the
    scores of the 100 samples evaluated the same way."""
    from micrograd_cy import plot
    model, layers, X, y = _initial_arrays()
    points = plot.grid(X)[2]  # the plot's grid (micrograd-cy train --plot)
    alpha = 1e-4
    reg = alpha * sum(p.data * p.data for p in model.parameters())
    if config == "batch":
        from micrograd_cy import Value
        x = [Value(0.0), Value(0.0)]
        out = model(x)

        def scores(rows):
            return Value.evaluate(out, x, rows)
    else:
        import torch
        torch.set_num_threads(1)
        weights = [torch.tensor(a) for pair in layers for a in pair]

        def scores(rows):
            with torch.no_grad():
                return _batched_scores(torch.tensor(rows), weights, torch.relu).numpy()
    losses = [max(0.0, 1 - yi * si) for yi, si in zip(y.tolist(), scores(X).tolist())]
    loss = sum(losses) * (1.0 / len(losses)) + reg
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        scores(points)
        times.append(time.perf_counter() - t0)
    return {"config": config, "losses": [loss], "nodes": None, "bytes": None, "rows": len(points),
            "step": times[1:], "fwd": times[1:], "bwd": [0.0] * (steps - 1)}


def run_worker(config, steps, memory=True):
    """Train `steps` steps in this process; return timings, losses and (with memory) graph sizes."""
    if config in PEERS:
        missing = _missing(config)
        if missing:
            return {"config": config, "skipped": missing}
    if config in ("floats", "notebook-floats"):
        return _run_floats(config, steps)
    if config in ("torch", "jax"):
        return _run_peer(config, steps)
    if config in ("batch", "torch-batch"):
        return _run_batch(config, steps)
    if config == "crowd":
        return _small_backward()
    if config == "unrelated":
        return _unrelated_writes()
    nn, Value, loss_fn = _engine(config)
    X, y = demo.moons()
    import random
    random.seed(1337)
    model = nn.MLP(2, [16, 16, 1])
    # first, on a cold heap: nothing freed yet, so no freelist can hide an allocation
    # (slow on upstream's graph under tracemalloc: measured once, in the first round)
    bytes_per_node, nodes = _bytes_per_node(model, X, y, Value, loss_fn) if memory else (None, None)
    if config == "upstream-nogc":
        gc.disable()
    params = model.parameters()
    opt = None
    if config == "replay-sgd":
        from micrograd_cy.optim import SGD
        opt = SGD(params)
    times = {"step": [], "fwd": [], "bwd": []}
    losses = []
    total_loss = None
    for k in range(steps):
        t0 = time.perf_counter()
        if "replay" in config and total_loss is not None:
            total_loss.forward()
        else:
            total_loss = None  # the last step's graph is freed inside the timed step
            total_loss, _ = loss_fn(model, X, y, Value)
        t1 = time.perf_counter()
        if opt is None:  # in the step, not in "bwd": the issue times backward alone
            model.zero_grad()
        else:
            opt.zero_grad()
        t2 = time.perf_counter()
        total_loss.backward()
        t3 = time.perf_counter()
        learning_rate = 1.0 - 0.9 * k / demo.STEPS
        if opt is not None:
            opt.step(learning_rate)
        else:
            for p in (model.parameters() if config == "notebook" else params):  # as the notebook
                p.data -= learning_rate * p.grad
        t4 = time.perf_counter()
        losses.append(float(total_loss.data))
        times["step"].append(t4 - t0)
        times["fwd"].append(t1 - t0)
        times["bwd"].append(t3 - t2)
    warm = slice(1, None) if steps > 1 else slice(None)  # the first step warms caches up
    return {"config": config, "losses": losses, "nodes": nodes, "bytes": bytes_per_node,
            **{k: v[warm] for k, v in times.items()}}


def _missing(config):
    """Why a peer's row cannot run here ('' when it can)."""
    import importlib.util
    module = "jax" if config == "jax" else "torch"
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install {module}{'[cpu]' if module == 'jax' else ''})"
    return ""


def _small_backward(repeats=5000, crowd=1_000_000):
    """Median seconds of backward() on a 4-node graph that reaches an op node built earlier:
    with nothing else alive, then with `crowd` unrelated nodes kept alive, built after it."""
    from micrograd_cy import Value

    def median_backward(old):
        times = []
        for _ in range(repeats):
            y = (old * 2.0 + 1.0).tanh()
            t0 = time.perf_counter()
            y.backward()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    old = Value(0.5) * 3.0
    alone = median_backward(old)
    kept = Value(1.0)
    for i in range(crowd):  # a running statistic kept alive: one live node a step
        kept = kept + 1.0 if i % 2 else kept * 1.0
    return {"config": "crowd", "alone": alone, "crowded": median_backward(old), "crowd": crowd}


def _unrelated_writes(calls=20000, rounds=7):
    """Seconds a call of the demo's MLP takes (the best of `rounds`, `calls` calls each):
    quiet, and with an attribute written on an unrelated module before every call (a model's
    caches must notice only changes to itself, never the rest of the process)."""
    import random
    import timeit

    from micrograd_cy import nn
    random.seed(1337)
    model, other = nn.MLP(2, [16, 16, 1]), nn.MLP(2, [16, 1])
    x = [0.5, -0.25]

    def noisy():
        other.layers[0].neurons[0].note = x
        model(x)

    quiet = min(timeit.repeat(lambda: model(x), number=calls, repeat=rounds)) / calls
    written = min(timeit.repeat(noisy, number=calls, repeat=rounds)) / calls
    write = min(timeit.repeat(lambda: setattr(other.layers[0].neurons[0], "note", x),
                              number=calls, repeat=rounds)) / calls
    return {"config": "unrelated", "quiet": quiet, "written": written - write, "write": write}


def _spawn(config, steps, memory):
    # the worker runs where it imports this very package, wherever the caller stands
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "micrograd_cy.bench", "--worker", config,
                          "--steps", str(steps)] + (["--memory"] if memory else []),
                         capture_output=True, text=True, check=False, cwd=here)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark worker {config} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.machine()}")


def run(configs, scale=1.0, rounds=ROUNDS, echo=print, skipped=None):
    """Run every configuration `rounds` times, taking turns; per-step medians over all.
    A peer that is not installed is left out, its reason put in `skipped` (a dict)."""
    results = {}
    skipped = {} if skipped is None else skipped
    for r in range(rounds):
        for c in configs:
            if c in skipped:
                continue
            steps = max(2, round(CONFIGS[c][1] * scale))
            echo(f"  round {r + 1}/{rounds}: {c} ({steps} steps)...", file=sys.stderr)
            one = _spawn(c, steps, memory=r == 0)
            if "skipped" in one:
                skipped[c] = one["skipped"]
                continue
            if c not in results:
                results[c] = one
                one["round_steps"] = []
            else:
                for k in ("step", "fwd", "bwd"):
                    results[c][k] += one[k]
            results[c]["round_steps"].append(statistics.median(one["step"]))
    for r in results.values():
        r["steps"] = len(r["step"])
        for k in ("step", "fwd", "bwd"):
            r[k] = statistics.median(r[k])
    base = results.get("upstream")
    nogc = results.get("upstream-nogc")
    torch, jax = results.get("torch"), results.get("jax")
    for c, r in results.items():
        batch = c in ("batch", "torch-batch")  # another unit: a grid's rows, not a step
        r["vs_upstream"] = base["step"] / r["step"] if base and not batch else math.nan
        r["vs_nogc"] = nogc["step"] / r["step"] if nogc and not batch else math.nan
        r["vs_torch"] = torch["step"] / r["step"] if torch and not batch else math.nan
        r["vs_jax"] = jax["step"] / r["step"] if jax and not batch else math.nan
        r["fwd_ns"] = r["fwd"] / r["nodes"] * 1e9 if r["nodes"] else math.nan
        r["bwd_ns"] = r["bwd"] / r["nodes"] * 1e9 if r["nodes"] else math.nan
    if "batch" in results and "torch-batch" in results:  # the batch rows against each other
        for c in ("batch", "torch-batch"):
            results[c]["vs_torch"] = results["torch-batch"]["step"] / results[c]["step"]
    return results


FIRST_LOSS_ONLY = PEERS + ("jax", "batch")  # batched float sums: their later steps drift apart


def same_losses(results, rel=1e-9):
    """Every configuration's loss at each step it ran agrees with every other's (the
    batched engines' first loss only: they sum in another order, and steps compound it)."""
    runs = list(results.values())
    for r in runs[1:]:
        n = min(len(r["losses"]), len(runs[0]["losses"]))
        if r["config"] in FIRST_LOSS_ONLY or runs[0]["config"] in FIRST_LOSS_ONLY:
            n = 1
        for a, b in zip(r["losses"][:n], runs[0]["losses"][:n]):
            if not math.isclose(a, b, rel_tol=rel):
                return False
    return True


def table(results):
    head = (f"| {'configuration':44} | {'step ms':>9} | {'rounds ms':>17} | {'vs upstream':>11} | {'vs no-GC':>9} | "
            f"{'vs torch':>8} | {'vs JAX':>6} | "
            f"{'fwd ns/node':>11} | {'bwd ns/node':>11} | {'B/node':>6} | {'nodes':>6} |")
    rule = "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"
    lines = [head, rule]
    for c, r in results.items():
        up = "-" if math.isnan(r["vs_upstream"]) else f"{r['vs_upstream']:.0f}x"
        nogc = "-" if math.isnan(r["vs_nogc"]) else f"{r['vs_nogc']:.1f}x"
        torch = "-" if math.isnan(r["vs_torch"]) else f"{r['vs_torch']:.2f}x"
        jax = "-" if math.isnan(r["vs_jax"]) else f"{r['vs_jax']:.2f}x"
        if r["nodes"]:
            per_node = f"{r['fwd_ns']:11.1f} | {r['bwd_ns']:11.1f} | {r['bytes']:6.0f} | {r['nodes']:6d}"
        else:  # no graph
            per_node = f"{'-':>11} | {'-':>11} | {'-':>6} | {'-':>6}"
        rounds = r.get("round_steps") or [r["step"]]  # each round's median: the spread
        spread = f"{min(rounds) * 1e3:.3f}-{max(rounds) * 1e3:.3f}"
        lines.append(f"| {CONFIGS[c][0]:44} | {r['step'] * 1e3:9.3f} | {spread:>17} | {up:>11} | "
                     f"{nogc:>9} | {torch:>8} | {jax:>6} | {per_node} |")
    return "\n".join(lines)


def check_targets(results):
    """[(what, measured, met)] for every target whose configurations ran."""
    out = []
    for config, column, op, bound, what in TARGETS:
        if config not in results or math.isnan(results[config][column]):
            continue
        value = results[config][column]
        met = value >= bound if op == ">=" else value <= bound
        out.append((what, value, met))
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block, as micrograd-cy train's
        self.exit(2, f"{self.prog}: error: {message}\n")


def _ratio_target(targets, what, ratio, bound):
    """Add to targets, and print, the target that ratio (measured apart from the rounds) is
    at most bound."""
    met = ratio <= bound
    targets.append((f"{what} (<= {bound:g}x)", ratio, met))
    print(f"target {'met    ' if met else 'NOT met'}: {targets[-1][0]} (measured {ratio:.2f})")


def main(argv=None):
    parser = _Parser(prog="micrograd-cy bench", description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated, from: {', '.join(CONFIGS)}")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every configuration's step count (default 1)")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"times each configuration runs, taking turns (default {ROUNDS})")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is not met")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.steps, args.memory)))
        return 0
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    if not configs:
        parser.error("--configs names no configuration")
    if not (math.isfinite(args.scale) and args.scale > 0):
        parser.error(f"--scale must be a positive number, not {args.scale}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            parser.error(f"the folder {folder!r} for the results does not exist")
    # looked up as demo.upstream_nn looks it up; the workers would each fail with a traceback
    need_upstream = [c for c in configs if c in UPSTREAM]
    if need_upstream and importlib.machinery.PathFinder.find_spec("micrograd") is None:
        parser.error(f"{', '.join(need_upstream)} run upstream micrograd, which is not "
                     f"installed: pip install micrograd (or leave them out with --configs)")
    print(f"micrograd's moons demo step (MLP(2, [16, 16, 1]), 100 samples): medians over "
          f"{args.rounds} interleaved rounds")
    print(f"machine: {machine()}")
    skipped = {}
    results = run(configs, args.scale, args.rounds, skipped=skipped)
    print(table(results))
    for c, why in skipped.items():
        print(f"skipped: {CONFIGS[c][0]}: {why}")
    for c in ("batch", "torch-batch"):
        if c in results:
            r = results[c]
            print(f"{CONFIGS[c][0]}: {r['rows'] / r['step']:,.0f} rows/s"
                  + (f" ({r['vs_torch']:.2f}x PyTorch no_grad)" if not math.isnan(r["vs_torch"]) else ""))
    agree = same_losses(results)
    print(f"losses: {'every configuration gives the same loss at every step' if agree else 'DIFFER'}"
          f" (relative 1e-9; first step {next(iter(results.values()))['losses'][0]:.12f})")
    targets = check_targets(results)
    for what, value, met in targets:
        print(f"target {'met    ' if met else 'NOT met'}: {what} (measured {value:.3g})")
    if "floats" in results:
        f = results["floats"]
        ratios = [f"{f[k]:.{d}f}x {name}" for k, d, name in [("vs_upstream", 0, "upstream as shipped"),
                                                            ("vs_nogc", 1, "upstream with GC off")]
                  if not math.isnan(f[k])]
        print(f"floor: upstream nn.py's forward on plain floats takes {f['step'] * 1e3:.2f} ms"
              f"{' (' + ', '.join(ratios) + ')' if ratios else ''}: no engine driven by "
              f"upstream's nn.py can build its graph faster")
    crowd = _spawn("crowd", 0, False)
    ratio = crowd["crowded"] / crowd["alone"]
    print(f"small backward (4 nodes reaching an old one): {crowd['alone'] * 1e6:.2f} us alone, "
          f"{crowd['crowded'] * 1e6:.2f} us with {crowd['crowd']:,} unrelated live nodes "
          f"({ratio:.2f}x)")
    _ratio_target(targets, "small backward costs the same with a million live nodes", ratio, 2.0)
    results["crowd"] = crowd
    unrelated = _spawn("unrelated", 0, False)
    ratio = unrelated["written"] / unrelated["quiet"]
    print(f"an MLP call: {unrelated['quiet'] * 1e6:.2f} us quiet, {unrelated['written'] * 1e6:.2f} "
          f"us with an unrelated module written before each ({ratio:.2f}x; the write itself, "
          f"{unrelated['write'] * 1e6:.2f} us, taken out)")
    _ratio_target(targets, "an MLP call costs the same while unrelated modules are written",
                  ratio, 1.2)
    results["unrelated"] = unrelated
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "results": results}, f, indent=1)
    if not agree or (args.check and not all(met for _, _, met in targets)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
