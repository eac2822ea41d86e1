"""A GPT of microgpt's size on micrograd_cy's Values, and its twin in PyTorch float64.

Karpathy's microgpt trains a one-layer GPT on names, one name a step, on a scalar autograd
engine in pure Python. Here the same model is written with the engine's fused nodes: a row of
a linear layer is one Value.matvec node, an attention score one Value.dot, a cross-entropy one
node, and the token embedding a Value.gather, whose index a replay reads again. So the loss
graph of a name of n letters is traced once, on leaves holding the tokens, and replayed
(`loss.forward()`) for every other name of that length. A trace freezes any Python control
flow that reads `.data`: the model has none.

The PyTorch twin starts from the same weights and takes the same steps (the names in the same
order, Adam and LinearLR with the same numbers), so the losses compare step by step. It runs
a name's positions at once under a causal mask, as a PyTorch user writes it: the same sums as
the token-by-token cache, in another order (they agree to about 1e-15).

    python -m benchmarks.gpt --steps 1000 [--torch]   # losses, ms a step, 20 names sampled
"""
from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from typing import Any, Optional, Sequence, Union

from benchmarks.harness import Run, timed_steps
from micrograd_cy import Value
from micrograd_cy.functional import cross_entropy, linear, rmsnorm, softmax
from micrograd_cy.optim import Adam, LinearLR

# microgpt's shape and training settings
N_EMBD = 16
N_HEAD = 4
HEAD_DIM = N_EMBD // N_HEAD
N_LAYER = 1
BLOCK_SIZE = 16                      # the positions a name is cut to
LETTERS = "abcdefghijklmnopqrstuvwxyz"
BOS = len(LETTERS)                   # the token that begins and ends every name
VOCAB = len(LETTERS) + 1
STD = 0.08                           # of the initial weights' Gaussians
SEED = 42
LR, BETAS, EPS = 0.01, (0.85, 0.99), 1e-8
SCHEDULE_STEPS = 1000                # the lr goes linearly to 0 over these, whatever a run's steps
TEMPERATURE = 0.5
NAMES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "names.txt")

# the weight matrices, (rows, columns), in the order microgpt draws them
SHAPES = [("wte", (VOCAB, N_EMBD)), ("wpe", (BLOCK_SIZE, N_EMBD)), ("lm_head", (VOCAB, N_EMBD))]
for _i in range(N_LAYER):
    SHAPES += [(f"layer{_i}.attn_wq", (N_EMBD, N_EMBD)), (f"layer{_i}.attn_wk", (N_EMBD, N_EMBD)),
               (f"layer{_i}.attn_wv", (N_EMBD, N_EMBD)), (f"layer{_i}.attn_wo", (N_EMBD, N_EMBD)),
               (f"layer{_i}.mlp_fc1", (4 * N_EMBD, N_EMBD)),
               (f"layer{_i}.mlp_fc2", (N_EMBD, 4 * N_EMBD))]

Weights = dict[str, list[list[float]]]


# -- the data and the initial weights ---------------------------------------------------------

def setup(seed: int = SEED, path: str = NAMES) -> tuple[list[str], Weights]:
    """The names in training order and the initial weights, drawn as microgpt draws them: one
    generator seeded `seed` shuffles the names, then gives every matrix's Gaussians, matrix
    after matrix in SHAPES' order, row after row. (microgpt seeds the module-level generator
    the same way, so both start from the same weights and see the same names.)"""
    with open(path) as f:
        docs = [line.strip() for line in f if line.strip()]
    rng = random.Random(seed)
    rng.shuffle(docs)
    weights = {name: [[rng.gauss(0.0, STD) for _ in range(cols)] for _ in range(rows)]
               for name, (rows, cols) in SHAPES}
    return docs, weights


def encode(name: str) -> list[int]:
    """The name's tokens, BOS on each side: 'ab' -> [26, 0, 1, 26]."""
    return [BOS] + [LETTERS.index(c) for c in name] + [BOS]


