"""The configurations: one entry each in CONFIGS, and the targets they are held to.

A configuration is a name, what it is, its steps a round, and run(steps, memory), which runs
in a worker and returns its measurements (harness.timed_steps). Configurations of one kind
time the same work and are compared with each other: a `reference` configuration gives the
others of its kind a ratio column (vs_torch: its time over theirs).
"""
from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any, Callable, Optional

from benchmarks import floors, peers
from benchmarks.harness import SCHEDULE_STEPS, SEED, SIZES, Run, initial_arrays, timed_steps
from benchmarks.peers import JAX, TORCH, UPSTREAM, Peer
from micrograd_cy import datasets  # numpy comes with train, in the workers: --help needs none


@dataclass(frozen=True)
class Config:
    name: str
    description: str
    steps: int                        # a round's, by default; the first warms up, untimed
    run: Callable[[int, bool], Run]   # run(steps, memory): in a worker of its own
    kind: str = "moons"               # what a step is: "moons", the demo's; "grid"; "probe"
    needs: tuple[Peer, ...] = ()      # others' engines it runs: left out where missing
    reference: Optional[str] = None   # the ratio column it gives its kind ("vs_torch")
    exact: bool = True                # its losses are micrograd's at every step (not batched)

    def missing(self) -> str:
        """Why it cannot run here ('' when it can)."""
        return next((why for why in (peer.missing() for peer in self.needs) if why), "")


# -- micrograd's demo step on an engine ------------------------------------------------------

Engine = tuple[Any, Any, Callable[..., Any]]  # (nn module, Value class, loss function)


def _upstream() -> Engine:
    import micrograd.engine
    import micrograd.nn

    from micrograd_cy import train
    return micrograd.nn, micrograd.engine.Value, train.svm_loss


def _dropin() -> Engine:
    from micrograd_cy import engine, train
    return peers.upstream_nn(engine), engine.Value, train.svm_loss


def _notebook() -> Engine:  # as demo.ipynb runs after install_as_micrograd()
    import micrograd_cy
    micrograd_cy.install_as_micrograd()
    import micrograd.engine
    import micrograd.nn

    from micrograd_cy import train
    return micrograd.nn, micrograd.engine.Value, train.svm_loss


def _native() -> Engine:
    from micrograd_cy import engine, nn, train
    return nn, engine.Value, train.svm_loss_fused


def _bytes_per_node(model: Any, X: Any, y: Any, Value: Any,
                    loss_fn: Callable[..., Any]) -> tuple[float, int]:
    """Memory a step's graph holds per node, by tracemalloc (the order included)."""
    from micrograd_cy import viz
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


def _demo_step(engine: Callable[[], Engine], replay: bool = False, sgd: bool = False,
               gc_off: bool = False, notebook: bool = False) -> Callable[[int, bool], Run]:
    """run(steps, memory) of the demo's training step on an engine: replay, the graph built
    once and replayed (Value.forward); sgd, the update by optim.SGD; notebook, the update
    loop over model.parameters() each step, as the notebook writes it."""
    def run(steps: int, memory: bool) -> Run:
        from micrograd_cy.train import learning_rate
        nn, Value, loss_fn = engine()
        X, y = datasets.moons()
        random.seed(SEED)
        model = nn.MLP(2, SIZES)
        # first, on a cold heap: nothing freed yet, so no freelist can hide an allocation
        # (slow on upstream's graph under tracemalloc: measured once, in the first round)
        bytes_per_node, nodes = (_bytes_per_node(model, X, y, Value, loss_fn) if memory
                                 else (None, None))
        if gc_off:
            gc.disable()
        params = model.parameters()
        graph: list[Any] = []

        def forward(k: int) -> Any:
            if graph:
                return graph[0].forward()
            total_loss = loss_fn(model, X, y, Value)[0]
            if replay:
                graph.append(total_loss)
            return total_loss

        if sgd:
            from micrograd_cy.optim import SGD
            opt = SGD(params)
            zero_grad, update = opt.zero_grad, lambda k: opt.step(learning_rate(k, SCHEDULE_STEPS))
        else:
            def update(k: int) -> None:
                rate = learning_rate(k, SCHEDULE_STEPS)
                for p in (model.parameters() if notebook else params):
                    p.data -= rate * p.grad
            zero_grad = model.zero_grad
        result = timed_steps(steps, forward, zero_grad, lambda loss: loss.backward(), update,
                             value=lambda loss: loss.data)
        return {**result, "nodes": nodes, "bytes_per_node": bytes_per_node}
    return run


