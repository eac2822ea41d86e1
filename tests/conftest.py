import math

import micrograd.engine
import pytest

from micrograd_cy import Value

REL = 1e-9


def close(a, b, rel=REL, abs_tol=1e-12):
    """a equals b to relative 1e-9; NaNs equal NaNs and infinities match exactly."""
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


@pytest.fixture(params=[Value, micrograd.engine.Value], ids=["micrograd_cy", "upstream"])
def ValueImpl(request):
    """The suite runs on both engines: what holds for upstream holds for ours."""
    return request.param
