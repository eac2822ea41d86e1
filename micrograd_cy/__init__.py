"""micrograd_cy: micrograd's Value, compiled with Cython."""
try:
    from micrograd_cy.engine import Value
except ModuleNotFoundError as e:
    if e.name != "micrograd_cy.engine":
        raise
    import os
    import sys
    _message = (f"micrograd_cy was imported from {os.path.dirname(__file__)}, a source folder "
                f"where the compiled engine is not built. Build it here with: pip install -e . "
                f"(or run from another folder to use the installed package)")
    if sys.argv and sys.argv[0] == "-m":  # python -m micrograd_cy: one line, no traceback
        sys.exit(f"micrograd-cy: error: {_message}")
    raise ImportError(_message) from None

__version__ = "0.1.0"
__all__ = ["Value", "install_as_micrograd"]


def install_as_micrograd(fused: bool = True) -> None:
    """Make `import micrograd` (and micrograd.engine, micrograd.nn) resolve to micrograd_cy,

    so existing micrograd scripts and notebooks run on the compiled engine unchanged.
    Call it before they import micrograd: called after, it raises RuntimeError, since the
    names already imported would keep upstream's Value and the two would nest. Calling it
    again once installed changes nothing but the setting below.

    fused=False makes nn build micrograd's own graph, a node an op, as the lecture draws it
    (nn.set_fused(False)); the default, True, builds fused nodes, with the same numbers.
    """
    import sys

    from micrograd_cy import engine, nn

    ours = {"micrograd": sys.modules[__name__], "micrograd.engine": engine, "micrograd.nn": nn}
    early = [name for name, module in ours.items()
             if sys.modules.get(name, module) is not module]
    if early:
        where = getattr(sys.modules[early[0]], "__file__", None) or "an unknown place"
        raise RuntimeError(
            f"install_as_micrograd() was called after {', '.join(early)} had been imported "
            f"(from {where}): what was imported from it keeps upstream's Value, and mixing "
            f"the two nests one Value inside another. Call micrograd_cy.install_as_micrograd() "
            f"first, before anything imports micrograd (in a notebook: restart the kernel)")
    nn.set_fused(fused)
    sys.modules.update(ours)
