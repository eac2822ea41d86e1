"""Upstream micrograd's trace_graph.ipynb, its code cells verbatim, one after another.

From github.com/karpathy/micrograd at c911406. Changed: cell 4's displayed drawing is kept as
`first`; the last cell, `dot.render('gout')`, needs Graphviz's dot program and writes a file:
instead the two drawings' sources are printed (marked below), for tests/test_notebooks.py."""

# -- cell 1
# brew install graphviz
# pip install graphviz
from graphviz import Digraph

# -- cell 2
from micrograd.engine import Value

# -- cell 3
def trace(root):
    nodes, edges = set(), set()
    def build(v):
        if v not in nodes:
            nodes.add(v)
            for child in v._prev:
                edges.add((child, v))
                build(child)
    build(root)
    return nodes, edges

def draw_dot(root, format='svg', rankdir='LR'):
    """
    format: png | svg | ...
    rankdir: TB (top to bottom graph) | LR (left to right)
    """
    assert rankdir in ['LR', 'TB']
    nodes, edges = trace(root)
    dot = Digraph(format=format, graph_attr={'rankdir': rankdir}) #, node_attr={'rankdir': 'TB'})
    
    for n in nodes:
        dot.node(name=str(id(n)), label = "{ data %.4f | grad %.4f }" % (n.data, n.grad), shape='record')
        if n._op:
            dot.node(name=str(id(n)) + n._op, label=n._op)
            dot.edge(str(id(n)) + n._op, str(id(n)))
    
    for n1, n2 in edges:
        dot.edge(str(id(n1)), str(id(n2)) + n2._op)
    
    return dot

# -- cell 4
# a very simple example
x = Value(1.0)
y = (x * 2 + 1).relu()
y.backward()
first = draw_dot(y)  # changed: the value the notebook displays, kept for the test

# -- cell 5
# a simple 2D neuron
import random
from micrograd import nn

random.seed(1337)
n = nn.Neuron(2)
x = [Value(1.0), Value(-2.0)]
y = n(x)
y.backward()

dot = draw_dot(y)
dot

# -- cell 6, replaced: dot.render('gout')
# -- added for the test: the two drawings, the first cell's value displayed as it was
import json
print(json.dumps([first.source, dot.source]))
