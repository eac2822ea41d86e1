"""The report of a run: its figures (derive), the table, the targets, the notes.

Works on the JSON that `python -m benchmarks --json FILE` writes, so docs/speed.md's table
comes from a file: python -m benchmarks.report docs/speed.json --markdown docs/speed.md.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Optional

from benchmarks.configs import CONFIGS, TARGETS
from benchmarks.harness import Result

# the ratio columns: a reference configuration's key, its heading, its decimals
RATIOS = [("vs_upstream", "vs upstream", 0), ("vs_nogc", "vs no-GC", 1),
          ("vs_torch", "vs torch", 2), ("vs_jax", "vs JAX", 2)]


def derive(results: dict[str, Result]) -> dict[str, Result]:
    """Add what is computed from the medians: each configuration's ratios against its
    kind's references, ns a node forward and backward, and the probes' ratio."""
    for r in results.values():
        for key, _, _ in RATIOS:
            ref = next((results[c.name] for c in CONFIGS.values() if c.reference == key
                        and c.kind == r["kind"] and c.name in results), None)
            r[key] = ref["ms_per_step"] / r["ms_per_step"] if ref else None
        nodes = r.get("nodes")
        r["fwd_ns_per_node"] = r["fwd_ms"] / nodes * 1e6 if nodes else None
        r["bwd_ns_per_node"] = r["bwd_ms"] / nodes * 1e6 if nodes else None
        if r["kind"] == "probe":  # its step against the same work undisturbed
            r["ratio"] = r["ms_per_step"] / r.get("alone_ms", r.get("quiet_ms", math.nan))
    return results


def table(results: dict[str, Result]) -> str:
    """The table of every configuration but the probes, as markdown."""
    head = (f"| {'configuration':44} | {'step ms':>9} | {'rounds ms':>17} | "
            + "".join(f"{title:>{max(len(title), 6)}} | " for _, title, _ in RATIOS)
            + f"{'fwd ns/node':>11} | {'bwd ns/node':>11} | {'B/node':>6} | {'nodes':>6} |")
    widths = [len(c) for c in head.split("|")[1:-1]]
    lines = [head, "|" + "|".join("-" * w for w in widths) + "|"]
    for r in results.values():
        if r["kind"] == "probe":
            continue
        ratios = [_figure(r[key], f".{d}f", "x") for key, _, d in RATIOS]
        if r.get("nodes"):
            per_node = [f"{r['fwd_ns_per_node']:.1f}", f"{r['bwd_ns_per_node']:.1f}",
                        f"{r['bytes_per_node']:.0f}", str(r["nodes"])]
        else:  # no graph
            per_node = ["-"] * 4
        spread = f"{min(r['rounds']):.3f}-{max(r['rounds']):.3f}"
        cells = [f"{r['description']:44}", f"{r['ms_per_step']:.3f}", spread, *ratios, *per_node]
        lines.append("| " + " | ".join(c.rjust(w - 2) if i else c
                                       for i, (c, w) in enumerate(zip(cells, widths))) + " |")
    return "\n".join(lines)


def _figure(value: Optional[float], spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


# a kind whose losses are another kind's: the grid's one loss is the demo's first
LOSSES_OF = {"grid": "moons"}


def loss_groups(results: dict[str, Result]) -> dict[str, list[tuple[bool, list[float]]]]:
    """The configurations that reported losses, (exact, losses), by the problem they were
    computed on: configurations of kinds whose losses differ are never compared."""
    groups: dict[str, list[tuple[bool, list[float]]]] = {}
    for name, r in results.items():
        if r["losses"]:
            kind: str = r["kind"]
            kind = LOSSES_OF.get(kind, kind)
            groups.setdefault(kind, []).append((CONFIGS[name].exact, r["losses"]))
    return groups


def same_losses(results: dict[str, Result], rel: float = 1e-9) -> bool:
    """Every configuration's loss at each step it ran agrees with every other's of its kind
    (the batched engines' first loss only: they sum in another order, and steps compound it)."""
    return all(_agree(runs, rel) for runs in loss_groups(results).values())


def _agree(runs: list[tuple[bool, list[float]]], rel: float) -> bool:
    for exact, losses in runs[1:]:
        n = min(len(losses), len(runs[0][1])) if exact and runs[0][0] else 1
        if not all(math.isclose(a, b, rel_tol=rel) for a, b in zip(losses[:n], runs[0][1][:n])):
            return False
    return True


def targets(results: dict[str, Result]) -> list[tuple[str, float, bool]]:
    """[(what, measured, met)] for every target whose configuration ran."""
    out = []
    for name, figure, op, bound, what in TARGETS:
        value = results.get(name, {}).get(figure)
        if value is None or math.isnan(value):
            continue
        out.append((what, value, value >= bound if op == ">=" else value <= bound))
    return out


def notes(results: dict[str, Result]) -> list[str]:
    """What the table does not show: rows a second, the floor, the probes."""
    lines = []
    for name in ("evaluate", "evaluate-torch"):
        if name in results:
            r = results[name]
            vs = r["vs_torch"]
            lines.append(f"{r['description']}: {r['rows'] / r['ms_per_step'] * 1e3:,.0f} rows/s"
                         + (f" ({vs:.2f}x PyTorch no_grad)" if vs is not None else ""))
    for kind, runs in loss_groups(results).items():
        agree = "every configuration gives the same loss at every step" \
            if _agree(runs, 1e-9) else "DIFFER"
        which = "" if kind == "moons" else f" ({kind})"
        lines.append(f"losses{which}: {agree} (relative 1e-9; first step {runs[0][1][0]:.12f})")
    if "floats" in results:
        f = results["floats"]
        ratios = [f"{f[k]:.{d}f}x {name}" for k, d, name in
                  [("vs_upstream", 0, "upstream as shipped"), ("vs_nogc", 1, "upstream with GC off")]
                  if f[k] is not None]
        lines.append(f"floor: upstream nn.py's forward on plain floats takes {f['ms_per_step']:.2f} ms"
                     f"{' (' + ', '.join(ratios) + ')' if ratios else ''}: no engine driven by "
                     f"upstream's nn.py can build its graph faster")
    if "crowd" in results:
        c = results["crowd"]
        lines.append(f"small backward (4 nodes reaching an old one): {c['alone_ms'] * 1e3:.2f} us "
                     f"alone, {c['ms_per_step'] * 1e3:.2f} us with {c['crowd']:,.0f} unrelated "
                     f"live nodes ({c['ratio']:.2f}x)")
    if "unrelated" in results:
        u = results["unrelated"]
        lines.append(f"an MLP call: {u['quiet_ms'] * 1e3:.2f} us quiet, {u['ms_per_step'] * 1e3:.2f} "
                     f"us with an unrelated module written before each ({u['ratio']:.2f}x; the "
                     f"write itself, {u['write_ms'] * 1e3:.2f} us, taken out)")
    for what, value, met in targets(results):
        lines.append(f"target {'met    ' if met else 'NOT met'}: {what} (measured {value:.3g})")
    return lines


BLOCK_START = "<!-- generated by python -m benchmarks.report FILE --markdown: do not edit -->"
BLOCK_END = "<!-- end of the generated block -->"


def markdown(results: dict[str, Result]) -> str:
    """The machine, the table and the notes of a run, as markdown."""
    machine = next(iter(results.values()))["machine"]
    return "\n".join([f"Machine: {machine}.", "", table(results), "",
                      *(f"- {line}" for line in notes(results))])


def write_markdown(results: dict[str, Result], path: str) -> None:
    """Replace the block between BLOCK_START and BLOCK_END in the markdown file at path."""
    with open(path) as f:
        text = f.read()
    if BLOCK_START not in text or BLOCK_END not in text:
        raise ValueError(f"{path} has no {BLOCK_START} ... {BLOCK_END} block")
    before, rest = text.split(BLOCK_START, 1)
    after = rest.split(BLOCK_END, 1)[1]
    with open(path, "w") as f:
        f.write(f"{before}{BLOCK_START}\n{markdown(results)}\n{BLOCK_END}{after}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report",
                                     description="The report of a run, from its JSON.")
    parser.add_argument("json", help="a file written by python -m benchmarks --json")
    parser.add_argument("--markdown", metavar="FILE",
                        help="write the machine, the table and the notes into FILE, in place of "
                             "its generated block (docs/speed.md)")
    args = parser.parse_args(argv)
    with open(args.json) as f:
        results = json.load(f)
    if args.markdown:
        write_markdown(results, args.markdown)
    else:
        print(table(results))
        print("\n".join(notes(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
