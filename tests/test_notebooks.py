"""Upstream micrograd's own notebooks, their code verbatim (tests/notebooks/, provenance noted
there), run on the compiled engine after install_as_micrograd(), as a micrograd user would."""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "notebooks"
STEP = re.compile(r"step (\d+) loss ([0-9.e-]+), accuracy ([0-9.]+)%")


def run_notebook(name, tmp_path, installed):
    prelude = "import micrograd_cy; micrograd_cy.install_as_micrograd()\n" if installed else ""
    # which engine the notebook's Value was: said on stderr, after the notebook's own output
    epilogue = "\nimport sys; print('engine:', Value.__module__, file=sys.stderr)\n"
    code = prelude + (HERE / name).read_text() + epilogue
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, env=dict(os.environ, MPLBACKEND="Agg"))
    assert out.returncode == 0, out.stderr[-3000:]
    want = "micrograd_cy.engine" if installed else "micrograd.engine"
    assert out.stderr.splitlines()[-1] == f"engine: {want}", out.stderr[-3000:]
    return out.stdout


def test_demo_ipynb_trains_as_the_notebook_printed_at_every_step(tmp_path):
    got = STEP.findall(run_notebook("demo_ipynb.py", tmp_path, installed=True))
    want = STEP.findall((HERE / "demo_ipynb_steps.txt").read_text())
    assert len(want) == 100 and [s for s, _, _ in got] == [s for s, _, _ in want]
    for (step, loss, acc), (_, want_loss, want_acc) in zip(got, want):
        assert acc == want_acc, (step, acc, want_acc)
        assert math.isclose(float(loss), float(want_loss), rel_tol=1e-9), (step, loss, want_loss)


def records(source):
    """The drawn numbers: each record's label, and which records are the root and leaves."""
    labels = dict(re.findall(r'^\s*(\d+) \[label="(\{ data [^"]+ \})" shape=record\]', source, re.M))
    edges = re.findall(r"^\s*(\S+) -> (\S+)$", source, re.M)
    fed = {re.match(r'"?(\d+)', dst).group(1) for _, dst in edges}  # id, or id + op
    feeds = {src for src, _ in edges if src in labels}
    root = [labels[n] for n in labels if n not in feeds]
    leaves = sorted(labels[n] for n in labels if n not in fed)
    return root, leaves, sorted(labels.values())


def test_trace_graph_ipynb_draws_upstreams_numbers(tmp_path):
    pytest.importorskip("graphviz")  # the Python package: in the test extras, so never skipped there
    ours = json.loads(run_notebook("trace_graph_ipynb.py", tmp_path, installed=True).splitlines()[-1])
    theirs = json.loads(run_notebook("trace_graph_ipynb.py", tmp_path, installed=False).splitlines()[-1])
    # the simple example: the same nodes and numbers
    assert records(ours[0]) == records(theirs[0])
    assert len(records(ours[0])[2]) == 6  # x, 2, x*2, 1, +1, relu
    # the neuron: micrograd_cy's is one fused ReLU(dot) node over the same leaves, to the same
    # root (README: "Differences"), so its root and leaves draw upstream's numbers
    root, leaves, _ = records(ours[1])
    want_root, want_leaves, _ = records(theirs[1])
    assert root == want_root and len(root) == 1
    assert leaves == want_leaves and len(leaves) == 5
    assert "ReLU(dot)" in ours[1]
