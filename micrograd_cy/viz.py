"""Drawing a graph of Values with graphviz, as micrograd's trace_graph.ipynb does.

Needs the graphviz Python package (pip install 'micrograd_cy[viz]') to build the drawing,
and Graphviz's `dot` program to render it to a file (apt-get install graphviz, brew
install graphviz, or https://graphviz.org/download/). Works on upstream micrograd's Values too.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Iterable, Protocol

if TYPE_CHECKING:
    from micrograd_cy.engine import Value


class Node(Protocol):
    """What drawing reads of a node: ours, upstream micrograd's, or any Value-like."""

    @property
    def data(self) -> float: ...
    @property
    def grad(self) -> float: ...
    @property
    def _prev(self) -> Iterable[Node]: ...
    @property
    def _op(self) -> str: ...


class Drawing(Protocol):
    """What draw_dot returns, a graphviz.Digraph, as type checkers see it: graphviz ships no
    types of its own, so these are the parts of a Digraph that a drawing is used through."""

    @property
    def source(self) -> str: ...
    def node(self, name: str, label: str | None = None, **attrs: Any) -> None: ...
    def edge(self, tail_name: str, head_name: str, label: str | None = None,
             **attrs: Any) -> None: ...
    def pipe(self, format: str | None = None, *, quiet: bool = False) -> bytes: ...
    def render(self, filename: str | None = None, directory: str | None = None,
               view: bool = False, cleanup: bool = False, format: str | None = None) -> str: ...


class GraphvizMissing(RuntimeError):
    """The graphviz Python package or the Graphviz `dot` program is not installed."""


def trace(root: Node) -> tuple[set[Node], set[tuple[Node, Node]]]:
    """(nodes, edges) of root's graph; edges run from child to parent. No recursion."""
    nodes: set[Node] = set()
    edges: set[tuple[Node, Node]] = set()
    stack = [root]
    while stack:
        v = stack.pop()
        if v in nodes:
            continue
        nodes.add(v)
        for child in v._prev:
            edges.add((child, v))
            stack.append(child)
    return nodes, edges


def walk(root: Node) -> tuple[list[Node], list[tuple[Node, Node]]]:
    """(nodes, edges) of root's graph in an order that is the same each time the same graph
    is built, whatever addresses its nodes got: children before their parents, as they were
    built, root last; edges run from child to parent, each once. No recursion.

    Our Values (and microgpt's) give their children in order (`_children`), which is taken.
    Upstream's give a set (`_prev`), which iterates in the order of their addresses: they are
    taken in the order of where each stands in the graph instead (_places)."""
    children: dict[Node, list[Node]] = {}
    unordered = False
    stack = [root]
    while stack:
        v = stack.pop()
        if v not in children:
            ordered = getattr(v, "_children", None)
            unordered |= ordered is None
            children[v] = list(dict.fromkeys(v._prev if ordered is None else ordered))
            stack.extend(children[v])
    if unordered:
        place = _places(root, children)
        for kids in children.values():
            kids.sort(key=place.__getitem__)
    nodes = _children_first(root, children)
    return nodes, [(child, v) for v in nodes for child in children[v]]


def _places(root: Node, children: dict[Node, list[Node]]) -> dict[Node, bytes]:
    """A digest a node of what it shows (label, op, data, grad), what its children show, all
    the way down, and what its parents show, all the way up; sharpened, a pass up and a pass
    down at a time, until a pass tells no more nodes apart. Nodes with the same digest then
    stand alike in the graph (to the eye of this refinement, Weisfeiler-Lehman's), and which
    of them is met first changes nothing drawn but in contrived graphs."""
    order = _children_first(root, children)
    parents: dict[Node, list[Node]] = {v: [] for v in order}
    for v in order:
        for child in children[v]:
            parents[child].append(v)

    def digest(own: bytes, others: list[bytes]) -> bytes:
        return hashlib.blake2b(own + b"".join(sorted(others)), digest_size=16).digest()

    place = {v: digest(repr((getattr(v, "label", ""), v._op, float(v.data),
                             float(v.grad))).encode(), []) for v in order}
    kinds = 0
    while True:
        up: dict[Node, bytes] = {}
        for v in order:  # children first
            up[v] = digest(place[v], [up[c] for c in children[v]])
        for v in reversed(order):  # parents first
            place[v] = digest(up[v], [place[p] for p in parents[v]])
        if len(set(place.values())) == kinds:
            return place
        kinds = len(set(place.values()))


