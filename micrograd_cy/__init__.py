"""micrograd_cy: micrograd's Value, compiled with Cython."""
from micrograd_cy.engine import Value

__version__ = "0.1.0"
__all__ = ["Value", "install_as_micrograd"]


def install_as_micrograd():
    """Make `import micrograd` (and micrograd.engine, micrograd.nn) resolve to micrograd_cy,

    so existing micrograd scripts and notebooks run on the compiled engine unchanged.
    Call it before they import micrograd.
    """
    import sys

    from micrograd_cy import engine, nn

    sys.modules["micrograd"] = sys.modules[__name__]
    sys.modules["micrograd.engine"] = engine
    sys.modules["micrograd.nn"] = nn
