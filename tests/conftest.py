from pathlib import Path

import pytest
import torch

from plasticlab.rules import signal, unregister
from plasticlab.study import load_plugins

# The sweep layer's toy experiment is a plugin, as a user's experiment would be (not part of the package).
SWEEP_DEMO = str(Path(__file__).resolve().parents[1] / "examples" / "sweep_demo.py")

# Tests run two pytest workers on two cores: one torch thread each avoids oversubscription.
torch.set_num_threads(1)


@pytest.fixture
def half_sgd():
    """The docs/rules.md example, registered from "user code" for one test."""

    @signal("half_sgd", gradient=True)
    def half_sgd(ctx):
        g = ctx.descent(ctx.backprop(ctx.output_delta()))
        return [(0.5 * w, None if b is None else 0.5 * b) for w, b in g]

    yield "half_sgd"
    unregister("half_sgd")


@pytest.fixture
def sweep_demo():
    """The ``sweep-demo`` plugin loaded in this process; its path, for ``plugins=[...]`` / ``--plugin`` so
    that worker processes (``workers >= 2``, Dask, a CLI subprocess) import it too."""
    load_plugins([SWEEP_DEMO])
    return SWEEP_DEMO
