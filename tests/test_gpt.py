"""The GPT benchmark's model (benchmarks/gpt.py): its losses against its PyTorch twin's, a
traced graph's replay against a graph built afresh, and what training and sampling give."""
import math
import statistics

import pytest

from benchmarks import gpt
from micrograd_cy import Value


@pytest.fixture(scope="module")
def data():
    return gpt.setup()


def same_length_names(docs, count):
    """`count` names of one length (the commonest), no two with the same tokens."""
    by_length = {}
    for name in docs:
        by_length.setdefault(len(name), []).append(name)
    names = max(by_length.values(), key=len)
    return sorted(set(names))[:count]


def test_losses_equal_the_pytorch_twins_step_by_step(data, torch):
    # the same weights, names, Adam and schedule; PyTorch runs a name's positions at once
    docs, weights = data
    ours, theirs = gpt.Training(docs, weights), gpt.TorchTraining(docs, weights)
    for k in range(6):
        a, b = ours.step(k), theirs.step(k)
        assert math.isclose(a, b, rel_tol=1e-12), (k, a, b)
    # and the weights they reached
    for name, _ in gpt.SHAPES:
        for row, trow in zip(ours.model.weights[name], theirs.w[name].tolist()):
            for p, t in zip(row, trow):
                assert math.isclose(p.data, t, rel_tol=1e-9, abs_tol=1e-12), name


def test_a_replayed_trace_gives_a_fresh_graphs_loss_and_grads_to_the_bit(data):
    docs, weights = data
    names = same_length_names(docs, 3)
    traced, fresh = gpt.GPT(weights), gpt.GPT(weights)
    n = len(gpt.window(gpt.encode(names[0]))[0])
    trace = gpt.Trace(traced, n)
    for name in names:  # the first traced at BOS everywhere, then replayed for each
        inputs, targets = gpt.window(gpt.encode(name))
        for p in traced.parameters() + fresh.parameters():
            p.grad = 0.0
        got = gpt.forward_backward(trace, inputs + targets)
        loss = fresh.loss(inputs, targets)
        loss.backward()
        assert got == loss.data, name
        assert [p.grad for p in traced.parameters()] == [p.grad for p in fresh.parameters()], name


def test_training_lowers_the_loss_and_samples_names(data):
    docs, weights = data
    steps = 600
    training = gpt.Training(docs, weights, steps)
    losses = [training.step(k) for k in range(steps)]
    assert math.isclose(losses[0], math.log(gpt.VOCAB), rel_tol=0.05)  # nearly uniform
    first, last = statistics.mean(losses[:50]), statistics.mean(losses[-100:])
    assert first > 2.75 and last < 2.5, (first, last)  # 2.85, 2.40 here
    assert len(training.traces) == len({len(gpt.window(gpt.encode(d))[0])
                                        for d in docs[:steps]})  # one graph a length
    names = training.model.sample(20)
    assert len(names) == 20 and all(set(n) <= set(gpt.LETTERS) for n in names), names
    assert all(len(n) <= gpt.BLOCK_SIZE for n in names)
    assert 3 <= statistics.mean(len(n) for n in names) <= 9, names


def test_the_model_reads_no_data_at_build_time():
    # a trace built at one set of weights and tokens replays at another: nothing was frozen
    docs, weights = gpt.setup()
    model = gpt.GPT(weights)
    leaves = [Value(float(gpt.BOS)) for _ in range(4)]
    loss = model.loss(leaves[:2], leaves[2:])
    for p in model.parameters():
        p.data = -p.data
    for leaf, token in zip(leaves, [gpt.BOS, 4, 4, 13]):
        leaf.data = token
    assert loss.forward().data == gpt.GPT({name: [[-x for x in row] for row in rows]
                                           for name, rows in weights.items()}
                                          ).loss([gpt.BOS, 4], [4, 13]).data


def test_the_benchmark_reports_gpt_against_pytorch(torch):
    from benchmarks import harness, report
    from benchmarks.configs import CONFIGS
    configs = [CONFIGS["gpt"], CONFIGS["gpt-torch"]]
    results = report.derive(harness.run(
        configs, scale=0.02, rounds=1, echo=lambda line: None,
        worker=lambda name, steps, memory: CONFIGS[name].run(steps, memory)))
    assert results["gpt-torch"]["vs_torch"] == 1.0 and results["gpt"]["vs_torch"] > 0
    assert results["gpt"]["lengths"] >= 1 and results["gpt"]["trace_ms"] > 0
    ours, theirs = results["gpt"]["losses"], results["gpt-torch"]["losses"]
    assert len(theirs) >= 5 and ours[:len(theirs)] == pytest.approx(theirs, rel=1e-12)
    assert report.same_losses(results)
    assert any(line.startswith("losses (gpt): every configuration gives the same loss")
               for line in report.notes(results))
    assert [what for what, _, _ in report.targets(results)] == [
        "microgpt's GPT step >= 2x PyTorch (float64, 1 thread)"]
