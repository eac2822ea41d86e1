"""Optimizers over Values: SGD, micrograd's update loop run in C (engine.pyx: optim.pxi).

    opt = SGD(model.parameters(), lr=0.05)
    opt.zero_grad(); loss.backward(); opt.step()

The same numbers as `for p in model.parameters(): p.data -= lr * p.grad`.
"""
from micrograd_cy.engine import SGD

__all__ = ["SGD"]
