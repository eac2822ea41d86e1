"""The engines of others a configuration can run (upstream micrograd, PyTorch, JAX): each is
left out, with a one-line reason, where it is not installed; and their runs of the demo step."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Sequence

from benchmarks.harness import SCHEDULE_STEPS, Run, initial_arrays, timed_steps


@dataclass(frozen=True)
class Peer:
    module: str   # what a configuration imports
    install: str  # what pip installs to bring it

    def missing(self) -> str:
        """Why a configuration that needs this peer cannot run here ('' when it can)."""
        # looked up on sys.path as upstream_nn looks it up (after install_as_micrograd(),
        # sys.modules' "micrograd" is micrograd_cy)
        if importlib.machinery.PathFinder.find_spec(self.module) is None:
            return f"{self.module} is not installed (pip install {self.install})"
        return ""


UPSTREAM = Peer("micrograd", "micrograd")
TORCH = Peer("torch", "torch")
JAX = Peer("jax", "jax[cpu]")


def upstream_nn(engine: ModuleType) -> ModuleType:
    """Upstream micrograd's own nn.py, unchanged, importing Value from `engine`.

    engine is a module with a Value: micrograd.engine for upstream as shipped, or
    micrograd_cy.engine to run upstream's nn.py on the compiled engine.
    """
    # looked up on sys.path, not in sys.modules: after install_as_micrograd(), "micrograd"
    # there is micrograd_cy, and its nn is not upstream's file
    package = importlib.machinery.PathFinder.find_spec("micrograd")
    spec = package and importlib.machinery.PathFinder.find_spec(
        "micrograd.nn", package.submodule_search_locations)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError("upstream micrograd is not installed: pip install micrograd")
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("micrograd.engine")
    sys.modules["micrograd.engine"] = engine
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["micrograd.engine"]
        else:
            sys.modules["micrograd.engine"] = saved
    return module


def batched_outputs(h: Any, params: Sequence[Any], relu: Callable[[Any], Any]) -> Any:
    """The MLP's outputs for the rows of h, all at once (rows x outputs): params is
    [W0, b0, W1, b1, ...] (arrays or tensors of any library with @ and .T), relu between
    layers."""
    for i in range(0, len(params), 2):
        h = h @ params[i].T + params[i + 1]
        if i + 2 < len(params):
            h = relu(h)
    return h


def batched_scores(h: Any, params: Sequence[Any], relu: Callable[[Any], Any]) -> Any:
    """The scores of a one-output MLP for the rows of h (batched_outputs)."""
    return batched_outputs(h, params, relu)[:, 0]


def _batched_loss(X: Any, y: Any, params: Sequence[Any], relu: Callable[[Any], Any],
                  alpha: float = 1e-4) -> Any:
    """train.svm_loss, batched: the mean hinge loss plus alpha times the sum of squares."""
    return relu(1 - y * batched_scores(X, params, relu)).mean() + \
        alpha * sum((p * p).sum() for p in params)


def run_torch(steps: int, memory: bool) -> Run:
    """The demo step as a PyTorch user writes it, batched over the 100 samples: autograd,
    the update under no_grad, float64, one thread."""
    _, layers, X, y = initial_arrays()  # first: scikit-learn loads before torch, as it did
    import torch

    from micrograd_cy.train import learning_rate
    torch.set_num_threads(1)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    params = [torch.tensor(a, requires_grad=True) for pair in layers for a in pair]

    def zero_grad() -> None:
        for p in params:
            p.grad = None

    def update(k: int) -> None:
        with torch.no_grad():
            rate = learning_rate(k, SCHEDULE_STEPS)
            for p in params:
                p -= rate * p.grad  # type: ignore[operator]  # set by backward()

    return timed_steps(steps, lambda k: _batched_loss(Xt, yt, params, torch.relu), zero_grad,
                       lambda loss: loss.backward(), update, value=lambda loss: loss.item())


def run_jax(steps: int, memory: bool) -> Run:
    """The demo step as one jit of value_and_grad and the SGD update, float64, compiled
    before the clock starts; each step waits for its result."""
    import jax
    import jax.numpy as jnp

    from micrograd_cy.train import learning_rate
    config: Any = jax.config  # untyped where jax is installed
    config.update("jax_enable_x64", True)
    config.update("jax_platforms", "cpu")
    _, layers, X, y = initial_arrays()
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    params = [jnp.asarray(a) for pair in layers for a in pair]

    @jax.jit  # type: ignore[untyped-decorator, unused-ignore]  # typed where jax is installed
    def step(params: list[Any], rate: float) -> tuple[Any, list[Any]]:
        loss, grads = jax.value_and_grad(_batched_loss, argnums=2)(Xj, yj, params, jax.nn.relu)
        return loss, [p - rate * g for p, g in zip(params, grads)]

    step(params, 1.0)[0].block_until_ready()  # compiled before the clock starts

    def forward(k: int) -> Any:
        nonlocal params
        loss, params = step(params, learning_rate(k, SCHEDULE_STEPS))
        return loss.block_until_ready()

    return timed_steps(steps, forward)
