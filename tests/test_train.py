"""Training and model files: train.train against the notebook's loop bit for bit, MLP.sizes
and Dataset.outputs, nn.save/nn.load, and the memory estimate against a measured figure."""
import json
import math
import random

import numpy as np
import pytest

from conftest import run_probe
from micrograd_cy import Value, datasets, nn, train


def python_loop(dataset, model, steps, batch_size=None, lr=1.0, seed=1337):
    """train.train written as a micrograd user would: each sample's graph built and
    backpropagated in turn (its loss scaled by 1/batch), then the L2 term's, and the update in
    Python. Returns the losses."""
    n = len(dataset.X)
    batch = n if batch_size is None else min(batch_size, n)
    rng = np.random.default_rng(seed)
    order, cursor = rng.permutation(n), 0
    losses = []
    params = model.parameters()
    for k in range(steps):
        if batch == n:
            idx = np.arange(n)
        else:
            if cursor + batch > n:
                order, cursor = rng.permutation(n), 0
            idx = order[cursor:cursor + batch]
            cursor += batch
        model.zero_grad()
        sample_losses = []
        for x, y in zip(dataset.X[idx].tolist(), dataset.y[idx].tolist()):
            scores = model(x)
            loss = (1 + -y * scores).relu() if dataset.classes == 2 else \
                Value.cross_entropy(scores, y)
            (loss * (1.0 / len(idx))).backward()
            sample_losses.append(loss.data)
        reg = train.ALPHA * sum(p * p for p in params)
        reg.backward()
        rate = lr * (1.0 - 0.9 * k / steps)  # the schedule as the loop wrote it
        for p in params:
            p.data -= rate * p.grad
        losses.append(sum(sample_losses) * (1.0 / len(idx)) + reg.data)
    return losses


@pytest.mark.parametrize("name, steps, batch, lr, hidden", [
    ("moons", 12, None, 1.0, (16, 16)),   # the whole set, SGD in C
    ("blobs", 6, 50, 0.5, (8,)),         # mini-batches, cross-entropy
])
def test_train_gives_the_numbers_of_micrograds_loop_bit_for_bit(name, steps, batch, lr, hidden):
    data = datasets.load(name)
    ours = train.train(data, train.make_model(data, hidden, 3), steps, batch, lr, seed=5)
    reference = train.make_model(data, hidden, 3)
    assert ours.loss == python_loop(data, reference, steps, batch, lr, seed=5)
    assert [p.data for p in ours.model.parameters()] == [p.data for p in reference.parameters()]


def test_the_schedule_falls_from_lr_to_a_tenth():
    assert [train.learning_rate(k, 10, 0.5) for k in (0, 5)] == [0.5, 0.5 * (1.0 - 0.45)]
    assert train.learning_rate(100, 100) == pytest.approx(0.1)


def test_svm_loss_fused_takes_lists_as_the_notebook_loss_does():
    X, y = datasets.moons()
    random.seed(2)
    model = nn.MLP(2, [4, 1])
    a, acc_a = train.svm_loss_fused(model, X, y)
    b, acc_b = train.svm_loss_fused(model, X.tolist(), y.tolist())
    assert a.data == b.data and acc_a == acc_b


def test_an_mlp_knows_its_sizes_and_a_dataset_its_outputs():
    assert nn.MLP(2, [16, 16, 1]).sizes == [2, 16, 16, 1]
    model = nn.MLP(3, [4, 5])
    model.layers = model.layers[:1]  # replaced whole: the sizes follow
    assert model.sizes == [3, 4]
    assert [datasets.load(name).outputs for name in ("moons", "blobs", "digits")] == [1, 3, 10]
    data = datasets.load("digits")
    assert train.make_model(data, (8,), 0).sizes == [64, 8, 10]


def test_save_and_load_keep_the_parameters_and_hand_metadata_to_the_check(tmp_path):
    random.seed(4)
    model = nn.MLP(2, [3, 1])
    path = tmp_path / "m.json"
    nn.save(model, path, dataset="moons", note=[1, 2])
    document = json.loads(path.read_text())
    assert list(document) == ["format", "version", "dataset", "note", "sizes", "state"]
    assert (document["format"], document["version"]) == (nn.MODEL_FORMAT, nn.MODEL_VERSION)
    seen = []
    again = nn.load(path, lambda sizes, metadata: seen.append((sizes, metadata)))
    assert seen == [([2, 3, 1], {"dataset": "moons", "note": [1, 2]})]
    assert type(again) is nn.MLP and again.sizes == [2, 3, 1]
    assert [p.data for p in again.parameters()] == [p.data for p in model.parameters()]
    assert again([0.5, -1.0]).data == model([0.5, -1.0]).data


