"""Drawing graphs with graphviz, and what a user sees without it."""
import builtins
import shutil

import micrograd.engine
import pytest

from micrograd_cy import Value, cli, viz


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
