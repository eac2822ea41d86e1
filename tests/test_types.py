"""What an editor's type checker sees: `mypy --strict` on a small user script finds no error,
and the types it reveals for the model, its parameters, the optimizer, a drawing and Value
ops are real types, never Any (engine.pyi, py.typed, and the annotations in nn, optim, viz)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import micrograd_cy

USER_SCRIPT = '''
from micrograd_cy import Value
from micrograd_cy.engine import SGD as EngineSGD
from micrograd_cy.nn import MLP
from micrograd_cy.optim import SGD, Adam, LinearLR
from micrograd_cy.viz import draw_dot

model = MLP(2, [4, 1])
out = model([Value(1.0), 2.0])
params = model.parameters()
state = model.state_dict()
opt = SGD(params, lr=0.1)
assert isinstance(out, Value)
loss = (out - 1.0) ** 2 + 0.5 * out.relu() / (1 + out.tanh().exp())
opt.zero_grad()
loss.backward()
opt.step()
dot = draw_dot(loss)
adam = Adam(params, lr=0.01, betas=(0.85, 0.99))
schedule = LinearLR(adam, 1.0, 0.0, total_iters=10)
adam.step()
schedule.step()
adam.load_state_dict(adam.state_dict())

reveal_type(model)
reveal_type(model([1.0, 2.0]))
reveal_type(params)
reveal_type(state)
reveal_type(opt)
reveal_type(EngineSGD)
reveal_type(adam)
reveal_type(schedule.get_last_lr())
reveal_type(dot)
reveal_type(loss)
reveal_type(loss.data)
reveal_type(Value.sum(params))
'''


def mypy(tmp_path):
    """mypy --strict on the user script, as an editor runs it: on the micrograd_cy that this
    Python imports (installed, or on PYTHONPATH), whose own files it does not report on."""
    pytest.importorskip("mypy", reason="mypy is not installed (it is in the test-core extra)")
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT)
    env = dict(os.environ)
    home = Path(micrograd_cy.__file__).resolve().parents[1]
    if home.name not in ("site-packages", "dist-packages"):
        # a source folder (pip install -e .): mypy cannot follow an editable install's
        # import hook, so it is told where the package is, as an editor would be
        env["MYPYPATH"] = str(home)
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-v",
                          "--cache-dir", os.devnull, str(script)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    read = re.findall(r"Parsing (\S+) \(micrograd_cy\.nn\)", out.stderr)
    assert read == [str(Path(micrograd_cy.__file__).with_name("nn.py"))], read
    return out.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return mypy(tmp_path_factory.mktemp("types"))


def test_mypy_strict_finds_no_error_in_a_user_script(report):
    errors = [line for line in report.splitlines() if ": error:" in line]
    assert not errors, "\n".join(errors)


def test_what_the_user_script_uses_is_typed_not_any(report):
    revealed = re.findall(r'user\.py:(\d+): note: Revealed type is "(.*)"', report)
    assert len(revealed) == USER_SCRIPT.count("reveal_type("), report
    lines = USER_SCRIPT.splitlines()
    untyped = [f"{lines[int(n) - 1]}: {t}" for n, t in revealed if re.search(r"\bAny\b", t)]
    assert not untyped, "\n".join(untyped)
