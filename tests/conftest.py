import pytest
import torch

from plasticlab.rules import signal, unregister

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
