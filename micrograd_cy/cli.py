"""The command line: `micrograd-cy train`, `micrograd-cy graph`, `micrograd-cy bench`.

Bad input gets one line on stderr and a non-zero exit, never a traceback.
"""
import argparse
import json
import math
import os
import sys

MODEL_FORMAT = "micrograd_cy MLP"
MODEL_VERSION = 1


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """Bad input found after parsing: reported as one line, exit 2."""


def _whole_number(low, high=None):
    def parse(text):
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


def _rate(text):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def _hidden(text):
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


def _output_path(what, formats=None):
    """A path to write: its folder exists and takes a new file there, it is not a folder,
    and (with formats) its suffix names one of them. Checked before any work is done."""
    def check(path):
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


def _existing_file(path):
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path!r} is a folder, not a model file")
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"no such file: {path!r}")
    return path


def _parser():
    from micrograd_cy.datasets import NAMES
    from micrograd_cy import __version__
    parser = _Parser(prog="micrograd-cy", description="micrograd on a compiled engine.")
    parser.add_argument("--version", action="version", version=f"micrograd-cy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="{train,graph,bench}")
    t = sub.add_parser("train", help="train an MLP and show it learn",
                       description="Train an MLP on a scikit-learn data set with a progress "
                                   "bar; the last line is a summary.")
    t.add_argument("--dataset", default="moons", choices=NAMES,
                   help="moons (micrograd's demo, the default), circles, blobs, digits")
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
    sub.add_parser("bench", help="the side-by-side benchmark (micrograd-cy bench --help)",
                   add_help=False)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":
        from micrograd_cy import bench
        return bench.main(argv[1:])
    try:
        parser = _parser()
    except ModuleNotFoundError as e:
        return _fail(f"missing {e.name}: pip install 'micrograd_cy[demo]'")
    args = parser.parse_args(argv)
    try:
        return {"train": _train, "graph": _graph}[args.command](args)
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


def _fail(message, command=None, code=1):
    print(f"micrograd-cy{' ' + command if command else ''}: error: {message}", file=sys.stderr)
    return code


def _train(args):
    import time

    from micrograd_cy import datasets, train

    start = time.perf_counter()
    if args.steps is not None and args.epochs is not None:
        raise UsageError("give --steps or --epochs, not both")
    data = datasets.load(args.dataset, args.seed)
    defaults = train.DEFAULTS[args.dataset]
    batch = args.batch_size or defaults.batch_size
    per_epoch = math.ceil(len(data.X) / (batch or len(data.X)))
    epochs = args.epochs or (defaults.epochs if args.steps is None else None)
    steps = args.steps if args.steps is not None else (
        epochs * per_epoch if epochs else defaults.steps)
    rows = min(batch or len(data.X), len(data.X))  # samples in a step's graph
    if args.load:  # checked, its memory too, before anything is built
        sizes, state = _read_model(args.load, data, args.hidden, rows)
    else:
        outputs = 1 if data.classes == 2 else data.classes
        sizes, state = [data.features, *(args.hidden or defaults.hidden), outputs], None
        _check_fits(sizes, rows)
    model = train.make_model(data, sizes[1:-1], args.seed)
    if state is not None:
        _load_state(args.load, model, state)
    bar = _progress(steps, args.dataset, args.quiet or steps == 0)

    def on_step(k, loss, accuracy):
        bar.set_postfix_str(f"loss {loss:.4f}, accuracy {100 * accuracy:.1f}%", refresh=False)
        bar.update(1)

    try:
        result = train.train(data, model, steps, batch, args.lr or defaults.lr, args.seed, on_step)
    finally:  # an error (Ctrl-C) is then printed on a line of its own, after the bar's
        bar.close()
    if args.save:
        _save_model(args.save, data, model)
        print(f"model: {args.save}")
    if args.plot:
        from micrograd_cy import plot
        plot.save(result, data, args.plot, steps)
        print(f"plot: {args.plot}")
    held_out = ("" if result.test_accuracy is None
                else f", held-out accuracy {100 * result.test_accuracy:.1f}%")
    span = f"{steps} steps" + (f" ({epochs} epochs)" if epochs else "")
    print(f"{args.dataset}: loss {result.final_loss:.4f}, accuracy "
          f"{100 * result.final_accuracy:.1f}%{held_out} after {span}; "
          f"trained in {result.seconds:.2f} s, {time.perf_counter() - start:.1f} s in all")
    return 0


# What a model costs: a parameter is a 64-byte Value (plus Python's list slot); a step builds
# one fused node a neuron a sample, 72 bytes and 8 a child (README: "Memory").
PARAMETER_BYTES = 72
NODE_BYTES, CHILD_BYTES = 72, 8


def _available_memory():
    """Bytes the machine could give now (MemAvailable), or all of its memory, or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


# No memory holds a layer wider than this (72 TiB for its biases alone); the sums below, of
# narrower ones, stay within what a float shows.
WIDEST = 2**40


def _check_fits(sizes, batch):
    """Refuse, before building anything, a model or step graph the memory cannot hold."""
    if max(sizes) > WIDEST:
        raise UsageError(f"MLP{_brief(tuple(sizes))} has a layer of more than {WIDEST:,} "
                         f"neurons, wider than any memory holds")
    layers = list(zip(sizes, sizes[1:]))
    parameters = sum((n_in + 1) * n_out for n_in, n_out in layers)
    graph = batch * sum(n_out * (NODE_BYTES + CHILD_BYTES * (2 * n_in + 1)) for n_in, n_out in layers)
    need = parameters * PARAMETER_BYTES + graph
    have = _available_memory()
    if have is not None and need > have:
        raise UsageError(f"MLP{_brief(tuple(sizes))} has {parameters:,} parameters and builds "
                         f"{graph / 2**30:,.1f} GiB of graph a step: {need / 2**30:,.1f} GiB "
                         f"in all, more than the {have / 2**30:,.1f} GiB this machine has free")


def _progress(steps, name, quiet):
    from tqdm import tqdm
    return tqdm(total=steps, desc=name, unit="step", disable=quiet, dynamic_ncols=True)


def _save_model(path, data, model):
    from micrograd_cy.train import sizes
    document = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "dataset": data.name,
                "sizes": sizes(model), "state": model.state_dict()}
    with open(path, "w") as f:
        json.dump(document, f)


def _read_model(path, data, hidden, rows):
    """(sizes, state) of a model file written by --save, for training on data with `rows`
    samples a step. All of it is checked, the memory its MLP needs too, before anything is
    built; every message names the file and keeps to one line, however large the file."""
    try:
        with open(path) as f:
            document = json.load(f)
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, nested too deep
        raise UsageError(f"{path} is not a model written by --save ({e})") from None
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
        raise UsageError(f"{path} is not a model written by --save")
    if document.get("version") != MODEL_VERSION:
        raise UsageError(f"{path} is a model of format version {_brief(document.get('version'))}; "
                         f"this micrograd-cy reads version {MODEL_VERSION}")
    if "dataset" not in document:
        raise UsageError(f"{path} does not say which data set its model was trained on")
    if document["dataset"] != data.name:  # same inputs and outputs need not mean same meaning
        raise UsageError(f"{path} holds a model trained on {_brief(document['dataset'])}, not "
                         f"on {data.name!r}: name its data set with --dataset")
    sizes = document.get("sizes")
    if not isinstance(sizes, list) or len(sizes) < 2 or not all(map(_is_count, sizes)):
        raise UsageError(f"{path}: 'sizes' must list positive layer sizes")
    outputs = 1 if data.classes == 2 else data.classes
    if sizes[0] != data.features or sizes[-1] != outputs:
        raise UsageError(f"{path} holds a model for {_brief(sizes[0])} inputs and "
                         f"{_brief(sizes[-1])} outputs; {data.name} needs {data.features} "
                         f"and {outputs}")
    if hidden is not None and list(hidden) != sizes[1:-1]:
        raise UsageError(f"--hidden {','.join(map(str, hidden))} differs from the loaded "
                         f"model's hidden sizes {_brief(sizes[1:-1])}")
    _check_fits(sizes, rows)
    state = document.get("state")
    if not _is_state_of(state, sizes):
        raise UsageError(f"{path}: its state does not match its sizes {_brief(sizes)} "
                         f"(a state_dict() of that MLP)")
    return sizes, state


def _is_count(x):
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _is_state_of(state, sizes):
    """Whether state has the form of MLP(sizes[0], sizes[1:]).state_dict(): a shape listing
    each neuron's number of inputs, layer by layer, and a weight an input and a bias a
    neuron. Read from the file's data alone: nothing as large as the MLP is made."""
    if not isinstance(state, dict) or set(state) != {"shape", "parameters"}:
        return False
    shape, parameters = state["shape"], state["parameters"]
    layers = list(zip(sizes, sizes[1:]))
    if not isinstance(shape, list) or len(shape) != len(layers):
        return False
    for neurons, (n_in, n_out) in zip(shape, layers):
        if not isinstance(neurons, list) or len(neurons) != n_out:
            return False
        if not all(_is_count(n) and n == n_in for n in neurons):
            return False
    return (isinstance(parameters, list)
            and len(parameters) == sum((n_in + 1) * n_out for n_in, n_out in layers))


def _load_state(path, model, state):
    """Set the model's parameters from the file's state (its form already checked)."""
    try:
        model.load_state_dict(state)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{path}: {e}") from None
    except OverflowError:  # an integer JSON holds, such as 10**400
        raise UsageError(f"{path}: a parameter is too large for a float") from None


def _brief(value, limit=60):
    """repr(value), cut short: what a file holds may be megabytes, a message is one line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _graph(args):
    from micrograd_cy import viz
    dot = viz.draw_dot(viz.neuron(), rankdir=args.rankdir)
    viz.render(dot, args.out)
    print(f"graph: {args.out}")
    return 0