# -- the plot's grid, forward only -----------------------------------------------------------

def _grid(torch: bool) -> Callable[[int, bool], Run]:
    """run(steps, memory) of the model's scores on the plot's 25,600 grid points, forward
    only: Value.evaluate on a graph built once, or PyTorch under no_grad. Its loss: the
    demo's first, from the scores of the 100 samples evaluated the same way."""
    def run(steps: int, memory: bool) -> Run:
        from micrograd_cy import plot
        from micrograd_cy.train import ALPHA
        model, layers, X, y = initial_arrays()
        points = plot.grid(X)[2]  # the plot's grid (micrograd-cy train --plot)
        reg = ALPHA * sum(p.data * p.data for p in model.parameters())
        if not torch:
            from micrograd_cy import Value
            x = [Value(0.0), Value(0.0)]
            out = model(x)

            def scores(rows: Any) -> Any:
                return Value.evaluate(out, x, rows)
        else:
            import torch as th
            th.set_num_threads(1)
            weights = [th.tensor(a) for pair in layers for a in pair]

            def scores(rows: Any) -> Any:
                with th.no_grad():
                    return peers.batched_scores(th.tensor(rows), weights, th.relu).numpy()
        losses = [max(0.0, 1 - yi * si) for yi, si in zip(y.tolist(), scores(X).tolist())]
        loss = sum(losses) * (1.0 / len(losses)) + reg
        result = timed_steps(steps, lambda k: scores(points), value=None)
        return {**result, "losses": [loss], "extra": {"rows": len(points)}}
    return run


# -- the batch path: a sample's graph run over a step's rows (Value.backward_rows) -----------

def _demo_rows(steps: int, memory: bool) -> Run:
    """The demo's step on the batch path: the sample's graph (MLP(2, [16, 16, 1]) and its hinge
    loss) run over the 100 rows by Value.backward_rows, the L2 term, optim.SGD in C."""
    from micrograd_cy import nn, train
    from micrograd_cy.optim import SGD
    X, y = datasets.moons()
    random.seed(SEED)
    model = nn.MLP(2, SIZES)
    params = model.parameters()
    opt = SGD(params)
    trace = train.Trace.of(model, 2, 2)
    rows = trace.rows(X, y)

    def forward(k: int) -> float:
        opt.zero_grad()
        return train.step_loss(trace, rows, params)[0]

    return timed_steps(steps, forward, None, None,
                       lambda k: opt.step(train.learning_rate(k, SCHEDULE_STEPS)))


