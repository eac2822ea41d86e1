"""Attributes of the user's own on Values (v.m = 0, setattr(v, '_vis_color', c)), as LLM101n's
micrograd and its AdamW set them: kept in a side object made on the first, so a node that
never gets one is still 64 bytes and costs nothing more."""
import copy
import gc
import pickle
import sys
import tracemalloc
import weakref

import pytest
from conftest import in_threads, run_probe

from micrograd_cy import Value


class Payload:
    pass


def test_set_get_delete_and_vars_as_on_a_python_object():
    a = Value(2.0)
    b = a * 3
    a.m, a.v = 0, 0
    setattr(b, "_vis_color", "lightgreen")
    assert (a.m, a.v, b._vis_color, getattr(a, "missing", "default")) == (0, 0, "lightgreen",
                                                                         "default")
    assert hasattr(b, "_vis_color") and not hasattr(a, "_vis_color")
    assert vars(a) == {"m": 0, "v": 0} and a.__dict__ is vars(a)
    del a.m
    assert vars(a) == {"v": 0}
    with pytest.raises(AttributeError, match="'m'"):
        del a.m
    with pytest.raises(AttributeError, match="'m'"):
        a.m
    vars(b)["direct"] = 1  # a write into __dict__ is seen, as on any Python object
    assert b.direct == 1
    b.__dict__ = {"k": 2}
    assert vars(b) == {"k": 2}
    with pytest.raises(TypeError, match="must be set to a dict"):
        b.__dict__ = [("k", 2)]
    # the graph and its numbers are untouched by any of it
    b.backward()
    assert (b.data, a.grad) == (6.0, 3.0)


def test_the_engines_names_stay_the_engines():
    a = Value(1.0)
    b = a + 1
    with pytest.raises(TypeError):
        a.data = "x"
    for name in ("_op", "_prev"):
        with pytest.raises(AttributeError):
            setattr(b, name, "x")
    with pytest.raises(AttributeError, match="_backward cannot be assigned"):
        b._backward = lambda: None
    for name in ("data", "grad", "label"):
        with pytest.raises(AttributeError, match="cannot be deleted"):
            delattr(a, name)
    a.grad = 0  # as microgpt zeroes it
    a.label = "a"
    assert (a.grad, a.label, vars(a)) == (0.0, "a", {})
    # a method may be shadowed on one node, as on upstream's Python class
    a.relu = "mine"
    assert a.relu == "mine" and Value(-1.0).relu().data == 0.0


def test_pickle_and_copy_keep_the_attributes():
    a = Value(1.5, label="a")
    a.m, a.color = 0.25, "red"
    for twin in (pickle.loads(pickle.dumps(a)), copy.copy(a), copy.deepcopy(a)):
        assert (twin.data, twin.label, vars(twin)) == (1.5, "a", {"m": 0.25, "color": "red"})
        assert twin is not a
    shared = Payload()
    a.p = shared
    assert copy.copy(a).p is shared and copy.deepcopy(a).p is not shared
    plain = Value(1.0)
    assert len(plain.__reduce__()) == 2 and vars(pickle.loads(pickle.dumps(plain))) == {}


