"""python -m benchmarks: run the configurations side by side and report (see __init__.py)."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import NoReturn, Optional

from benchmarks import harness, report
from benchmarks.configs import CONFIGS

ROUNDS = 5  # this machine kind runs at one speed or half of it for seconds at a time


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, as micrograd-cy's
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: Optional[list[str]] = None, prog: str = "python -m benchmarks") -> int:
    parser = _Parser(prog=prog, description="micrograd's moons demo step on every engine "
                                            "configuration, side by side.")
    parser.add_argument("--only", metavar="NAME,...", default=",".join(CONFIGS),
                        help=f"comma-separated, from: {', '.join(CONFIGS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"times each configuration runs, taking turns (default {ROUNDS})")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every configuration's step count (default 1)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is not met")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the results: {configuration: {ms_per_step, rounds, ...}}")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    if not names:
        parser.error("--only names no configuration")
    if not (math.isfinite(args.scale) and args.scale > 0):
        parser.error(f"--scale must be a positive number, not {args.scale}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            parser.error(f"the folder {folder!r} for the results does not exist")
    left_out = {name: CONFIGS[name].missing() for name in names}
    left_out = {name: why for name, why in left_out.items() if why}
    configs = [CONFIGS[name] for name in names if name not in left_out]
    if not configs:
        parser.error("no configuration can run here: " + "; ".join(
            f"{name}: {why}" for name, why in left_out.items()))
    print(f"micrograd's moons demo step (MLP(2, [16, 16, 1]), 100 samples): medians over "
          f"{args.rounds} interleaved rounds")
    machine = harness.machine()
    print(f"machine: {machine}")
    results = report.derive(harness.run(configs, args.scale, args.rounds))
    print(report.table(results))
    for name, why in left_out.items():
        print(f"skipped: {CONFIGS[name].description}: {why}")
    print("\n".join(report.notes(results)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({name: {**r, "machine": machine} for name, r in results.items()}, f, indent=1)
    met = all(ok for _, _, ok in report.targets(results))
    return 1 if not report.same_losses(results) or (args.check and not met) else 0


if __name__ == "__main__":
    sys.exit(main())