def _digits(torch: bool) -> Callable[[int, bool], Run]:
    """run(steps, memory) of the CLI's digits training step (`micrograd-cy train digits`:
    MLP(64, [32, 10]), softmax cross-entropy plus the L2 term, mini-batches of 32, SGD with
    the demo's schedule) over the same batches from the same initial weights: our train loop's
    (train.step_loss, optim.SGD), or PyTorch's, batched, float64, one thread."""
    def run(steps: int, memory: bool) -> Run:
        import numpy as np

        from micrograd_cy import train
        from micrograd_cy.optim import SGD
        data = datasets.load("digits")
        defaults = train.DEFAULTS["digits"]
        model = train.make_model(data, defaults.hidden, SEED)
        size = defaults.batch_size or 32
        order = np.random.default_rng(SEED).permutation(len(data.X))
        batches = [order[(k * size) % (len(order) - size):][:size] for k in range(steps)]
        if not torch:
            params = model.parameters()
            opt = SGD(params, defaults.lr)
            trace = train.Trace.of(model, data.features, data.classes)
            rows = trace.rows(data.X, data.y)

            def forward(k: int) -> float:
                opt.zero_grad()
                return train.step_loss(trace, rows[batches[k]], params)[0]

            return timed_steps(steps, forward, None, None,
                               lambda k: opt.step(train.learning_rate(k, steps, defaults.lr)))
        import torch as th
        import torch.nn.functional as F
        th.set_num_threads(1)
        weights = [th.tensor([[w.data for w in n.w] + [n.b.data] for n in layer.neurons],
                             dtype=th.float64) for layer in model.layers]
        tensors = [t for w in weights for t in (w[:, :-1].clone().requires_grad_(),
                                                w[:, -1].clone().requires_grad_())]
        Xt, yt = th.tensor(data.X), th.tensor(data.y)

        def loss(k: int) -> Any:
            idx = th.from_numpy(batches[k])
            logits = peers.batched_outputs(Xt[idx], tensors, th.relu)
            return F.cross_entropy(logits, yt[idx]) + \
                train.ALPHA * sum((p * p).sum() for p in tensors)

        def zero_grad() -> None:
            for p in tensors:
                p.grad = None

        def update(k: int) -> None:
            with th.no_grad():
                rate = train.learning_rate(k, steps, defaults.lr)
                for p in tensors:
                    p -= rate * p.grad  # type: ignore[operator]  # set by backward()

        return timed_steps(steps, loss, zero_grad, lambda loss: loss.backward(), update,
                           value=lambda loss: loss.item())
    return run


# -- probes: a cost that must not depend on the rest of the process --------------------------

def _small_backward(steps: int, memory: bool, repeats: int = 5000,
                    crowd: int = 1_000_000) -> Run:
    """Median seconds of backward() on a 4-node graph that reaches an op node built earlier:
    with nothing else alive (alone), then with `crowd` unrelated nodes kept alive, built
    after it (the step)."""
    from micrograd_cy import Value

    def median_backward(old: Value) -> float:
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
    crowded = median_backward(old)
    return {"losses": [], "step": [crowded], "fwd": [0.0], "bwd": [crowded],
            "extra": {"alone_ms": alone * 1e3, "crowd": crowd}}


def _unrelated_writes(steps: int, memory: bool, calls: int = 20000, rounds: int = 7) -> Run:
    """Seconds a call of the demo's MLP takes (the best of `rounds`, `calls` calls each):
    quiet, and with an attribute written on an unrelated module before every call, the
    write itself taken out (the step): a model's caches must notice only changes to
    itself, never the rest of the process."""
    import timeit

    from micrograd_cy import nn
    random.seed(SEED)
    model, other = nn.MLP(2, SIZES), nn.MLP(2, [16, 1])
    x = [0.5, -0.25]

    def noisy() -> None:
        other.layers[0].neurons[0].note = x
        model(x)

    quiet = min(timeit.repeat(lambda: model(x), number=calls, repeat=rounds)) / calls
    written = min(timeit.repeat(noisy, number=calls, repeat=rounds)) / calls
    write = min(timeit.repeat(lambda: setattr(other.layers[0].neurons[0], "note", x),
                              number=calls, repeat=rounds)) / calls
    return {"losses": [], "step": [written - write], "fwd": [written - write], "bwd": [0.0],
            "extra": {"quiet_ms": quiet * 1e3, "write_ms": write * 1e3}}