def window(tokens: list[int]) -> tuple[list[int], list[int]]:
    """The inputs and the targets (each input's next token) of the first BLOCK_SIZE positions."""
    n = min(BLOCK_SIZE, len(tokens) - 1)
    return tokens[:n], tokens[1:n + 1]


# -- the model ----------------------------------------------------------------------------------

Token = Union[int, Value]
Cache = list[tuple[list[list[Value]], list[list[Value]]]]  # a layer's keys and values a position


class GPT:
    """microgpt's model on Values: token and position embeddings, RMSNorm, causal
    self-attention with a cache of keys and values built a token at a time, a ReLU MLP,
    residual adds, the logits; no biases."""

    def __init__(self, weights: Weights) -> None:
        self.weights = {name: [[Value(x) for x in row] for row in weights[name]]
                        for name, _ in SHAPES}

    def parameters(self) -> list[Value]:
        return [p for rows in self.weights.values() for row in rows for p in row]

    @staticmethod
    def cache() -> Cache:
        return [([], []) for _ in range(N_LAYER)]

    def __call__(self, token: Token, pos: int, cache: Cache) -> list[Value]:
        """The logits of the token after `token` (an int, or a Value holding it, which a
        replay reads again) at position `pos`; `cache` holds every layer's keys and values of
        the positions before, and gets this one's."""
        w = self.weights
        x = [t + p for t, p in zip(Value.gather(w["wte"], token), w["wpe"][pos])]
        x = rmsnorm(x)
        for i, (keys, values) in enumerate(cache):
            layer = f"layer{i}."
            h = rmsnorm(x)
            # scaled once here rather than on every score: the same numbers, the scale being
            # 1/2, a power of two
            q = [qi * HEAD_DIM ** -0.5 for qi in linear(h, w[layer + "attn_wq"])]
            keys.append(linear(h, w[layer + "attn_wk"]))
            values.append(linear(h, w[layer + "attn_wv"]))
            heads: list[Value] = []
            for s in range(0, N_EMBD, HEAD_DIM):
                att = softmax([Value.dot(q[s:s + HEAD_DIM], k[s:s + HEAD_DIM]) for k in keys])
                heads += [Value.dot(att, [v[j] for v in values]) for j in range(s, s + HEAD_DIM)]
            x = [a + r for a, r in zip(linear(heads, w[layer + "attn_wo"]), x)]
            h = Value.matvec(w[layer + "mlp_fc1"], rmsnorm(x), relu=True)
            x = [m + r for m, r in zip(linear(h, w[layer + "mlp_fc2"]), x)]
        return linear(x, w["lm_head"])

    def loss(self, inputs: Sequence[Token], targets: Sequence[Token]) -> Value:
        """The mean over positions of the cross-entropy of each target given the inputs up to
        it (microgpt's loss of a name)."""
        cache = self.cache()
        losses = [cross_entropy(self(token, pos, cache), target)
                  for pos, (token, target) in enumerate(zip(inputs, targets))]
        return Value.sum(losses) / len(losses)

    def sample(self, count: int = 20, temperature: float = TEMPERATURE,
               seed: int = SEED) -> list[str]:
        """`count` names drawn a letter at a time from softmax(logits / temperature), each
        ending at BOS or after BLOCK_SIZE letters."""
        rng = random.Random(seed)
        names = []
        for _ in range(count):
            cache, token, letters = self.cache(), BOS, []
            for pos in range(BLOCK_SIZE):
                probs = softmax([logit / temperature for logit in self(token, pos, cache)])
                token = rng.choices(range(VOCAB), weights=[p.data for p in probs])[0]
                if token == BOS:
                    break
                letters.append(LETTERS[token])
            names.append("".join(letters))
        return names


# -- training on graphs traced once a length ----------------------------------------------------