def test_a_node_that_never_gets_an_attribute_costs_nothing_more():
    nodes = [Value(float(i)) * 2 for i in range(20000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert not any(hasattr(v, "m") for v in nodes)  # a lookup makes no side object
        for v in nodes:
            v.grad = 1.0
            v.data = 2.0
        grown = tracemalloc.get_traced_memory()[0] - before
        for v in nodes[:1000]:
            v.m = 0.0
        per_node = (tracemalloc.get_traced_memory()[0] - before - grown) / 1000
    finally:
        tracemalloc.stop()
    assert grown < 4096, grown  # nothing a node: 20,000 side objects would be over 1 MB
    assert per_node > 48  # while a node that gets one pays for it
    assert all(sys.getsizeof(v) == 64 for v in nodes)


def test_attributes_die_with_their_node():
    v = Value(1.0) * 2
    v.p = Payload()
    dead = weakref.ref(v.p)
    del v
    assert dead() is None


class Rebuilds:
    """An attribute whose release runs the engine: it builds, backpropagates and sets
    attributes while the engine is freeing the node that held it."""
    log: list = []

    def __del__(self):
        x = Value(0.5)
        y = (x * x).tanh()
        y.note = "made in __del__"
        y.backward()
        Rebuilds.log.append(x.grad)


def test_an_attribute_whose_release_runs_engine_code():
    Rebuilds.log.clear()
    chain = Value(1.0)
    for i in range(200):
        chain = chain * 1.01
        chain.r = Rebuilds()
    del chain  # frees 200 nodes in one loop, each release building and walking
    assert len(Rebuilds.log) == 200 and len(set(Rebuilds.log)) == 1


def test_an_attribute_set_while_the_side_object_is_being_made():
    # the side object is a dict: making it may run the collector, whose finalizers may give
    # the same node its side object first; both attributes must survive
    v = Value(1.0)
    ran = []

    class Finalizer:
        def __del__(self):
            v.tag = "from the collector"
            ran.append(True)

    gc.collect()
    threshold = gc.get_threshold()
    gc.disable()
    try:
        for _ in range(5):
            f = Finalizer()
            f.me = f  # cyclic garbage: only the collector frees it
            del f
        gc.set_threshold(1)
        gc.enable()
        v.mine = "set"
        # up to 3.11 a collection runs inside the allocation itself; 3.12 and later run it
        # between bytecodes, never inside the engine's C, where the race cannot arise
        assert ran or sys.version_info >= (3, 12), "no collection inside the set: proves nothing"
    finally:
        gc.set_threshold(*threshold)
        gc.enable()
    gc.collect()
    assert vars(v) == {"tag": "from the collector", "mine": "set"}


def test_hostile_selves_and_bypasses():
    with pytest.raises(TypeError):
        Value.__setattr__(3.0, "m", 1)
    with pytest.raises(TypeError):
        Value.__delattr__("x", "m")
    with pytest.raises(TypeError):
        Value.__dict__["__dict__"].__get__(3.0)
    v = Value(1.0)
    with pytest.raises(TypeError):
        setattr(v, 3, 1)  # not a name
    # Python's generic setattr, past Value's own: refused up to 3.12; 3.13 lets it through,
    # and it puts a plain dict where the side object belongs (the next test has the rest)
    try:
        object.__setattr__(v, "m", 1)
    except TypeError as e:
        assert sys.version_info < (3, 13) and "can't apply" in str(e)
        v.m = 1
    assert vars(v) == {"m": 1} and v.label == "" and (v * 2).data == 2.0


def test_a_plain_dict_in_the_side_objects_place_becomes_one():
    # what object.__setattr__ leaves on 3.13, made on every Python by writing the slot: the
    # engine must not read an _Aux's fields out of it (without the check: a crash or garbage)
    out = run_probe("""
        import ctypes, pickle
        from micrograd_cy import Value

        def plain_dict_in(v, items):
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(items))
            ctypes.c_void_p.from_address(id(v) + type(v).__dictoffset__).value = id(items)

        x = Value(2.0)
        y = (x * 3.0).tanh()
        plain_dict_in(y, {"m": 1})
        assert (y.m, y.label, y._op) == (1, "", "tanh")
        y.backward()
        y.forward().backward()
        y.label = "y"
        assert (y.label, vars(y)) == ("y", {"m": 1}) and type(vars(y)).__name__ == "_Aux"
        z = Value(1.0) + 1.0
        plain_dict_in(z, {"k": 2})
        z.backward()
        assert z.grad == 1.0 and z.forward().data == 2.0
        assert pickle.loads(pickle.dumps(z)).k == 2
        print("ok")
    """)
    assert out.strip() == "ok"


def test_threads_setting_attributes_on_the_same_nodes():
    nodes = [Value(float(i)) for i in range(300)]

    def work(tag):
        for _ in range(20):
            for v in nodes:
                setattr(v, tag, getattr(v, tag, 0) + 1)
                (v * 2).backward()

    in_threads(work, "a", "b")
    assert all(vars(v) == {"a": 20, "b": 20} for v in nodes)


def test_llm101n_style_adamw_state_and_colours():
    # the habits of LLM101n's micrograd, written here in our own words: an optimizer keeping
    # its moments on each parameter, a drawing colouring nodes through an attribute
    params = [Value(0.5), Value(-0.25)]
    for p in params:
        p.m = 0
        p.v = 0
    loss = (params[0] * params[1] + params[0]).tanh()
    loss.backward()
    for p in params:
        p.m = 0.9 * p.m + 0.1 * p.grad
        p.v = 0.95 * p.v + 0.05 * p.grad ** 2
        p.data -= 0.1 * (p.m / 0.1) / ((p.v / 0.05) ** 0.5 + 1e-8)
    setattr(params[0], "_vis_color", "lightblue")
    colours = [getattr(n, "_vis_color", "white") for n in (params[0], params[1], loss)]
    assert colours == ["lightblue", "white", "white"]
    assert params[0].data == pytest.approx(0.4) and params[1].data == pytest.approx(-0.35)