def test_save_refuses_metadata_named_as_the_documents_own_keys(tmp_path):
    with pytest.raises(ValueError, match="metadata may not be named sizes"):
        nn.save(nn.MLP(2, [1]), tmp_path / "m.json", sizes=[9])
    assert not (tmp_path / "m.json").exists()


def test_load_refuses_a_bad_file_with_a_value_error_naming_it(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    nn.save(nn.MLP(2, [3, 1]), path)
    good = json.loads(path.read_text())
    for change, words in [
        ({"format": "x"}, "is not a micrograd_cy model file"),
        ({"version": 7}, "is a model of format version 7; this micrograd_cy reads version 1"),
        ({"sizes": [2, 0, 1]}, "'sizes' must list positive layer sizes"),
        ({"sizes": [2, 4, 1]}, "its state does not match its sizes [2, 4, 1]"),
        ({"sizes": [2, 2**41, 1]}, "wider than any memory holds"),
    ]:
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(ValueError) as info:
            nn.load(path)
        assert str(info.value).startswith(str(path)) and words in str(info.value), info.value
    path.write_text(json.dumps({**good, "state": {**good["state"], "parameters": ["a"] * 13}}))
    with pytest.raises(ValueError, match="parameter 0 of the state dict is a str"):
        nn.load(path)
    path.write_text(json.dumps({**good, "sizes": [2, 10**6, 10**6, 1]}))  # 10**12 parameters
    monkeypatch.setattr(nn, "available_memory", lambda: 2**30)
    with pytest.raises(ValueError, match="more than the 1.0 GiB this machine has free"):
        nn.load(path)


STEPS = [("moons", (16, 16), 100), ("blobs", (16, 16), 150), ("digits", (32,), 32),
         ("digits", (64, 64), 1)]


@pytest.mark.parametrize("fused,steps", [(True, STEPS)] + [(False, [step]) for step in STEPS],
                         ids=["fused"] + [f"own-graph-{n}-{rows}" for n, _, rows in STEPS])
def test_the_memory_estimate_bounds_what_a_step_takes(fused, steps):
    # in a fresh interpreter, as the CLI checks before anything is built: the model, a
    # step's graph (Net nodes for one output, Value.matvec's for more; with nn.set_fused(False)
    # micrograd's node an op) and its backward. micrograd's graphs are large enough that the
    # slabs one step leaves for the next would hide the next one's: a fresh interpreter each
    out = run_probe(f"""
        import gc, json, random, tracemalloc
        from micrograd_cy import Value, datasets, nn, train
        nn.set_fused({fused})
        for name, hidden, rows in {steps!r}:
            data = datasets.load(name)
            sizes = [data.features, *hidden, data.outputs]
            X, y = data.X[:rows], data.y[:rows]
            gc.collect()
            tracemalloc.start()
            random.seed(1)
            model = nn.MLP(sizes[0], sizes[1:])
            total, _ = train.loss_of(model, X, y, data.classes)
            total.backward()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(json.dumps([sizes, peak, train.memory_needed(sizes, rows)]))
    """)
    for line in out.splitlines():
        sizes, peak, estimate = json.loads(line)
        assert peak <= estimate < 2 * peak, (sizes, peak, estimate)


def test_the_memory_estimate_follows_the_engines_node_size():
    from micrograd_cy import engine
    assert (engine.NODE_SIZE, engine.CHILD_SIZE) == (64, 8)
    one, two = train.memory_needed([2, 16, 16, 1], 1), train.memory_needed([2, 16, 16, 1], 2)
    # a sample: 2 input leaves, the Net node with 3 children and 32 hidden units' two
    # doubles, 5 loss nodes, each node in an order; its Python row and label; its loss slot
    assert two - one == 2 * 72 + (72 + 8 * 3 + 16 * 32) + 5 * 72 + (56 + 40 * 2 + 64) + 8
    assert math.isclose(nn.memory_needed([2, 16, 16, 1], 100) - nn.memory_needed([2, 16, 16, 1]),
                        100 * (2 * 72 + 72 + 8 * 3 + 16 * 32))


def test_a_two_class_held_out_confusion_matrix_counts_each_class_in_its_own_row():
    # labels -1/+1: -1 once indexed the last row, so both classes were counted in one
    rng = np.random.default_rng(0)
    X, X_test = rng.normal(size=(20, 3)), rng.normal(size=(12, 3))
    y, y_test = np.where(X[:, 0] > 0, 1, -1), np.where(X_test[:, 0] > 0, 1, -1)
    data = datasets.Dataset("two", X, y, X_test, y_test, classes=2)
    result = train.train(data, train.make_model(data, (8,), 1), 30)
    _, _, guess = train.evaluate(result.model, X_test, y_test, 2)
    want = [[np.sum((y_test == t) & (guess == g)) for g in (-1, 1)] for t in (-1, 1)]
    assert result.confusion.tolist() == want and result.confusion.sum() == 12
