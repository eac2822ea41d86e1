"""Drawing a graph of Values with graphviz, as micrograd's trace_graph.ipynb does.

Needs the graphviz Python package (pip install 'micrograd_cy[viz]') to build the drawing,
and Graphviz's `dot` program to render it to a file (apt-get install graphviz, brew
install graphviz, or https://graphviz.org/download/). Works on upstream micrograd's Values too.
"""


class GraphvizMissing(RuntimeError):
    """The graphviz Python package or the Graphviz `dot` program is not installed."""


def trace(root):
    """(nodes, edges) of root's graph; edges run from child to parent. No recursion."""
    nodes, edges, stack = set(), set(), [root]
    while stack:
        v = stack.pop()
        if v in nodes:
            continue
        nodes.add(v)
        for child in v._prev:
            edges.add((child, v))
            stack.append(child)
    return nodes, edges


def draw_dot(root, format="svg", rankdir="LR", max_nodes=2000):
    """A graphviz Digraph of root's graph: a record per Value (label, data, grad) and a
    small node per op, as in micrograd's trace_graph.ipynb."""
    if rankdir not in ("LR", "TB"):
        raise ValueError(f"rankdir must be 'LR' or 'TB', not {rankdir!r}")
    try:
        from graphviz import Digraph
    except ImportError:
        raise GraphvizMissing("drawing graphs needs the graphviz Python package: "
                              "pip install 'micrograd_cy[viz]'") from None
    nodes, edges = trace(root)
    if len(nodes) > max_nodes:
        raise ValueError(f"the graph has {len(nodes)} nodes, more than max_nodes={max_nodes} "
                         f"that a drawing can show; draw a smaller part or raise max_nodes")
    dot = Digraph(format=format, graph_attr={"rankdir": rankdir})
    for n in sorted(nodes, key=id):
        label = getattr(n, "label", "")
        fields = ([label] if label else []) + [f"data {n.data:.4f}", f"grad {n.grad:.4f}"]
        dot.node(name=str(id(n)), label="{ " + " | ".join(fields) + " }", shape="record")
        if n._op:
            dot.node(name=str(id(n)) + n._op, label=n._op)
            dot.edge(str(id(n)) + n._op, str(id(n)))
    for child, parent in sorted(edges, key=lambda e: (id(e[0]), id(e[1]))):
        dot.edge(str(id(child)), str(id(parent)) + parent._op)
    return dot


def render(dot, path):
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


def neuron():
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
