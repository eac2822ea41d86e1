"""The README and docs/*.md as a reader uses them: every `python` block runs as written, every
command in a `sh` or `console` block names programs, options, extras and files that exist,
every relative link leads to a file, and the README's speed figures are docs/speed.md's.

A block is `python` (run, each on its own, in a fresh interpreter in an empty folder), `sh`
(each line a command), `console` (the lines after `$ ` are commands, the rest their output) or
`text` (not code: layouts, diagrams). Any other block needs `<!-- not run: why -->` on the
line before it; a block with no language is an error."""
import os
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^( *)```(\S*)\n(.*?)^\1```$", re.M | re.S)
NOT_RUN = re.compile(r"<!-- not run: \S.* -->")
# what pyproject.toml declares, as the installed package's metadata carries it
PACKAGE = metadata.distribution("micrograd_cy")


def blocks():
    for page in PAGES:
        text = page.read_text()
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            code = "\n".join(l[len(m.group(1)):] for l in m.group(3).splitlines())
            yield pytest.param(m.group(2), code, bool(NOT_RUN.search(before)),
                               id=f"{page.relative_to(ROOT)}:{line}")


BLOCKS = list(blocks())


def of(kind):
    return [b for b in BLOCKS if b.values[0] in kind]


def test_every_block_says_what_it_is():
    unsaid = [f"{block.id}: {block.values[0] or 'unlabelled'}" for block in BLOCKS
              if not (block.values[0] in ("python", "sh", "console", "text")
                      or (block.values[0] and block.values[2]))]
    assert not unsaid, ("a block is python, sh, console or text, or says why it is not run "
                        "(<!-- not run: why --> on the line before); these are not:\n"
                        + "\n".join(unsaid))


@pytest.mark.parametrize("kind,code,exempt", of({"python"}))
def test_python_blocks_run_as_written(kind, code, exempt, tmp_path):
    if exempt:
        pytest.fail("a python block runs: `not run` is for blocks that are not Python")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, MPLBACKEND="Agg"))
    assert out.returncode == 0, out.stderr[-3000:]


# -- commands --------------------------------------------------------------------------------

def commands(kind, code):
    if kind == "console":
        return [line[2:] for line in code.splitlines() if line.startswith("$ ")]
    return [line for line in code.splitlines() if line.strip() and not line.startswith("#")]


