"""Drop-in under micrograd's names: install_as_micrograd() refuses to come too late, and
upstream's own nn.py stays reachable after it. Each probe runs in a fresh interpreter, since
what they test is the state of sys.modules."""
import subprocess
import sys
import tempfile
import textwrap


def probe(code):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=120, cwd=tempfile.gettempdir())
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr[-3000:]}"
    return out.stdout


def test_installing_after_micrograd_was_imported_raises_and_says_to_call_it_first():
    # upstream's Value already bound here would nest inside ours: Value(data=Value(...))
    for early in ["import micrograd", "from micrograd.engine import Value",
                  "from micrograd.nn import MLP"]:
        out = probe(f"""
            {early}
            import sys, micrograd_cy
            before = dict(sys.modules)
            try:
                micrograd_cy.install_as_micrograd()
            except RuntimeError as e:
                print("raised:", e)
            assert sys.modules["micrograd"] is before["micrograd"]  # nothing half installed
            assert sys.modules.get("micrograd.engine") is before.get("micrograd.engine")
        """)
        assert out.startswith("raised: install_as_micrograd() was called after micrograd"), out
        assert "Call micrograd_cy.install_as_micrograd() first" in out, out


def test_installing_first_works_and_again_changes_nothing():
    out = probe("""
        import micrograd_cy
        micrograd_cy.install_as_micrograd()
        from micrograd.engine import Value
        from micrograd.nn import MLP
        micrograd_cy.install_as_micrograd()
        import micrograd.engine
        assert Value is micrograd.engine.Value is micrograd_cy.Value
        out = MLP(2, [4, 1])([Value(1.0), 2.0])
        print(type(out).__module__, type(out.data).__name__)
    """)
    assert out.split() == ["micrograd_cy.engine", "float"]


def test_upstream_nn_is_upstreams_file_even_after_install():
    out = probe("""
        import os, micrograd_cy
        micrograd_cy.install_as_micrograd()
        from micrograd_cy import demo, engine
        nn = demo.upstream_nn(engine)
        print(os.path.relpath(nn.__file__, os.path.dirname(micrograd_cy.__file__)))
        print(nn.MLP is micrograd_cy.nn.MLP, type(nn.MLP(2, [3, 1])([1.0, 2.0])).__name__)
        import micrograd.nn
        print(micrograd.nn is micrograd_cy.nn)  # the installed names are left as they were
    """).split("\n")
    assert out[0].replace("\\\\", "/").endswith("micrograd/nn.py") and "micrograd_cy" not in out[0]
    assert out[1:3] == ["False Value", "True"]
