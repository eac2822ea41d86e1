"""Hostile use of issue 22's additions (attributes on Values, Value's class patched, microgpt's
local gradients, the new ops): each test here reproduces a bug found on the branch before it
was fixed. Numbers are checked against PyTorch in float64 and against upstream's semantics."""
import copy
import math
import pickle
import random

import pytest

from micrograd_cy import Value, nn


# -- cross_entropy's target is a child like any other: one off the tape takes the node off it --

def test_a_target_off_the_tape_is_recomputed_by_forward():
    # t is an op node with a hand-built node below it, so off the tape. The CROSS_ENTROPY node
    # used to join the tape anyway (its last child's OFF_TAPE was ignored), so the tape walk that
    # orders its replay never met t: forward() kept the old target, a silent wrong loss (and
    # the debug build reports "on the tape, with child ... off it").
    logits = [Value(1.0), Value(2.0), Value(0.5)]
    k = Value(1.0)
    t = Value(0.0, (Value(5.0),), "c") + k  # the index 1.0
    loss = Value.cross_entropy(logits, t)
    loss.backward()
    k.data = 2.0  # the target is now class 2
    loss.forward()
    assert t.data == 2.0
    # PyTorch: F.cross_entropy(torch.tensor([[1., 2., .5]], dtype=float64), torch.tensor([2]))
    expected = -(0.5 - math.log(math.exp(1.0) + math.exp(2.0) + math.exp(0.5)))
    assert loss.data == pytest.approx(expected, rel=1e-15)
    for v in logits:
        v.grad = 0.0  # leaves accumulate
    loss.backward()
    assert logits[2].grad == pytest.approx(math.exp(0.5 - math.log(
        math.exp(1.0) + math.exp(2.0) + math.exp(0.5))) - 1.0, rel=1e-14)


# -- a patched Value.relu reaches nn's neurons, as upstream's Neuron calls act.relu() ---------

@pytest.mark.parametrize("part", ["Neuron", "Layer", "MLP"])
def test_a_patched_relu_is_called_by_the_fused_paths_too(part, patch):
    random.seed(5)
    model = {"Neuron": lambda: nn.Neuron(3), "Layer": lambda: nn.Layer(3, 2),
             "MLP": lambda: nn.MLP(3, [4, 4, 1])}[part]()
    x = [0.5, -1.0, 2.0]
    model(x)  # warmed up: a cached fused net, if any, must notice the patch
    patch(Value, "relu", lambda self: self.tanh())  # a user trying tanh in micrograd's MLP
    with nn.fused(False):  # upstream's nn.py, node for node: calls the patched relu
        plain = model(x)
    fused = model(x)
    as_list = (lambda o: [v.data for v in o]) if part == "Layer" else (lambda o: [o.data])
    assert as_list(fused) == as_list(plain)


# -- __dict__, as on any Python object ---------------------------------------------------------

def test_assigning_a_values_own_dict_back_keeps_its_attributes():
    v = Value(1.0)
    v.m, v.n = 1, 2
    v.__dict__ = v.__dict__  # a no-op on a Python object
    assert vars(v) == {"m": 1, "n": 2}
    w = Value(2.0)
    w.a = 1
    w.__dict__ = vars(v)
    assert vars(w) == {"m": 1, "n": 2}


def test_a_values_dict_copies_and_pickles_as_a_dict():
    # optimizer state saved as upstream users write it: copy.copy(vars(p)), pickle of vars(p)
    v = Value(1.0)
    v.m, v.v = 0.5, [1, 2]
    for twin in (copy.copy(vars(v)), copy.deepcopy(vars(v)),
                 pickle.loads(pickle.dumps(vars(v)))):
        assert twin == {"m": 0.5, "v": [1, 2]} and type(twin) is dict


def test_deleting_a_values_dict_empties_it_as_on_a_python_object():
    v = Value(1.0)
    v.m = 1
    del v.__dict__  # a Python object's: its attributes go; was NotImplementedError
    assert vars(v) == {}
    v.k = 2
    assert vars(v) == {"k": 2}


# -- cross_entropy with infinite logits: PyTorch's numbers -------------------------------------

@pytest.mark.parametrize("logits", [[math.inf, 0.0, 1.0], [math.inf, math.inf, 1.0]])
@pytest.mark.parametrize("target", [0, 1, 2])
def test_cross_entropy_with_an_infinite_logit_is_pytorchs(logits, target):
    # F.cross_entropy(torch.tensor([logits], dtype=torch.float64), torch.tensor([target])) is NaN
    # with NaN gradients (log_softmax shifts by the largest logit, inf, and inf - inf is NaN);
    # the node gave inf, or finite gradients, at some of these
    vs = [Value(x) for x in logits]
    loss = Value.cross_entropy(vs, target)
    loss.backward()
    assert math.isnan(loss.data) and all(math.isnan(v.grad) for v in vs)
    assert all(math.isnan(g) for g in loss._local_grads[:-1])
