"""The benchmarks (python -m benchmarks, outside the package): the JSON they write, the
peers they leave out, the one timed-steps loop, and docs/speed.md generated from a run."""
import json
import os
import subprocess
import sys

from conftest import ROOT


def benchmarks_command(*argv, cwd, env=None):
    """python -m benchmarks as run in a clone, on the micrograd_cy under test (the clone's
    own, or the one installed from it: first on the path, the clone's benchmarks after it)."""
    import micrograd_cy
    package = os.path.dirname(os.path.dirname(os.path.abspath(micrograd_cy.__file__)))
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package, ROOT,
                                                      env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "benchmarks", *argv], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def test_benchmarks_write_their_json(tmp_path):
    out = benchmarks_command("--only", "native,replay", "--rounds", "2", "--scale", "0.2",
                             "--json", str(tmp_path / "bench.json"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "every configuration gives the same loss at every step" in out.stdout
    results = json.loads((tmp_path / "bench.json").read_text())
    assert list(results) == ["native", "replay"]
    for r in results.values():
        assert len(r["rounds"]) == 2 and min(r["rounds"]) <= r["ms_per_step"] <= max(r["rounds"])
        assert r["steps"] == 2 * (6 - 1) and r["nodes"] == 1145
    assert results["replay"]["ms_per_step"] < results["native"]["ms_per_step"]
    assert results["native"]["losses"] == results["replay"]["losses"]


def test_bench_leaves_out_a_peer_that_is_not_installed_and_says_why(monkeypatch):
    import importlib.machinery

    from benchmarks import harness, report
    from benchmarks.configs import CONFIGS
    from benchmarks.peers import JAX
    real = importlib.machinery.PathFinder.find_spec
    monkeypatch.setattr(importlib.machinery.PathFinder, "find_spec",
                        lambda name, *a: None if name == "jax" else real(name, *a))
    assert JAX.missing() == CONFIGS["jax"].missing() == "jax is not installed (pip install jax[cpu])"
    assert CONFIGS["floats"].missing() == ""
    # the same harness in this process: the floor row, then the report of it
    results = report.derive(harness.run([CONFIGS["floats"]], scale=0.2, rounds=2,
                                        echo=lambda line: None,
                                        worker=lambda c, steps, memory: CONFIGS[c].run(steps, memory)))
    assert list(results) == ["floats"] and len(results["floats"]["rounds"]) == 2


def test_timed_steps_times_each_phase_and_leaves_the_first_step_out():
    from benchmarks.harness import timed_steps
    calls = []
    run = timed_steps(4, lambda k: calls.append(("fwd", k)) or 2.5 * k,
                      lambda: calls.append(("zero",)), lambda loss: calls.append(("bwd", loss)),
                      lambda k: calls.append(("update", k)))
    assert calls[:4] == [("fwd", 0), ("zero",), ("bwd", 0.0), ("update", 0)] and len(calls) == 16
    assert run["losses"] == [0.0, 2.5, 5.0, 7.5]
    assert [len(run[phase]) for phase in ("step", "fwd", "bwd")] == [3, 3, 3]
    assert all(s >= f + b for s, f, b in zip(run["step"], run["fwd"], run["bwd"]))


HIDE_UPSTREAM = """\
import importlib.machinery
_find_spec = importlib.machinery.PathFinder.find_spec
def find_spec(name, path=None, target=None):
    if name.split(".")[0] == "micrograd":  # upstream micrograd is not installed
        return None
    return _find_spec(name, path, target)
importlib.machinery.PathFinder.find_spec = find_spec
"""


def test_bench_without_upstream_micrograd_leaves_its_rows_out_and_says_why(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(HIDE_UPSTREAM)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    hidden = subprocess.run([sys.executable, "-c", "import micrograd"], capture_output=True,
                            env=env, cwd=tmp_path)
    assert hidden.returncode == 1  # the hiding works
    out = benchmarks_command("--only", "floats,native", "--rounds", "1", "--scale", "0.1",
                             cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "skipped: floor: upstream nn.py's forward on floats: micrograd is not installed " \
           "(pip install micrograd)" in out.stdout
    assert "micrograd_cy nn + fused loss" in out.stdout
    out = benchmarks_command("--only", "floats,dropin", cwd=tmp_path, env=env)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "no configuration can run here: floats: micrograd is not installed" in out.stderr
    assert out.stdout == ""




def test_help_needs_no_numpy(tmp_path):
    # numpy hidden, as after a bare `pip install .`: the workers import it, not the parent
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'numpy':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = benchmarks_command("--help", cwd=tmp_path, env=env)
    assert out.returncode == 0 and "--only NAME,..." in out.stdout, out.stderr
    assert "replay-sgd" in out.stdout


def test_speed_md_is_the_report_of_its_json():
    from benchmarks import report
    with open(os.path.join(ROOT, "docs", "speed.json")) as f:
        results = json.load(f)
    with open(os.path.join(ROOT, "docs", "speed.md")) as f:
        text = f.read()
    block = text.split(report.BLOCK_START, 1)[1].split(report.BLOCK_END, 1)[0]
    assert block.strip() == report.markdown(results).strip()
    # a full run: every configuration, every round, every target measured
    from benchmarks.configs import CONFIGS, TARGETS
    assert list(results) == list(CONFIGS)
    assert all(len(r["rounds"]) == 5 for r in results.values())
    assert len(report.targets(results)) == len(TARGETS)


def test_losses_are_compared_within_the_problem_they_were_computed_on():
    from benchmarks import report

    def result(kind, losses):
        return {"kind": kind, "losses": losses, "ms_per_step": 1.0, "fwd_ms": 0.5, "bwd_ms": 0.5,
                "description": kind, "rows": 100}
    demo = [0.9, 0.8, 0.7]
    results = {"native": result("moons", demo), "replay": result("moons", demo),
               "evaluate": result("grid", demo[:1]),   # the grid's loss is the demo's first
               "gpt": result("gpt", [3.3, 3.1]), "gpt-torch": result("gpt", [3.3, 3.1 + 1e-14])}
    report.derive(results)
    assert report.same_losses(results)
    assert [line.split(" (relative")[0] for line in report.notes(results)
            if line.startswith("losses")] == [
        "losses: every configuration gives the same loss at every step",
        "losses (gpt): every configuration gives the same loss at every step"]
    results["evaluate"] = report.derive({"evaluate": result("grid", [0.95])})["evaluate"]
    assert not report.same_losses(results)
    assert "losses: DIFFER" in [line.split(" (")[0] for line in report.notes(results)]
