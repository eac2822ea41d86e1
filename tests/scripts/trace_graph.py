"""Drawing a graph as micrograd's trace_graph notebook teaches it: a user's own trace() and
draw_dot() over `_prev`, `_op`, `data` and `grad`, with graphviz's Digraph, drawn for a small
expression and for one of micrograd.nn's neurons.

Prints the two drawings' DOT sources as one JSON list. tests/test_notebooks.py runs it on
upstream micrograd and, after micrograd_cy.install_as_micrograd(), on the compiled engine."""
import json
import random

from graphviz import Digraph

from micrograd import nn
from micrograd.engine import Value


def trace(root):
    """Every node under root, and every (child, parent) edge."""
    nodes, edges, todo = set(), set(), [root]
    while todo:
        node = todo.pop()
        if node not in nodes:
            nodes.add(node)
            edges.update((child, node) for child in node._prev)
            todo.extend(node._prev)
    return nodes, edges


def draw_dot(root):
    """A record per node (its data and grad), and an op's own small node feeding it."""
    nodes, edges = trace(root)
    dot = Digraph(format="svg", graph_attr={"rankdir": "LR"})
    for node in nodes:
        name = str(id(node))
        dot.node(name=name, label="{ data %.4f | grad %.4f }" % (node.data, node.grad),
                 shape="record")
        if node._op:
            dot.node(name=name + node._op, label=node._op)
            dot.edge(name + node._op, name)
    for child, parent in edges:
        dot.edge(str(id(child)), str(id(parent)) + parent._op)
    return dot


x = Value(1.0)
small = (x * 2 + 1).relu()
small.backward()

random.seed(1337)
neuron = nn.Neuron(2)
out = neuron([Value(1.0), Value(-2.0)])
out.backward()

print(json.dumps([draw_dot(small).source, draw_dot(out).source]))
