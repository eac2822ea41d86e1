"""Side-by-side benchmark: micrograd's moons demo step on every engine configuration.

Each configuration (configs.py, one entry each) trains MLP(2, [16, 16, 1]) on
make_moons(100, noise=0.1) from the same seed with the notebook's SVM loss and SGD, in a
child process of its own (one process tree, no shared heap or GC state). The configurations
take turns over several rounds, so a slow spell on a shared machine hits them all alike, and
the report gives medians over every round's steps (harness.py). Ratios are taken within the
run: absolute times drift, ratios hold.

    python -m benchmarks [--only NAME,...] [--rounds R] [--check] [--json FILE]

Outside the runtime package: the wheel carries micrograd_cy alone.
"""