def _children_first(root: Node, children: dict[Node, list[Node]]) -> list[Node]:
    """The nodes under root, depth-first, each after its children (taken in their order)."""
    order: list[Node] = []
    seen = {root}
    stack = [(root, iter(children[root]))]
    while stack:
        v, rest = stack[-1]
        for child in rest:
            if child not in seen:
                seen.add(child)
                stack.append((child, iter(children[child])))
                break
        else:
            stack.pop()
            order.append(v)
    return order


def draw_dot(root: Node, format: str = "svg", rankdir: str = "LR",
             max_nodes: int = 2000) -> Drawing:
    """A graphviz Digraph of root's graph: a record per Value (label, data, grad) and a
    small node per op, as in micrograd's trace_graph.ipynb. Nodes are named by their place
    in walk(): the same graph, built again, gives the same source, byte for byte."""
    if rankdir not in ("LR", "TB"):
        raise ValueError(f"rankdir must be 'LR' or 'TB', not {rankdir!r}")
    try:
        from graphviz import Digraph  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise GraphvizMissing("drawing graphs needs the graphviz Python package: "
                              "pip install 'micrograd_cy[viz]'") from None
    size = len(trace(root)[0])  # counted before walk() orders it
    if size > max_nodes:
        raise ValueError(f"the graph has {size} nodes, more than max_nodes={max_nodes} "
                         f"that a drawing can show; draw a smaller part or raise max_nodes")
    order, edges = walk(root)
    name = {n: f"n{i}" for i, n in enumerate(order)}  # its op's node: name + "_op"
    dot: Drawing = Digraph(format=format, graph_attr={"rankdir": rankdir})
    for n in order:
        label = getattr(n, "label", "")
        fields = ([label] if label else []) + [f"data {n.data:.4f}", f"grad {n.grad:.4f}"]
        dot.node(name=name[n], label="{ " + " | ".join(fields) + " }", shape="record")
        if n._op:
            dot.node(name=name[n] + "_op", label=n._op)
            dot.edge(name[n] + "_op", name[n])
    for child, parent in edges:
        dot.edge(name[child], name[parent] + "_op")
    return dot


def render(dot: Drawing, path: str) -> str:
    """Render a Digraph to path; the format is the path's suffix (.svg, .png, .pdf).

    Writes path and no other file: the source goes to `dot` through a pipe (graphviz's
    render() would write, and then delete, a `.gv` file of the user's beside it)."""
    import os

    import graphviz
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    if not suffix:
        raise ValueError(f"{path!r} has no suffix to tell the format (.svg, .png, .pdf)")
    try:
        drawing = dot.pipe(format=suffix, quiet=True)
    except graphviz.ExecutableNotFound:
        raise GraphvizMissing("rendering needs Graphviz's `dot` program on the PATH: "
                              "apt-get install graphviz (or brew install graphviz)") from None
    except graphviz.CalledProcessError as e:
        said = e.stderr.decode(errors="replace").strip().splitlines() if e.stderr else []
        raise RuntimeError(f"Graphviz's `dot` failed drawing {path!r}"
                           + (f": {said[0]}" if said else "")) from None
    with open(path, "wb") as f:
        f.write(drawing)
    return path


def neuron() -> Value:
    """The neuron of micrograd's trace_graph notebook, after backward()."""
    from micrograd_cy.engine import Value
    x1 = Value(2.0, label="x1")
    x2 = Value(0.0, label="x2")
    w1 = Value(-3.0, label="w1")
    w2 = Value(1.0, label="w2")
    b = Value(6.8813735870195432, label="b")
    x1w1 = x1 * w1
    x1w1.label = "x1*w1"
    x2w2 = x2 * w2
    x2w2.label = "x2*w2"
    x1w1x2w2 = x1w1 + x2w2
    x1w1x2w2.label = "x1*w1 + x2*w2"
    n = x1w1x2w2 + b
    n.label = "n"
    o = n.tanh()
    o.label = "o"
    o.backward()
    return o
