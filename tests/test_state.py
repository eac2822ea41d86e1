"""Saving and loading models: state dicts, pickle, deepcopy."""
import copy
import json
import math
import pickle
import random

import pytest

from micrograd_cy import nn


def model(seed=0):
    random.seed(seed)
    return nn.MLP(3, [4, 2])


def test_state_dict_round_trips_through_json():
    a, b = model(0), model(1)
    state = json.loads(json.dumps(a.state_dict()))
    assert state["shape"] == [[3, 3, 3, 3], [4, 4]] and len(state["parameters"]) == 26
    b.load_state_dict(state)
    assert [p.data for p in b.parameters()] == [p.data for p in a.parameters()]
    x = [0.5, -1.0, 2.0]
    assert [v.data for v in a(x)] == [v.data for v in b(x)]


@pytest.mark.parametrize("mutate,error", [
    (lambda s: s.update(shape=[[3, 3], [2, 2]]), ValueError),
    (lambda s: s["parameters"].pop(), ValueError),
    (lambda s: s["parameters"].__setitem__(3, "x"), TypeError),
    (lambda s: s["parameters"].__setitem__(3, None), TypeError),
    (lambda s: s["parameters"].__setitem__(3, True), TypeError),
    (lambda s: s["parameters"].__setitem__(3, math.nan), ValueError),
    (lambda s: s["parameters"].__setitem__(3, math.inf), ValueError),
    (lambda s: s.update(parameters="abc"), ValueError),
    (lambda s: s.pop("shape"), ValueError),
])
def test_bad_state_is_refused_and_changes_nothing(mutate, error):
    target = model(1)
    before = [p.data for p in target.parameters()]
    state = model(0).state_dict()
    mutate(state)
    with pytest.raises(error):
        target.load_state_dict(state)
    assert [p.data for p in target.parameters()] == before


def test_not_a_dict_is_refused():
    with pytest.raises(ValueError):
        model().load_state_dict([1.0, 2.0])


def test_models_pickle_and_deepcopy():
    m = model(0)
    x = [0.5, -1.0, 2.0]
    expected = [v.data for v in m(x)]
    for clone in [pickle.loads(pickle.dumps(m)), copy.deepcopy(m)]:
        assert repr(clone) == repr(m)
        assert [v.data for v in clone(x)] == expected
        clone.parameters()[0].data += 1.0  # the clone is independent, and sees its own change
        assert [v.data for v in clone(x)] != expected
        assert [v.data for v in m(x)] == expected
