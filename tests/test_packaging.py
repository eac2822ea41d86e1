"""What a pip user gets: `python -m build` makes an sdist that carries the engine's sources
and builds with nothing but the build requirements, and a wheel; each installs in a clean
virtual environment and computes what upstream micrograd computes."""
import inspect
import json
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from micrograd.engine import Value as UpstreamValue
from micrograd.nn import MLP as UpstreamMLP

from conftest import close, readme_example

ROOT = Path(__file__).resolve().parents[1]
# what a clean clone does not have: build products, environments, caches
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".nox", "build", "dist", "*.egg-info",
                                     "*.so", "*.c", "*.html", "__pycache__", ".hypothesis",
                                     ".pytest_cache", ".coverage*")
PROBE = """
import json, micrograd_cy
from micrograd_cy import Value
from micrograd_cy.nn import MLP
{readme_example}
a, b = Value(-4.0), Value(2.0)
g = readme_example(a, b)
g.backward()
print(json.dumps({{"file": micrograd_cy.__file__, "g": g.data, "da": a.grad, "db": b.grad,
                  "params": len(MLP(2, [16, 16, 1]).parameters())}}))
""".format(readme_example=inspect.getsource(readme_example))


def upstream_numbers():
    a, b = UpstreamValue(-4.0), UpstreamValue(2.0)
    g = readme_example(a, b)
    g.backward()
    return {"g": g.data, "da": a.grad, "db": b.grad,
            "params": len(UpstreamMLP(2, [16, 16, 1]).parameters())}


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    src = tmp_path_factory.mktemp("clone") / "micrograd_cy"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCES)
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(src)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def install_and_probe(tmp_path, target):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    run = subprocess.run([str(python), "-m", "pip", "install", "-q", str(target)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    neutral = tmp_path / "elsewhere"  # not the clone: its source folder must not be what imports
    neutral.mkdir()
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a clean venv's own
    probe = subprocess.run([str(python), "-c", PROBE], cwd=neutral, capture_output=True,
                           text=True, env=clean)
    assert probe.returncode == 0, probe.stderr
    got = json.loads(probe.stdout)
    assert Path(got.pop("file")).is_relative_to(env_dir)
    want = upstream_numbers()
    assert got["params"] == want.pop("params")
    for key, value in want.items():  # grads: summed in another order than upstream's
        assert close(got[key], value), (key, got[key], value)


@pytest.mark.slow
def test_the_sdist_carries_the_engine_sources_and_no_build_products(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as tar:
        names = {Path(*Path(n).parts[1:]).as_posix() for n in tar.getnames()}
    sources = {p.relative_to(ROOT).as_posix() for ext in ("pyx", "pxd", "pxi", "pyi", "py")
               for p in (ROOT / "micrograd_cy").glob(f"*.{ext}")}
    assert sources >= {"micrograd_cy/engine.pyx", "micrograd_cy/engine.pxd",
                       "micrograd_cy/ops.pxi", "micrograd_cy/nn.py"}
    assert sources | {"setup.py", "pyproject.toml", "README.md", "micrograd_cy/py.typed"} <= names
    assert not [n for n in names if n.endswith((".so", ".c", ".html"))]


@pytest.mark.slow
def test_the_wheel_carries_the_compiled_engine_and_its_types(dists):
    _, wheel = dists
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    assert any(n.startswith("micrograd_cy/engine.") and n.endswith(".so") for n in names), names
    assert {"micrograd_cy/nn.py", "micrograd_cy/engine.pyi", "micrograd_cy/py.typed"} <= names
    assert not [n for n in names if n.startswith(("benchmarks/", "tests/"))]  # the clone's only


@pytest.mark.slow
def test_the_license_travels_in_the_sdist_and_in_the_wheels_metadata(dists):
    sdist, wheel = dists
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "micrograd_cy contributors" in license_text
    with tarfile.open(sdist) as tar:
        (member,) = [m for m in tar.getmembers() if Path(m.name).parts[1:] == ("LICENSE",)]
        assert tar.extractfile(member).read().decode() == license_text
    with zipfile.ZipFile(wheel) as whl:
        info = {Path(n).relative_to(Path(n).parts[0]).as_posix(): n for n in whl.namelist()
                if Path(n).parts[0].endswith(".dist-info")}
        metadata = whl.read(info["METADATA"]).decode()
        assert whl.read(info["licenses/LICENSE"]).decode() == license_text
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines()


@pytest.mark.slow
def test_the_wheel_installs_and_runs_in_a_clean_venv(dists, tmp_path):
    install_and_probe(tmp_path, dists[1])


@pytest.mark.slow
def test_the_sdist_builds_from_nothing_but_its_build_requirements(dists, tmp_path):
    # a clean venv holds pip alone: pip's isolated build brings setuptools and Cython as
    # pyproject.toml's [build-system] asks, and compiles the engine from the sdist's sources
    install_and_probe(tmp_path, dists[0])
