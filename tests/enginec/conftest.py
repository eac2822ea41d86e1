"""engine.c's tests need PyTorch (they import it at the top): marked `torch` here, and left
uncollected where it is not installed (the `-m "not torch"` sessions of noxfile.py)."""
import importlib.util
from pathlib import Path

import pytest

HERE = Path(__file__).parent
collect_ignore = [] if importlib.util.find_spec("torch") else ["test_enginec.py"]


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(item.path).parent == HERE:
            item.add_marker(pytest.mark.torch)