class Trace:
    """The loss graph of names of one length, built once on leaves that hold the tokens
    (inputs, then targets), replayed for every name of that length."""

    def __init__(self, model: GPT, n: int) -> None:
        self.leaves = [Value(float(BOS)) for _ in range(2 * n)]
        self.loss = model.loss(self.leaves[:n], self.leaves[n:])

    def replay(self, row: Sequence[int]) -> Value:
        """The loss at these tokens (inputs, then targets), every node's data recomputed."""
        for leaf, token in zip(self.leaves, row):
            leaf.data = token
        return self.loss.forward()


def forward_backward(trace: Trace, row: Sequence[int]) -> float:
    """A step's work on the graph: the loss at `row` and its gradients, added into the
    parameters' grads. The one call a batch of rows (Value.backward_rows) will stand in for."""
    loss = trace.replay(row)
    loss.backward()
    return loss.data


class Training:
    """microgpt's loop on traced graphs: a name a step, Adam, the lr linearly down to 0."""

    def __init__(self, docs: list[str], weights: Weights,
                 schedule_steps: int = SCHEDULE_STEPS) -> None:
        self.docs = docs
        self.model = GPT(weights)
        self.traces: dict[int, Trace] = {}
        self.opt = Adam(self.model.parameters(), lr=LR, betas=BETAS, eps=EPS)
        self.schedule = LinearLR(self.opt, 1.0, 0.0, schedule_steps)

    def batch(self, k: int) -> tuple[Trace, list[int]]:
        """Step k's graph (traced when a name of its length first comes) and its row of
        tokens."""
        inputs, targets = window(encode(self.docs[k % len(self.docs)]))
        n = len(inputs)
        if n not in self.traces:
            self.traces[n] = Trace(self.model, n)
        return self.traces[n], inputs + targets

    def update(self) -> None:
        self.opt.step()
        self.schedule.step()

    def step(self, k: int) -> float:
        trace, row = self.batch(k)
        self.opt.zero_grad()
        loss = forward_backward(trace, row)
        self.update()
        return loss


# -- the PyTorch twin ---------------------------------------------------------------------------

class TorchTraining:
    """The same model and loop in PyTorch, float64, one thread, from the same weights: a name's
    positions at once, the attention masked to the positions before."""

    def __init__(self, docs: list[str], weights: Weights,
                 schedule_steps: int = SCHEDULE_STEPS) -> None:
        import torch
        torch.set_num_threads(1)
        self.torch = torch
        self.docs = docs
        self.w = {name: torch.tensor(weights[name], dtype=torch.float64, requires_grad=True)
                  for name, _ in SHAPES}
        self.opt = torch.optim.Adam(list(self.w.values()), lr=LR, betas=BETAS, eps=EPS)
        self.schedule = torch.optim.lr_scheduler.LinearLR(self.opt, 1.0, 0.0, schedule_steps)
        self.future = torch.ones(BLOCK_SIZE, BLOCK_SIZE, dtype=torch.bool).triu(1)

    def loss(self, k: int) -> Any:
        torch, w = self.torch, self.w
        inputs, targets = window(encode(self.docs[k % len(self.docs)]))
        n = len(inputs)

        def norm(x: Any) -> Any:
            return x * ((x * x).mean(-1, keepdim=True) + 1e-5) ** -0.5

        x = norm(w["wte"][torch.tensor(inputs)] + w["wpe"][:n])
        for i in range(N_LAYER):
            layer = f"layer{i}."
            h = norm(x)
            q, k_, v = (torch.nn.functional.linear(h, w[layer + name]).view(n, N_HEAD, HEAD_DIM)
                        .transpose(0, 1) for name in ("attn_wq", "attn_wk", "attn_wv"))
            scores = (q * HEAD_DIM ** -0.5) @ k_.transpose(1, 2)
            att = scores.masked_fill(self.future[:n, :n], -math.inf).softmax(-1)
            heads = (att @ v).transpose(0, 1).reshape(n, N_EMBD)
            x = x + torch.nn.functional.linear(heads, w[layer + "attn_wo"])
            h = torch.relu(torch.nn.functional.linear(norm(x), w[layer + "mlp_fc1"]))
            x = x + torch.nn.functional.linear(h, w[layer + "mlp_fc2"])
        logits = torch.nn.functional.linear(x, w["lm_head"])
        return torch.nn.functional.cross_entropy(logits, torch.tensor(targets))

    def update(self) -> None:
        self.opt.step()
        self.schedule.step()

    def step(self, k: int) -> float:
        loss = self.loss(k)
        self.opt.zero_grad()
        loss.backward()
        self.update()
        return float(loss.item())