def help_of(argv, cwd=None):
    """What `python <argv> --help` prints."""
    out = subprocess.run([sys.executable, *argv, "--help"], cwd=cwd or ROOT.parent,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (argv, out.stderr[-2000:])
    return out.stdout


def check_options(args, help_text, what):
    for arg in args:
        if arg.startswith("-"):
            assert arg.split("=")[0] in help_text, f"{what} has no option {arg}"


def check_micrograd_cy(args):
    scripts = {e.name: e.value for e in PACKAGE.entry_points if e.group == "console_scripts"}
    assert scripts["micrograd-cy"] == "micrograd_cy.cli:main"
    assert args, "micrograd-cy needs a command"
    if args[0].startswith("-"):
        check_options(args, help_of(["-m", "micrograd_cy"]), "micrograd-cy")
        return
    assert re.search(rf"\b{args[0]}\b", help_of(["-m", "micrograd_cy"])), \
        f"micrograd-cy has no command {args[0]!r}"
    check_options(args[1:], help_of(["-m", "micrograd_cy", args[0]]), f"micrograd-cy {args[0]}")


def check_benchmarks(args, tmp_path):
    # the clone's benchmarks/ beside the installed package (ROOT on the path would import
    # the clone's micrograd_cy folder, which a non-editable install leaves unbuilt)
    import shutil
    assert (ROOT / "benchmarks" / "__main__.py").exists(), "no benchmarks/__main__.py"
    shutil.copytree(ROOT / "benchmarks", tmp_path / "benchmarks")
    check_options(args, help_of(["-m", "benchmarks"], cwd=tmp_path), "python -m benchmarks")


def check_pip_install(args):
    extras = set(PACKAGE.metadata.get_all("Provides-Extra"))
    wanted = {re.split(r"[\[<>=~!; ]", req)[0].lower() for req in PACKAGE.requires}
    for arg in args:
        if arg in ("-e", "-q", "-U", "-v"):
            continue
        m = re.fullmatch(r"(\.|micrograd_cy)(?:\[([\w,-]+)\])?", arg)
        if m:
            for extra in filter(None, (m.group(2) or "").split(",")):
                assert extra in extras, f"pyproject.toml has no extra {extra!r}"
        else:
            name = re.split(r"[\[<>=~!;]", arg)[0].lower()
            assert name in wanted, f"pip install {arg}: not a requirement of any extra"


def check_command(command, tmp_path, markers):
    assert subprocess.run(["bash", "-n", "-c", command]).returncode == 0, command
    for part in re.split(r"&&|\|\||;|\|", command):
        words = shlex.split(part)
        program, args = Path(words[0]).name, words[1:]
        if words[0].startswith(".venv/bin/") and program.startswith("python"):
            program = "python"
        if program in ("python", "python3"):
            if args[:2] == ["-m", "venv"]:
                continue
            if args[:2] == ["-m", "micrograd_cy"]:
                check_micrograd_cy(args[2:])
            elif args[:2] == ["-m", "benchmarks"]:
                check_benchmarks(args[2:], tmp_path)
            else:
                assert args and (ROOT / args[0]).is_file(), f"{command}: no file {args[0]}"
        elif program == "micrograd-cy":
            check_micrograd_cy(args)
        elif program == "pip":
            assert args[0] == "install", command
            check_pip_install(args[1:])
        elif program == "pytest":
            for i, arg in enumerate(args):
                if arg == "-m":
                    names = set(re.findall(r"\w+", args[i + 1])) - {"not", "and", "or"}
                    assert names <= markers, f"{command}: no marker {names - markers}"
        elif program == "nox":
            assert (ROOT / "noxfile.py").exists()
        elif program in ("apt-get", "brew"):  # not run: installing system packages
            assert args[0] == "install" and set(args[1:]) <= {"graphviz", "valgrind"}, command
        else:
            pytest.fail(f"{command}: {program} is not a program these docs may name")


@pytest.mark.parametrize("kind,code,exempt", of({"sh", "console"}))
def test_commands_name_what_exists(kind, code, exempt, tmp_path, pytestconfig):
    assert not exempt, "commands are checked, not exempted"
    lines = commands(kind, code)
    assert lines, "a block of commands with none in it"
    markers = {m.split(":")[0] for m in pytestconfig.getini("markers")}
    for command in lines:
        check_command(command, tmp_path, markers)


# -- the pages as a whole ---------------------------------------------------------------------

def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def test_the_readmes_test_command_is_where_ci_reads_it():
    text = (ROOT / "README.md").read_text()
    after = text.split("<!-- test-command -->\n", 1)[1]
    assert re.match(r"```sh\n[^\n]*pytest\n```\n", after), after[:200]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if not re.match(r"[a-z]+://", target):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, missing"


def test_the_readmes_speed_figures_are_in_the_speed_tables_rows():
    text = (ROOT / "README.md").read_text()
    paragraph = text.split("<!-- speed:", 1)[1].split("\n\n", 1)[0]
    figures = re.findall(r"\d[\d,]*\.\d+", paragraph)
    assert len(figures) >= 2, paragraph
    speed = ROOT / "docs" / "speed.md"
    assert speed.exists(), "docs/speed.md, whose table the README cites, is missing"
    rows = [line for line in speed.read_text().splitlines() if line.startswith("|")]
    for figure in figures:
        assert any(re.search(rf"(?<![\d.]){re.escape(figure)}(?![\d])", row) for row in rows), (
            f"the README says {figure}, which no row of docs/speed.md's table has")
