"""Drawing graphs with graphviz, and what a user sees without it."""
import builtins
import random
import shutil

import micrograd.engine
import micrograd.nn
import pytest

from conftest import run_probe
from micrograd_cy import Value, cli, nn, viz


def test_draw_dot_shows_every_value_and_op():
    o = viz.neuron()
    dot = viz.draw_dot(o)
    nodes, edges = viz.trace(o)
    source = dot.source
    assert len(nodes) == 10 and len(edges) == 9
    for text in ["data 0.7071", "grad 1.0000", "grad -1.5000", "label=tanh", "x1*w1", "rankdir=LR"]:
        assert text in source, text
    assert source.count("shape=record") == 10
    assert source.count("->") == 9 + 5  # an edge per child, and one per op into its node


def test_draw_dot_works_on_upstream_values_too():
    a = micrograd.engine.Value(2.0)
    b = a * 3 + 1
    b.backward()
    assert "data 7.0000" in viz.draw_dot(b, rankdir="TB").source


def test_draw_dot_checks_its_arguments():
    with pytest.raises(ValueError, match="rankdir"):
        viz.draw_dot(Value(1.0), rankdir="RL")
    big = Value.sum([Value(float(i)) for i in range(50)])
    with pytest.raises(ValueError, match="max_nodes"):
        viz.draw_dot(big, max_nodes=10)


def test_trace_is_not_recursive():
    v = Value(1.0)
    for _ in range(5000):
        v = v + 1
    assert len(viz.trace(v)[0]) == 10001


def test_graph_command_renders(capsys, tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot program is not installed here (CI installs it)")
    out = tmp_path / "neuron.svg"
    assert cli.main(["graph", "--out", str(out)]) == 0
    assert "<svg" in out.read_text() and "tanh" in out.read_text()
    assert cli.main(["graph", "--out", str(tmp_path / "neuron.png"), "--rankdir", "TB"]) == 0
    assert (tmp_path / "neuron.png").read_bytes().startswith(b"\x89PNG")


def test_graph_command_without_dot(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on it
    assert cli.main(["graph", "--out", str(tmp_path / "n.svg")]) == 1
    err = capsys.readouterr().err
    assert "Graphviz's `dot` program" in err and len(err.strip().splitlines()) == 1


def test_without_the_graphviz_package(capsys, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_graphviz(name, *args, **kwargs):
        if name == "graphviz":
            raise ModuleNotFoundError("No module named 'graphviz'", name="graphviz")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_graphviz)
    with pytest.raises(viz.GraphvizMissing, match=r"pip install 'micrograd_cy\[viz\]'"):
        viz.draw_dot(Value(1.0))
    assert cli.main(["graph", "--out", str(tmp_path / "n.svg")]) == 1
    assert "micrograd_cy[viz]" in capsys.readouterr().err


def lecture_mlp(nn, Value, fused=False):
    """MLP(3, [4, 4, 1]) on either engine, after backward(); micrograd's own graph unless
    fused (nn.fused is ours only)."""
    random.seed(5)
    model = nn.MLP(3, [4, 4, 1])
    x = [Value(1.0), Value(-2.0), Value(0.5)]
    if fused:
        out = model(x)
    else:
        with (nn.fused(False) if hasattr(nn, "fused") else _nothing()):
            out = model(x)
    out.backward()
    return out


class _nothing:
    def __enter__(self):
        pass

    def __exit__(self, *exc):
        pass


GRAPHS = {
    "notebook neuron": viz.neuron,
    "micrograd's MLP graph": lambda: lecture_mlp(nn, Value),
    "fused MLP": lambda: lecture_mlp(nn, Value, fused=True),
    "upstream's MLP": lambda: lecture_mlp(micrograd.nn, micrograd.engine.Value),
    "shared leaves": lambda: (lambda a, b: (a * b + a * a + b).relu())(Value(2.0), Value(2.0)),
    "twin chains": lambda: twin_chains(),
    "equal weights, no backward": lambda: equal_weights(),
}


def twin_chains():
    """Two equal chains from two equal leaves, and a third leaf shared by one of them."""
    a, b, c = Value(1.0), Value(1.0), Value(1.0)
    for _ in range(20):
        a, b = (a * 1.0).relu(), (b * 1.0).relu()
    return a * b + (a + c)


def equal_weights():
    """A layer whose neurons are all alike: they tie everywhere, and only their inputs differ."""
    layer = nn.Layer(3, 4)
    for p in layer.parameters():
        p.data = 0.5
    with nn.fused(False):
        return sum(layer([Value(1.0), Value(2.0), Value(1.0)]))


@pytest.mark.parametrize("make", GRAPHS.values(), ids=GRAPHS.keys())
def test_the_same_graph_built_again_draws_the_same_source(make):
    # built five times and all kept alive: their nodes have other addresses, so their sets
    # of children iterate in other orders
    roots = [make() for _ in range(5)]
    sources = [viz.draw_dot(root).source for root in roots]
    assert sources.count(sources[0]) == 5, "\n\n".join(sources[:2])
    nodes = viz.trace(roots[0])[0]
    assert not any(str(id(n)) in sources[0] for n in nodes)  # named by place, not address
    assert sources[0].count("shape=record") == len(nodes)


def test_the_same_graph_in_another_process_draws_the_same_source():
    code = f"""
        import sys
        sys.path.insert(0, {str(__import__("conftest").ROOT + "/tests")!r})
        from test_viz import lecture_mlp
        from micrograd_cy import nn, viz, Value
        print(viz.draw_dot(lecture_mlp(nn, Value)).source)
    """
    first, second = run_probe(code), run_probe(code)
    assert first == second and first.count("shape=record") > 100


def test_walk_puts_children_before_parents_and_the_root_last():
    root = lecture_mlp(nn, Value)
    nodes, edges = viz.walk(root)
    place = {n: i for i, n in enumerate(nodes)}
    assert nodes[-1] is root and len(place) == len(nodes) == len(viz.trace(root)[0])
    assert len(edges) == len(set(edges)) == len(viz.trace(root)[1])
    assert all(place[child] < place[parent] for child, parent in edges)


def test_walk_takes_our_children_in_their_order():
    # two leaves alike in every way the digest sees: our _children says which came first
    from micrograd_cy.viz import walk
    x, y = Value(1.0), Value(1.0)
    z = y * x + x
    nodes, edges = walk(z)
    assert nodes[:2] == [y, x] and nodes[-1] is z
    assert walk(z) == (nodes, edges)
