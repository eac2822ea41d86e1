"""Methods patched onto Value's class, as micrograd users patch upstream's: they work on every
Value, those ops return included; the names the engine keeps raise TypeError saying why."""
import math

import pytest
from conftest import in_threads

from micrograd_cy import Value, nn


def test_a_method_added_works_on_every_value(patch):
    patch(Value, "ln", lambda self: self.log())
    x = Value(2.0)
    y = (x * 3).ln()  # on a node an op returned
    y.backward()
    assert y.data == math.log(6.0) and x.grad == pytest.approx(1 / 2.0)
    assert Value.sum([x, x]).ln().data == math.log(4.0)


def test_special_methods_take_effect(patch):
    def ge(self, other):
        return self.data >= (other.data if isinstance(other, Value) else other)

    patch(Value, "__ge__", ge)
    patch(Value, "__lt__", lambda self, other: not ge(self, other))
    assert Value(3.0) >= 2 and (Value(1.0) * 2) >= Value(2.0) and Value(1.0) < 2
    assert sorted([Value(3.0), Value(1.0), Value(2.0)])[0].data == 1.0
    patch(Value, "__len__", lambda self: 1)  # a slot a compiled class had no table for
    patch(Value, "__getitem__", lambda self, i: self * i)
    patch(Value, "__abs__", lambda self: self.relu() + (-self).relu())
    patch(Value, "__bool__", lambda self: self.data != 0)
    assert len(Value(5.0)) == 1 and Value(2.0)[3].data == 6.0
    assert abs(Value(-2.0)).data == 2.0 and not Value(0.0) and Value(0.5)


def test_deleting_a_patch_restores_the_class(patch):
    Value.extra = lambda self: 1
    Value.__ge__ = lambda self, other: True
    assert Value(0.0).extra() == 1 and Value(0.0) >= 5
    del Value.extra
    del Value.__ge__
    assert not hasattr(Value, "extra")
    with pytest.raises(TypeError, match="not supported"):
        Value(0.0) >= 5


def test_a_patch_after_a_call_site_warmed_up_is_seen(patch):
    # CPython caches method lookups per call site and per type version: each patch must
    # leave the type's version tag invalid, so every site looks again (one that the flags'
    # restore revived would keep calling the old method)
    def call(v):
        return v.relu()

    for _ in range(100):
        call(Value(-1.0))
    Value.temporary = 1
    del Value.temporary  # a patch, then another: the second must be seen too
    patch(Value, "relu", lambda self: self.tanh())
    assert call(Value(1.0)).data == math.tanh(1.0)
    for _ in range(100):
        call(Value(1.0))
    patch(Value, "relu", lambda self: self * 0)
    assert call(Value(1.0)).data == 0.0


@pytest.mark.parametrize("name, why", [
    ("__mul__", "builds Value's arithmetic in C"),
    ("__radd__", "builds Value's arithmetic in C"),
    ("__neg__", "builds Value's arithmetic in C"),
    ("__init__", "ops make their nodes in C"),
    ("__del__", "frees nodes itself"),
    ("__setattr__", "side object"),
    ("data", "C struct"),
    ("grad", "C struct"),
    ("_prev", "C struct"),
    ("_children", "C struct"),
    ("__name__", "attribute of the class object"),
    ("__class__", "attribute of the class object"),
])
def test_names_the_engine_keeps_are_refused_with_the_reason(name, why):
    before = vars(Value).get(name)
    with pytest.raises(TypeError, match=f"Value.{name} cannot be replaced: .*{why}"):
        setattr(Value, name, lambda *a: None)
    with pytest.raises(TypeError, match=f"Value.{name} cannot be deleted"):
        delattr(Value, name)
    assert vars(Value).get(name) is before
    assert (Value(2.0) * 3).data == 6.0


def test_the_lock_is_not_open_to_anyone_else():
    with pytest.raises(TypeError, match="immutable type|built-in/extension type"):
        type.__setattr__(Value, "x", 1)
    with pytest.raises(TypeError):
        setattr(Value, 3, 1)

    class Str(str):
        def __hash__(self):  # Python code inside the patch would run with the lock open
            raise AssertionError("ran")

    setattr(Value, Str("plain_name"), 5)
    try:
        assert Value.plain_name == 5
    finally:
        del Value.plain_name


def test_a_subclass_is_a_python_class():
    class Mine(Value):
        pass

    Mine.__mul__ = lambda self, other: "mine"  # its own, as any Python class's
    Mine.ln = lambda self: self.log()
    assert Mine(2.0) * 3 == "mine" and Mine(1.0).ln().data == 0.0
    assert not hasattr(Value, "ln")


def test_patched_relu_reaches_nn_as_upstream_calls_it(patch):
    # upstream's Neuron calls act.relu(): a patched relu must change what our fused
    # neurons, layers and one-node MLPs compute, not be skipped by them
    import random
    random.seed(5)
    model = nn.MLP(3, [4, 1])
    x = [0.5, -1.0, 2.0]
    plain = model(x).data
    leaky = lambda self: self.relu_stock() if self.data > 0 else self * 0.5  # noqa: E731
    patch(Value, "relu_stock", vars(Value)["relu"])
    patch(Value, "relu", leaky)
    patched = model(x).data
    neurons = [n(x) for n in model.layers[0].neurons]
    expected = model.layers[1].neurons[0](neurons).data
    assert patched == expected and patched != plain
    layer = nn.Layer(3, 4)  # a layer alone: its matvec path
    assert [v.data for v in layer(x)] == [n(x).data for n in layer.neurons]
    assert any(v.data < 0 for v in layer(x))  # the patched relu let negatives through


def test_patching_from_two_threads():
    def work(k):
        for i in range(200):
            name = f"t{k}_{i}"
            setattr(Value, name, lambda self, i=i: i)
            assert getattr(Value(0.0), name)() == i
            delattr(Value, name)

    in_threads(work, 0, 1)
    assert not [n for n in vars(Value) if n.startswith("t0_") or n.startswith("t1_")]
