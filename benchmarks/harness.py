"""Running configurations: each in a child process of its own, taking turns over rounds, with
one timed-steps loop for all; medians over every round's steps.

A worker is `python -m benchmarks.harness NAME STEPS MEMORY`; it prints its measurements as
one line of JSON.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

import micrograd_cy
from micrograd_cy import datasets, nn

if TYPE_CHECKING:
    import numpy as np

    from benchmarks.configs import Config

Run = dict[str, Any]  # a worker's measurements: "losses", "step", "fwd", "bwd" (seconds), ...
Result = dict[str, Any]  # a configuration's, over every round: the JSON file's entries

SCHEDULE_STEPS = 100  # the demo's 100 steps: the learning rate's schedule, whatever a run's steps
SEED = 1337
SIZES = [16, 16, 1]  # MLP(2, SIZES), the demo's model
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed_steps(steps: int, forward: Callable[[int], Any],
                zero_grad: Optional[Callable[[], None]] = None,
                backward: Optional[Callable[[Any], None]] = None,
                update: Optional[Callable[[int], None]] = None,
                value: Optional[Callable[[Any], float]] = float) -> Run:
    """Time `steps` steps of forward(k) -> loss, zero_grad(), backward(loss), update(k): each
    step whole, its forward and its backward alone (zero_grad counts in the step only). The
    last step's loss is dropped inside the timed step, before the next is built. The first
    step warms caches up and is left out when there are more; value(loss) is each step's
    loss, taken after the clock stops."""
    perf = time.perf_counter
    times: dict[str, list[float]] = {"step": [], "fwd": [], "bwd": []}
    losses = []
    loss = None
    for k in range(steps):
        t0 = perf()
        loss = None
        loss = forward(k)
        t1 = perf()
        if zero_grad is not None:
            zero_grad()
        t2 = perf()
        if backward is not None:
            backward(loss)
        t3 = perf()
        if update is not None:
            update(k)
        t4 = perf()
        if value is not None:
            losses.append(float(value(loss)))
        times["step"].append(t4 - t0)
        times["fwd"].append(t1 - t0)
        times["bwd"].append(t3 - t2)
    warm = slice(1, None) if steps > 1 else slice(None)
    return {"losses": losses, **{phase: t[warm] for phase, t in times.items()}}


def initial_arrays() -> tuple[nn.MLP, list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """The demo's MLP initial parameters (seed 1337) as numpy arrays, (W, b) a layer, and the
    moons data: what the batched engines start from."""
    import random

    import numpy as np

    X, y = datasets.moons()
    random.seed(SEED)
    model = nn.MLP(2, SIZES)
    layers = [(np.array([[p.data for p in n.w] for n in layer.neurons]),
               np.array([n.b.data for n in layer.neurons])) for layer in model.layers]
    return model, layers, X, y.astype(np.float64)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    peers = [f"{name} {_version(package)}" for name, package in
             [("micrograd", "micrograd"), ("PyTorch", "torch"), ("JAX", "jax")] if _version(package)]
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.machine()}" + "".join(f", {p}" for p in peers))


def _version(package: str) -> str:
    """The installed version of package, '' where it is not installed."""
    import importlib.metadata
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def spawn(name: str, steps: int, memory: bool) -> Run:
    """Run configuration `name` in a child process. It imports the micrograd_cy this process
    imported and these benchmarks, from a neutral folder, wherever the caller stands."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(micrograd_cy.__file__)))
    path = [package, ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
    out = subprocess.run([sys.executable, "-m", "benchmarks.harness", name, str(steps),
                          str(int(memory))], capture_output=True, text=True, check=False,
                         cwd=tempfile.gettempdir(),
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(path)})
    if out.returncode != 0:
        raise RuntimeError(f"benchmark worker {name} failed:\n{out.stderr}")
    run: Run = json.loads(out.stdout.strip().splitlines()[-1])
    return run


def run(configs: list[Config], scale: float = 1.0, rounds: int = 5,
        echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
        worker: Callable[[str, int, bool], Run] = spawn) -> dict[str, Result]:
    """Run every configuration `rounds` times, taking turns. Each gets the median step over
    all rounds (ms_per_step), each round's median (rounds, the spread), and its first
    round's losses and graph sizes (measured there, on a cold heap)."""
    runs: dict[str, list[Run]] = {c.name: [] for c in configs}
    for r in range(rounds):
        for c in configs:
            steps = max(2, round(c.steps * scale))
            echo(f"  round {r + 1}/{rounds}: {c.name} ({steps} steps)...")
            runs[c.name].append(worker(c.name, steps, r == 0))
    return {c.name: _summary(c, runs[c.name]) for c in configs}


def _summary(config: Config, runs: list[Run]) -> Result:
    first = runs[0]
    every = {phase: [t for one in runs for t in one[phase]] for phase in ("step", "fwd", "bwd")}
    result: Result = {
        "description": config.description, "kind": config.kind,
        "ms_per_step": statistics.median(every["step"]) * 1e3,
        "rounds": [statistics.median(one["step"]) * 1e3 for one in runs],
        "steps": len(every["step"]),
        "fwd_ms": statistics.median(every["fwd"]) * 1e3,
        "bwd_ms": statistics.median(every["bwd"]) * 1e3,
        "losses": first["losses"], "nodes": first.get("nodes"),
        "bytes_per_node": first.get("bytes_per_node")}
    for key in first.get("extra", {}):  # a configuration's own figures: medians over rounds
        result[key] = statistics.median(one["extra"][key] for one in runs)
    return result


def _worker(argv: list[str]) -> None:
    from benchmarks.configs import CONFIGS
    name, steps, memory = argv
    print(json.dumps(CONFIGS[name].run(int(steps), memory == "1")))


if __name__ == "__main__":
    _worker(sys.argv[1:])
