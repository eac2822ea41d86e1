"""The command line: `micrograd-cy train`, `micrograd-cy graph`, `micrograd-cy bench`.

Bad input gets one line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Optional, Sequence

if TYPE_CHECKING:  # numpy and scikit-learn are imported by the commands, not for --help
    from micrograd_cy.datasets import Dataset


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """Bad input found after parsing: reported as one line, exit 2."""


def _whole_number(low: int, high: Optional[int] = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value: Optional[int]
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {low}, not {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be a whole number <= {high}, not {text!r}")
        return value
    return parse


SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's seeds are 32-bit


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def _hidden(text: str) -> tuple[int, ...]:
    sizes: Optional[tuple[int, ...]]
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"takes comma-separated layer sizes like 16,16, not {text!r}")
    return sizes


# what each output's suffix may be: matplotlib's and Graphviz's common formats
PLOT_FORMATS = ("png", "svg", "pdf")
GRAPH_FORMATS = ("svg", "png", "pdf")


def _output_path(what: str, formats: Optional[Sequence[str]] = None) -> Callable[[str], str]:
    """A path to write: its folder exists and takes a new file there, it is not a folder,
    and (with formats) its suffix names one of them. Checked before any work is done."""
    def check(path: str) -> str:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise argparse.ArgumentTypeError(f"the folder {folder!r} for the {what} does not exist")
        if os.path.isdir(path):
            raise argparse.ArgumentTypeError(f"{path!r} is a folder; give a file name for the {what}")
        suffix = os.path.splitext(path)[1].lstrip(".").lower()
        if formats and suffix not in formats:
            raise argparse.ArgumentTypeError(
                f"{path!r}: the suffix sets the {what}'s format: one of "
                f"{', '.join('.' + f for f in formats)}")
        existed = os.path.exists(path)
        try:
            with open(path, "a"):
                pass
        except OSError as e:
            raise argparse.ArgumentTypeError(f"cannot write the {what} to {path!r}: "
                                             f"{e.strerror}") from None
        if not existed:
            os.remove(path)
        return path
    return check


def _existing_file(path: str) -> str:
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path!r} is a folder, not a model file")
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"no such file: {path!r}")
    return path


def _data_file(path: str) -> str:
    from micrograd_cy.datasets import NAMES
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path!r} is a folder, not a CSV file")
    if not os.path.isfile(path):
        builtin = f" (the built-in data set is --dataset {path})" if path in NAMES else ""
        raise argparse.ArgumentTypeError(f"no such file: {path!r}{builtin}")
    return path


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, like 0.2, not {text!r}")
    return value


def _parser() -> _Parser:
    from micrograd_cy.datasets import NAMES
    from micrograd_cy import __version__
    parser = _Parser(prog="micrograd-cy", description="micrograd on a compiled engine.")
    parser.add_argument("--version", action="version", version=f"micrograd-cy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="{train,graph,bench}")
    t = sub.add_parser("train", help="train an MLP and show it learn",
                       description="Train an MLP on a scikit-learn data set or a CSV file "
                                   "with a progress bar; the last line is a summary.")
    t.add_argument("--dataset", choices=NAMES,
                   help="moons (micrograd's demo, the default), circles, blobs, digits")
    t.add_argument("--data", type=_data_file, metavar="CSV",
                   help="train on a CSV file instead: a header row, numeric features, and "
                        "the classes in the --target column")
    t.add_argument("--target", metavar="COLUMN", help="the CSV column holding the classes")
    t.add_argument("--test-split", type=_fraction, metavar="F",
                   help="hold out this part of the CSV's rows (0 < F < 1), per class, and "
                        "report the accuracy on them")
    t.add_argument("--steps", type=_whole_number(0), help="SGD steps (default: 100 for the 2-D sets)")
    t.add_argument("--epochs", type=_whole_number(1), help="passes over the training set "
                                                    "(default: 10 for digits)")
    t.add_argument("--batch-size", type=_whole_number(1),
                   help="samples per step (default: all for the 2-D sets, 32 for digits)")
    t.add_argument("--lr", type=_rate, help="initial learning rate; it falls linearly to a "
                                            "tenth (default: 1.0, 0.5 for blobs and digits)")
    t.add_argument("--hidden", type=_hidden, help="hidden layer sizes (default: 16,16; 32 for digits)")
    t.add_argument("--seed", type=_whole_number(0, SEED_MAX), default=1337,
                   help="seed for data and weights (default: 1337)")
    t.add_argument("--plot", type=_output_path("plot", PLOT_FORMATS), metavar="PATH",
                   help="write a picture of the result (PNG, SVG or PDF)")
    t.add_argument("--save", type=_output_path("model"), metavar="PATH",
                   help="write the trained model as JSON")
    t.add_argument("--load", type=_existing_file, metavar="PATH",
                   help="start from a model written by --save")
    t.add_argument("--quiet", action="store_true", help="no progress bar; only the summary")
    g = sub.add_parser("graph", help="draw a small neuron's graph (needs Graphviz)",
                       description="Draw the neuron of micrograd's trace_graph notebook.")
    g.add_argument("--out", default="neuron.svg", type=_output_path("drawing", GRAPH_FORMATS),
                   metavar="PATH",
                   help="where to write it; the suffix sets the format (default: neuron.svg)")
    g.add_argument("--rankdir", default="LR", choices=["LR", "TB"], help="layout direction")
    sub.add_parser("bench", help="the side-by-side benchmark, from a clone (python -m benchmarks)",
                   add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":
        return _bench(argv[1:])
    try:
        parser = _parser()
    except ModuleNotFoundError as e:
        return _fail(f"missing {e.name}: pip install 'micrograd_cy[demo]'")
    args = parser.parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {"train": _train, "graph": _graph}
    try:
        return commands[args.command](args)
    except UsageError as e:
        parser.exit(2, f"micrograd-cy {args.command}: error: {e}\n")
    except ModuleNotFoundError as e:
        extra = "viz" if e.name == "graphviz" else "demo"
        return _fail(f"missing {e.name}: pip install 'micrograd_cy[{extra}]'", args.command)
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        return _fail(str(e), args.command)
    except MemoryError:
        return _fail("out of memory", args.command)
    except KeyboardInterrupt:
        return _fail("interrupted", args.command, 130)


def _bench(argv: list[str]) -> int:
    """python -m benchmarks (argv its arguments), in the clone this package was installed
    from in place, or the one this runs in: the benchmarks are not in the installed package."""
    import micrograd_cy
    package = os.path.dirname(os.path.dirname(os.path.abspath(micrograd_cy.__file__)))
    clones = [root for root in (package, os.getcwd())  # an editable install's, or the one here
              if os.path.isfile(os.path.join(root, "benchmarks", "__main__.py"))]
    if not clones:
        return _fail("the benchmarks live in micrograd_cy's repository, not in the installed "
                     "package: run this in a clone, or python -m benchmarks there", "bench", 2)
    root = clones[0]
    if sys.path[0] != root:
        sys.path.insert(0, root)
    from benchmarks.__main__ import main as bench
    return bench(argv, prog="micrograd-cy bench")


def _fail(message: str, command: Optional[str] = None, code: int = 1) -> int:
    print(f"micrograd-cy{' ' + command if command else ''}: error: {message}", file=sys.stderr)
    return code


def _train(args: argparse.Namespace) -> int:
    import time

    from micrograd_cy import datasets, nn, train

    start = time.perf_counter()
    _check_arguments(args)
    data: Optional[Dataset] = None
    if not (args.data and args.load):  # a CSV for a loaded model is read with its classes
        data = _csv(args) if args.data else datasets.load(args.dataset or "moons", args.seed)
    if args.load:  # checked, its memory too, before anything is built
        loaded: list[Dataset] = []

        def check(sizes: list[int], metadata: dict[str, Any]) -> None:
            found = data if data is not None else _csv(
                args, _csv_metadata(args.load, sizes, metadata, args.target))
            *_, rows = _plan(args, found)
            _check_model(args.load, sizes, metadata, found, args.hidden, rows,
                         "csv" if args.data else found.name)
            loaded.append(found)
        try:
            model = nn.load(args.load, check)
        except ValueError as e:
            raise UsageError(str(e)) from None
        data = loaded[0]
    assert data is not None
    defaults, batch, steps, epochs, rows = _plan(args, data)
    if args.plot and data.features != 2 and not len(data.X_test):
        raise UsageError(f"--plot draws a decision boundary for two features, or held-out rows' "
                         f"confusion matrix: {data.name} has {data.features} features"
                         + ("; add --test-split" if args.data else ""))
    if not args.load:
        _check_fits([data.features, *(args.hidden or defaults.hidden), data.outputs], rows)
        model = train.make_model(data, args.hidden or defaults.hidden, args.seed)
    if data.class_names is not None:
        print(_describe(data, args.load))
    bar = _progress(steps, data.name, args.quiet or steps == 0)

    def on_step(k: int, loss: float, accuracy: float) -> None:
        bar.set_postfix_str(f"loss {loss:.4f}, accuracy {100 * accuracy:.1f}%", refresh=False)
        bar.update(1)

    try:
        result = train.train(data, model, steps, batch, args.lr or defaults.lr, args.seed, on_step)
    finally:  # an error (Ctrl-C) is then printed on a line of its own, after the bar's
        bar.close()
    if args.save:
        if data.scaling is not None:
            nn.save(model, args.save, dataset="csv", csv={
                "file": data.name, "target": args.target, "features": data.feature_names,
                "classes": data.class_names, "mean": data.scaling.mean, "std": data.scaling.std})
        else:
            nn.save(model, args.save, dataset=data.name)
        print(f"model: {args.save}")
    if args.plot:
        from micrograd_cy import plot
        plot.save(result, data, args.plot, steps)
        print(f"plot: {args.plot}")
    held_out = ("" if result.test_accuracy is None
                else f", held-out accuracy {100 * result.test_accuracy:.1f}%")
    span = f"{steps} steps" + (f" ({epochs} epochs)" if epochs else "")
    print(f"{data.name}: loss {result.final_loss:.4f}, accuracy "
          f"{100 * result.final_accuracy:.1f}%{held_out} after {span}; "
          f"trained in {result.seconds:.2f} s, {time.perf_counter() - start:.1f} s in all")
    return 0


def _check_arguments(args: argparse.Namespace) -> None:
    """The options that go together, before any file is read."""
    if args.steps is not None and args.epochs is not None:
        raise UsageError("give --steps or --epochs, not both")
    if args.data and args.dataset:
        raise UsageError("give --data (a CSV file) or --dataset (a built-in set), not both")
    if args.data and not args.target:
        raise UsageError("--data needs --target, the name of the column holding the classes")
    if args.target and not args.data:
        raise UsageError("--target names a column of the CSV file given with --data")
    if args.test_split is not None and not args.data:
        raise UsageError("--test-split holds out rows of the CSV file given with --data "
                         "(digits holds out its own fifth)")


def _plan(args: argparse.Namespace, data: Dataset) -> tuple[Any, Optional[int], int,
                                                            Optional[int], int]:
    """(defaults, batch size or None for all, steps, epochs or None, samples in a step)."""
    from micrograd_cy import train
    defaults = (train.csv_defaults(data.classes) if args.data
                else train.DEFAULTS[args.dataset or "moons"])
    batch = args.batch_size or defaults.batch_size
    per_epoch = math.ceil(len(data.X) / (batch or len(data.X)))
    epochs = args.epochs or (defaults.epochs if args.steps is None else None)
    steps = args.steps if args.steps is not None else (
        epochs * per_epoch if epochs else defaults.steps)
    assert steps is not None  # every data set's defaults give steps or epochs
    return defaults, batch, steps, epochs, min(batch or len(data.X), len(data.X))


def _csv(args: argparse.Namespace, model: Optional[dict[str, Any]] = None) -> Dataset:
    """The CSV file of --data as a Dataset; for a loaded model (its csv metadata, checked),
    with the model's classes, features and standardization."""
    from micrograd_cy import datasets
    try:
        if model is None:
            return datasets.split(datasets.read_csv(args.data, args.target), args.test_split,
                                  args.seed)
        table = datasets.read_csv(args.data, args.target, model["classes"])
        if table.features != model["features"]:
            raise UsageError(f"{args.data}'s feature columns ({_names(table.features)}) are not "
                             f"those the model in {args.load} was trained on "
                             f"({_names(model['features'])})")
        return datasets.split(table, args.test_split, args.seed,
                              datasets.Scaling(model["mean"], model["std"]))
    except datasets.DataError as e:
        raise UsageError(str(e)) from None


