"""Pictures of a training run (matplotlib, written straight to a file, no window).

Two-dimensional data sets: the decision boundary over the data, as in micrograd's
demo.ipynb, beside the loss and accuracy curves. Digits: the curves beside the held-out
confusion matrix.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
from numpy.typing import NDArray

from micrograd_cy.engine import Value

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from micrograd_cy.datasets import Dataset
    from micrograd_cy.nn import MLP
    from micrograd_cy.train import Result


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def save(result: Result, dataset: Dataset, path: str, steps: int) -> None:
    """Write the picture of `result` (a train.Result on `dataset`) to path (PNG, SVG, PDF...)."""
    fig = _figure(11, 4.6)
    left, right = fig.subplots(1, 2, width_ratios=[1.15, 1])
    if dataset.features == 2:
        _decision_boundary(left, result.model, dataset)
    elif result.confusion is None or result.test_accuracy is None:
        raise ValueError(f"{dataset.name} has more than two features and no held-out split: "
                         f"there is neither a decision boundary nor a confusion matrix to draw")
    else:
        _confusion(left, result.confusion, result.test_accuracy, dataset.class_names)
    _curves(right, result, steps)
    fig.suptitle(f"micrograd_cy: {dataset.name}, MLP{tuple(result.model.sizes)}, "
                 f"{_percent(result.final_accuracy)} training accuracy"
                 + ("" if result.test_accuracy is None else
                    f", {_percent(result.test_accuracy)} held out"), fontsize=12)
    fig.savefig(path)


def _percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def grid(X: NDArray[np.float64], n: int = 160, pad: float = 0.5,
         ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The decision boundary's grid over X's two columns, pad beyond the data: xx and yy
    (n x n, as np.meshgrid) and the n*n points as rows (the benchmark evaluates them too)."""
    xs = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, n)
    ys = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, n)
    xx, yy = np.meshgrid(xs, ys)
    return xx, yy, np.c_[xx.ravel(), yy.ravel()]


def _decision_boundary(ax: Axes, model: MLP, dataset: Dataset) -> None:
    X, y = dataset.X, dataset.y
    xx, yy, points = grid(X)
    # the model's graph on leaves, built once and evaluated on every grid point in C
    inputs = [Value(0.0) for _ in range(X.shape[1])]
    scores = Value.evaluate(model(inputs), inputs, points)
    point_palette, colors = _palettes(dataset.classes)
    if dataset.classes == 2:
        zz = (scores > 0).astype(float)
        levels = np.array([-0.5, 0.5, 1.5])
        labels = (y > 0).astype(int)  # -1/+1 as class 0/1
        names = ["class -1", "class +1"]
    else:
        zz = np.argmax(scores, axis=1).astype(float)  # the first of equal scores, as max()
        levels = np.arange(dataset.classes + 1) - 0.5
        labels = y
        names = [f"class {k}" for k in range(dataset.classes)]
    if dataset.class_names is not None:  # a CSV file's
        names = [str(name) for name in dataset.class_names]
    ax.contourf(xx, yy, zz.reshape(xx.shape), levels=levels, colors=colors)
    for k, name in enumerate(names):  # one scatter a class, for the legend
        mine = labels == k
        ax.scatter(X[mine, 0], X[mine, 1], c=point_palette[k], s=28, edgecolors="black",
                   linewidths=0.6, label=name)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.85, title_fontsize=8,
              title="points: true class\nshading: predicted")
    ax.set_xlim(xx[0, 0], xx[0, -1])
    ax.set_ylim(yy[0, 0], yy[-1, 0])
    ax.set_aspect("equal")
    ax.set_title("decision boundary")
    if dataset.feature_names is None:
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    else:  # a CSV file's columns, as the model sees them
        ax.set_xlabel(f"{dataset.feature_names[0]} (standardized)")
        ax.set_ylabel(f"{dataset.feature_names[1]} (standardized)")


def _palettes(classes: int) -> tuple[list[str], list[str]]:
    """Colours for the points and, paler, for the regions of each class."""
    if classes <= 5:
        return (["#3182bd", "#e6550d", "#31a354", "#756bb1", "#de2d26"][:classes],
                ["#c6dbef", "#fdd0a2", "#c7e9c0", "#dadaeb", "#fcbba1"][:classes])
    from matplotlib import colormaps
    from matplotlib.colors import to_hex
    cmap = colormaps["tab20"]  # its colours in pairs: a strong one, then a paler one
    pairs = [(to_hex(cmap(2 * (k % 10))), to_hex(cmap(2 * (k % 10) + 1))) for k in range(classes)]
    return [p for p, _ in pairs], [q for _, q in pairs]


def _curves(ax: Axes, result: Result, steps: int) -> None:
    k = np.arange(1, len(result.loss) + 1)
    loss, accuracy = np.asarray(result.loss), 100 * np.asarray(result.accuracy)
    window = len(k) // 40 if len(k) > 200 else 1  # long runs are noisy: show a running mean too
    if window > 1:
        ax.plot(k, loss, color="#3182bd", alpha=0.25, linewidth=0.8)
        loss, accuracy = _running_mean(loss, window), _running_mean(accuracy, window)
    ax.plot(k, loss, color="#3182bd")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (log scale)", color="#3182bd")
    ax.set_xlim(1, max(steps, 2))
    ax.grid(alpha=0.3)
    acc = ax.twinx()
    acc.plot(k, accuracy, color="#e6550d")
    acc.set_ylabel("accuracy (%) on the step's batch" + (f", mean of {window}" if window > 1 else ""),
                   color="#e6550d")
    acc.set_ylim(0, 101)
    ax.set_title("training")


def _running_mean(values: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.maximum(np.arange(1, len(values) + 1) - window, 0)]) / counts


def _confusion(ax: Axes, confusion: NDArray[np.int_], accuracy: float,
               names: Optional[list[str]] = None) -> None:
    ax.imshow(confusion, cmap="Blues")
    n = len(confusion)
    for i in range(n):
        for j in range(n):
            if confusion[i, j]:
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    if names is not None:  # a CSV file's classes
        ax.set_xticklabels(names, rotation=90 if n > 3 else 0)
        ax.set_yticklabels(names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"held-out confusion matrix ({_percent(accuracy)} correct)")