CONFIGS = {c.name: c for c in [
    Config("upstream", "upstream micrograd, as shipped", 3, _demo_step(_upstream),
           needs=(UPSTREAM,), reference="vs_upstream"),
    Config("upstream-nogc", "upstream micrograd, gc.disable()", 4,
           _demo_step(_upstream, gc_off=True), needs=(UPSTREAM,), reference="vs_nogc"),
    Config("dropin", "upstream nn.py on micrograd_cy", 15, _demo_step(_dropin),
           needs=(UPSTREAM,)),
    Config("dropin-replay", "the same graph, replayed", 30, _demo_step(_dropin, replay=True),
           needs=(UPSTREAM,)),
    Config("native", "micrograd_cy nn + fused loss", 30, _demo_step(_native)),
    Config("replay", "micrograd_cy, graph replayed", 30, _demo_step(_native, replay=True)),
    Config("replay-sgd", "the same, optim.SGD's step in C", 30,
           _demo_step(_native, replay=True, sgd=True)),
    Config("floats", "floor: upstream nn.py's forward on floats", 15,
           floors.run_upstream_floats, needs=(UPSTREAM,)),
    Config("notebook", "demo.ipynb's code, install_as_micrograd()", 15,
           _demo_step(_notebook, notebook=True)),
    Config("notebook-floats", "floats: its forward alone, our nn's shape", 15,
           floors.run_our_floats),
    Config("torch", "PyTorch, batched float64, 1 thread", 30, peers.run_torch,
           needs=(TORCH,), reference="vs_torch", exact=False),
    Config("jax", "JAX, jit(value_and_grad), float64", 30, peers.run_jax,
           needs=(JAX,), reference="vs_jax", exact=False),
    Config("rows", "the sample's graph run over the rows (backward_rows)", 30, _demo_rows,
           exact=False),
    Config("evaluate", "Value.evaluate, 25,600 rows, forward", 15, _grid(torch=False),
           kind="grid", exact=False),
    Config("evaluate-torch", "PyTorch no_grad, the same 25,600 rows", 15, _grid(torch=True),
           kind="grid", needs=(TORCH,), reference="vs_torch", exact=False),
    Config("digits", "micrograd-cy train digits: a step (32 rows)", 60, _digits(torch=False),
           kind="digits", exact=False),
    Config("digits-torch", "PyTorch, the same model, batches and SGD", 60, _digits(torch=True),
           kind="digits", needs=(TORCH,), reference="vs_torch", exact=False),
    Config("crowd", "small backward, a million unrelated live nodes", 1, _small_backward,
           kind="probe"),
    Config("unrelated", "an MLP call, unrelated modules written", 1, _unrelated_writes,
           kind="probe"),
    Config("gpt", "microgpt's GPT, a name a step, traced graphs", 500,
           lambda steps, memory: __import__("benchmarks.gpt").gpt.run(steps, memory),
           kind="gpt"),
    Config("gpt-torch", "the same GPT in PyTorch, float64, 1 thread", 300,
           lambda steps, memory: __import__("benchmarks.gpt").gpt.run_torch(steps, memory),
           kind="gpt", needs=(TORCH,), reference="vs_torch"),
]}

# (configuration, figure of its result, op, bound, what); the reference graph is upstream's,
# 65,818 nodes
TARGETS = [
    ("dropin", "vs_upstream", ">=", 200, "drop-in >= 200x upstream as shipped"),
    ("dropin", "vs_nogc", ">=", 20, "drop-in >= 20x upstream with GC off"),
    ("native", "vs_upstream", ">=", 800, "native >= 800x upstream as shipped"),
    ("replay", "vs_upstream", ">=", 3000, "replay >= 3000x upstream as shipped"),
    ("dropin-replay", "bwd_ns_per_node", "<=", 10,
     "backward <= 10 ns/node, reference graph, cached order"),
    ("dropin", "bwd_ns_per_node", "<=", 10,
     "backward <= 10 ns/node, reference graph, ordering included"),
    ("dropin", "bytes_per_node", "<=", 96, "<= 96 bytes/node, reference graph"),
    ("replay-sgd", "vs_jax", ">=", 1.25, "replay (optim.SGD) >= 1.25x JAX jit"),
    ("notebook", "vs_torch", ">=", 1.0, "demo.ipynb's code >= PyTorch batched"),
    ("evaluate", "vs_torch", ">=", 3, "Value.evaluate >= 3x PyTorch no_grad, 25,600 rows"),
    ("digits", "vs_torch", ">=", 2, "digits training step >= 2x PyTorch"),
    ("rows", "vs_jax", ">=", 2, "the demo step on the batch path >= 2x JAX jit"),
    ("crowd", "ratio", "<=", 2.0,
     "small backward costs the same with a million live nodes (<= 2x)"),
    ("unrelated", "ratio", "<=", 1.2,
     "an MLP call costs the same while unrelated modules are written (<= 1.2x)"),
    ("gpt", "vs_torch", ">=", 2, "microgpt's GPT step >= 2x PyTorch (float64, 1 thread)"),
]