def _csv_metadata(path: str, sizes: list[int], metadata: dict[str, Any],
                  target: str) -> dict[str, Any]:
    """The csv record of a model file trained on a CSV file, checked against its sizes."""
    from micrograd_cy.nn import _brief
    if "dataset" not in metadata:
        raise UsageError(f"{path} does not say which data set its model was trained on")
    if metadata["dataset"] != "csv":
        raise UsageError(f"{path} holds a model trained on {_brief(metadata['dataset'])}, not "
                         f"on a CSV file: name its data set with --dataset")
    record = metadata.get("csv")
    if not (isinstance(record, dict) and isinstance(record.get("target"), str)
            and _strings(record.get("features"), sizes[0])
            and _strings(record.get("classes"), 2 if sizes[-1] == 1 else sizes[-1])
            and sizes[-1] != 2 and len(set(record["classes"])) == len(record["classes"])
            and _numbers(record.get("mean"), sizes[0]) and _numbers(record.get("std"), sizes[0])
            and all(s > 0 for s in record["std"])):
        raise UsageError(f"{path}: its record of the CSV file it was trained on (target, "
                         f"features, classes, mean, std) is missing or does not fit its sizes")
    if record["target"] != target:
        raise UsageError(f"{path} holds a model trained to predict {_brief(record['target'])}, "
                         f"not {target!r}")
    return record


