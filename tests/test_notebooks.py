"""micrograd's two notebooks' patterns, as a user writes them against micrograd's API
(tests/scripts/), run on upstream micrograd from PyPI and, after install_as_micrograd(), on
the compiled engine: the demo's loss and training loop, and trace_graph's drawing."""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent / "scripts"
PRINTED = Path(__file__).resolve().parent / "data" / "demo_ipynb_steps.txt"
INSTALL = "import micrograd_cy; micrograd_cy.install_as_micrograd()\n"
UNFUSED = "import micrograd_cy; micrograd_cy.install_as_micrograd(fused=False)\n"
# upstream's closures make the GC slow; its numbers are the same without it
NO_GC = "import gc; gc.disable()\n"


def run(script, tmp_path, installed, *args, install=INSTALL):
    """The script's output lines, run as __main__ on either engine; asserts which one ran."""
    epilogue = "\nimport sys; print('engine:', Value.__module__, file=sys.stderr)\n"
    code = (install if installed else NO_GC) + (SCRIPTS / script).read_text() + epilogue
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, env=dict(os.environ, MPLBACKEND="Agg"))
    assert out.returncode == 0, out.stderr[-3000:]
    want = "micrograd_cy.engine" if installed else "micrograd.engine"
    assert out.stderr.splitlines()[-1] == f"engine: {want}", out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines()]


def assert_same_steps(ours, theirs):
    assert [s["step"] for s in ours] == [s["step"] for s in theirs]
    for mine, want in zip(ours, theirs):
        assert mine["accuracy"] == want["accuracy"], (mine, want)
        assert math.isclose(mine["loss"], want["loss"], rel_tol=1e-9), (mine, want)


def test_the_demo_trains_as_the_notebook_printed_at_every_step(tmp_path):
    *steps, _ = run("moons_demo.py", tmp_path, True)
    printed = re.findall(r"^step (\d+) loss (\S+), accuracy (\S+)%$", PRINTED.read_text(), re.M)
    want = [{"step": int(k), "loss": float(loss), "accuracy": float(acc) / 100}
            for k, loss, acc in printed]
    assert len(want) == 100
    assert_same_steps(steps, want)


def test_the_demo_follows_upstream_micrograd_for_its_first_steps(tmp_path):
    # upstream takes about 0.4 s a step: the whole run and the plot's grid are the slow test's
    assert_same_steps(run("moons_demo.py", tmp_path, True, "5")[:-1],
                      run("moons_demo.py", tmp_path, False, "5")[:-1])


@pytest.mark.slow
def test_the_demo_follows_upstream_micrograd_at_every_step_and_on_the_plots_grid(tmp_path):
    *ours, our_grid = run("moons_demo.py", tmp_path, True)
    *theirs, their_grid = run("moons_demo.py", tmp_path, False)
    assert len(ours) == 100
    assert_same_steps(ours, theirs)
    assert len(our_grid["grid"]) > 200 and our_grid == their_grid


def records(source):
    """A drawing's numbers: the root's record, the leaves' records, and every record."""
    labels = dict(re.findall(r'^\s*(\d+) \[label="(\{ data [^"]+ \})" shape=record\]', source, re.M))
    edges = re.findall(r"^\s*(\S+) -> (\S+)$", source, re.M)
    fed = {re.match(r'"?(\d+)', dst).group(1) for _, dst in edges}  # a node's id, or id + op
    feeds = {src for src, _ in edges if src in labels}
    root = [labels[n] for n in labels if n not in feeds]
    leaves = sorted(labels[n] for n in labels if n not in fed)
    return root, leaves, sorted(labels.values())


def test_the_trace_graph_drawing_shows_upstreams_numbers(tmp_path):
    pytest.importorskip("graphviz")  # the Python package: in the test extras, so never skipped there
    (ours,) = run("trace_graph.py", tmp_path, True)
    (theirs,) = run("trace_graph.py", tmp_path, False)
    # the small expression: the same nodes and numbers
    assert records(ours[0]) == records(theirs[0])
    assert len(records(ours[0])[2]) == 6  # x, 2, x*2, 1, +1, relu
    # the neuron: micrograd_cy's is one fused ReLU(dot) node over the same leaves, to the same
    # root (docs/differences.md), so its root and leaves draw upstream's numbers
    root, leaves, _ = records(ours[1])
    want_root, want_leaves, _ = records(theirs[1])
    assert root == want_root and len(root) == 1
    assert leaves == want_leaves and len(leaves) == 5
    assert "ReLU(dot)" in ours[1]


def op_labels(source):
    """The labels of a drawing's op nodes, sorted ('*', '+', 'ReLU', ...)."""
    return sorted(re.findall(r'\[label="?([^"{][^"]*?)"?\]$', source, re.M))


def test_the_trace_graph_drawing_unfused_is_upstreams(tmp_path):
    # install_as_micrograd(fused=False): the neuron is micrograd's own graph, drawn record
    # for record as upstream draws it
    pytest.importorskip("graphviz")
    (ours,) = run("trace_graph.py", tmp_path, True, install=UNFUSED)
    (theirs,) = run("trace_graph.py", tmp_path, False)
    for mine, want in zip(ours, theirs):
        assert records(mine) == records(want)
        assert op_labels(mine) == op_labels(want)
    assert op_labels(ours[1]) == ["*", "*", "+", "+", "ReLU"] and len(records(ours[1])[2]) == 10