# -- the benchmark's configurations (benchmarks/configs.py: gpt, gpt-torch) --------------------

def run(steps: int, memory: bool) -> Run:
    """run(steps, memory) of `gpt`: steps of the traced-graph loop, every length the steps
    meet traced before the clock starts (its time: trace_ms, all of them). Its forward and
    backward phases are forward_backward's two halves, timed apart."""
    docs, weights = setup()
    training = Training(docs, weights)
    t0 = time.perf_counter()
    for k in range(steps):
        training.batch(k)
    traced = time.perf_counter() - t0
    def forward(k: int) -> Value:
        trace, row = training.batch(k)
        return trace.replay(row)

    result = timed_steps(steps, forward, training.opt.zero_grad, lambda loss: loss.backward(),
                         lambda k: training.update(), value=lambda loss: loss.data)
    return {**result, "extra": {"trace_ms": traced * 1e3, "lengths": len(training.traces)}}


def run_torch(steps: int, memory: bool) -> Run:
    """run(steps, memory) of `gpt-torch`: the same steps in PyTorch."""
    docs, weights = setup()
    training = TorchTraining(docs, weights)
    return timed_steps(steps, training.loss, training.opt.zero_grad,
                       lambda loss: loss.backward(), lambda k: training.update(),
                       value=lambda loss: loss.item())


# -- python -m benchmarks.gpt -------------------------------------------------------------------

def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpt", description=(
        "Train microgpt's GPT on names, one a step, on graphs traced once a name length; "
        "print the losses, the time a step and names sampled from the model."))
    parser.add_argument("--steps", type=int, default=SCHEDULE_STEPS,
                        help=f"training steps (default {SCHEDULE_STEPS}); the lr reaches 0 "
                             f"at the last")
    parser.add_argument("--every", type=int, default=0, metavar="K",
                        help="print the loss every K steps (default: 10 lines in all)")
    parser.add_argument("--torch", action="store_true",
                        help="train the PyTorch twin beside it and print its losses too")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    every = args.every if args.every > 0 else max(1, args.steps // 10)
    docs, weights = setup()
    ours = Training(docs, weights, args.steps)
    runs: dict[str, Union[Training, TorchTraining]] = {"micrograd_cy": ours}
    if args.torch:
        runs["torch"] = TorchTraining(docs, weights, args.steps)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for k in range(args.steps):
        losses = {}
        for name, training in runs.items():
            t0 = time.perf_counter()
            losses[name] = training.step(k)
            times[name].append(time.perf_counter() - t0)
        if (k + 1) % every == 0 or k == 0:
            print(f"step {k + 1:5d} / {args.steps} | " + " | ".join(
                f"{name} loss {loss:.4f}" for name, loss in losses.items()))
    for name, ts in times.items():
        print(f"{name}: {statistics.median(ts) * 1e3:.3f} ms a step (median), "
              f"{sum(ts):.2f} s in all" + (f", {len(ours.traces)} name lengths traced"
                                           if name == "micrograd_cy" else ""))
    print(f"names sampled (temperature {TEMPERATURE}): " + " ".join(ours.model.sample()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