def _strings(value: object, n: int) -> bool:
    return isinstance(value, list) and len(value) == n and all(isinstance(x, str) for x in value)


def _numbers(value: object, n: int) -> bool:
    return isinstance(value, list) and len(value) == n and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
        for x in value)


def _names(names: Sequence[str], most: int = 8) -> str:
    shown = ", ".join(map(repr, names[:most]))
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _describe(data: Dataset, model: Optional[str]) -> str:
    """A CSV data set in a line: its rows, its standardization and its classes (a loaded
    model's, from the file `model`)."""
    assert data.class_names is not None and data.scaling is not None
    assert data.feature_names is not None
    held = f", {len(data.X_test)} held out" if len(data.X_test) else ""
    constant = [data.feature_names[j] for j in data.scaling.constant]
    scaled = f"{data.features} features standardized " + (
        f"as {model} says (the mean and std of the rows it was trained on)" if model else
        "(mean 0, std 1 on the training rows"
        + (f"; constant there, so 0: {_names(constant)}" if constant else "") + ")")
    if data.classes == 2:
        classes = (f"classes {data.class_names[0]!r} (-1) and {data.class_names[1]!r} (+1), "
                   f"SVM loss")
    else:
        classes = f"{data.classes} classes {_names(data.class_names, 10)}, cross-entropy"
    return f"{data.name}: {len(data.X)} rows to train on{held}; {scaled}; {classes}"


def _check_fits(sizes: Sequence[int], rows: int) -> None:
    """Refuse, before building anything, a model or step graph the memory cannot hold."""
    from micrograd_cy import nn, train
    try:
        need = train.memory_needed(sizes, rows)
    except ValueError as e:  # a layer wider than any memory
        raise UsageError(str(e)) from None
    model = nn.memory_needed(sizes)
    have = nn.available_memory()
    if have is not None and need > have:
        parameters = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes, sizes[1:]))
        raise UsageError(f"MLP{nn._brief(tuple(sizes))} has {parameters:,} parameters and builds "
                         f"{(need - model) / 2**30:,.1f} GiB of graph a step: "
                         f"{need / 2**30:,.1f} GiB in all, more than the "
                         f"{have / 2**30:,.1f} GiB this machine has free")


def _check_model(path: str, sizes: list[int], metadata: dict[str, Any], data: Dataset,
                 hidden: Optional[Sequence[int]], rows: int, dataset: str) -> None:
    """What --load needs of a model file beyond its own checks (nn.load): trained on this
    data set (its name, or "csv"), its inputs and outputs, --hidden if given, and a step's
    memory."""
    from micrograd_cy.nn import _brief
    if "dataset" not in metadata:
        raise UsageError(f"{path} does not say which data set its model was trained on")
    if metadata["dataset"] == "csv" and dataset != "csv":
        raise UsageError(f"{path} holds a model trained on a CSV file: give one with --data "
                         f"and --target")
    if metadata["dataset"] != dataset:  # same inputs and outputs need not mean same meaning
        raise UsageError(f"{path} holds a model trained on {_brief(metadata['dataset'])}, not "
                         f"on {data.name!r}: name its data set with --dataset")
    if sizes[0] != data.features or sizes[-1] != data.outputs:
        raise UsageError(f"{path} holds a model for {_brief(sizes[0])} inputs and "
                         f"{_brief(sizes[-1])} outputs; {data.name} needs {data.features} "
                         f"and {data.outputs}")
    if hidden is not None and list(hidden) != sizes[1:-1]:
        raise UsageError(f"--hidden {','.join(map(str, hidden))} differs from the loaded "
                         f"model's hidden sizes {_brief(sizes[1:-1])}")
    _check_fits(sizes, rows)


def _progress(steps: int, name: str, quiet: bool) -> Any:
    from tqdm import tqdm
    return tqdm(total=steps, desc=name, unit="step", disable=quiet, dynamic_ncols=True)


def _graph(args: argparse.Namespace) -> int:
    from micrograd_cy import viz
    dot = viz.draw_dot(viz.neuron(), rankdir=args.rankdir)
    viz.render(dot, args.out)
    print(f"graph: {args.out}")
    return 0
