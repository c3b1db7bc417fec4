"""HebbianProbe guards: forgetting attach_optimizer()/step() warns once and stores nothing (bounded
memory); eval mode / no_grad everywhere warns; an empty to_frame() says why."""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from plasticlab.errors import PlasticlabWarning
from plasticlab.probe import HebbianProbe
from plasticlab.probe.hebbian import MAX_PENDING


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))


def train(model, steps, probe=None, *, step_probe=False, eval_mode=False, no_grad=False):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train(not eval_mode)
    x, y = torch.randn(32, 8), torch.randn(32, 4)
    for _ in range(steps):
        opt.zero_grad()
        with torch.set_grad_enabled(not no_grad):
            loss = ((model(x) - y) ** 2).mean()
        if not no_grad:
            loss.backward()
            if step_probe:
                probe.step()
            opt.step()


def caught(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fn()
    return [str(x.message) for x in w if issubclass(x.category, PlasticlabWarning)]


def pending(probe) -> int:
    return sum(len(st.pending) + (st.h_sum is not None) for st in probe.layers.values())


def test_no_optimizer_and_no_step_warns_once_and_stores_nothing():
    model = mlp()
    probe = HebbianProbe(model)
    msgs = caught(lambda: train(model, 200))
    assert len(msgs) == 1 and "no step was closed" in msgs[0] and "attach_optimizer" in msgs[0]
    assert pending(probe) == 0  # memory bounded: nothing kept however long this runs
    msgs = caught(probe.to_frame)
    assert len(msgs) == 1 and "empty" in msgs[0] and "weights changed" in msgs[0]
    assert probe.to_frame().attrs["why_empty"]


def test_attached_or_stepped_probes_still_measure_every_step():
    model = mlp()
    probe = HebbianProbe(model)
    assert caught(lambda: train(model, 5, probe, step_probe=True)) == []
    df = probe.to_frame()
    assert len(df) == 5 * 2 and df.alignment_signal.notna().all() and "why_empty" not in df.attrs


def test_pending_forwards_without_backward_are_bounded():
    model = mlp()
    probe = HebbianProbe(model)
    x = torch.randn(4, 8)
    msgs = caught(lambda: [model(x) for _ in range(MAX_PENDING + 10)])
    assert max(len(st.pending) for st in probe.layers.values()) == MAX_PENDING
    assert len(msgs) == 1 and "without a backward" in msgs[0]


def test_eval_mode_or_no_grad_everywhere_warns_and_explains_the_empty_frame():
    for mode in ("eval", "no_grad"):
        model = mlp()
        probe = HebbianProbe(model)
        model.train(mode != "eval")
        with torch.set_grad_enabled(mode != "no_grad"):
            msgs = caught(lambda m=model, pr=probe: [(m(torch.randn(4, 8)), pr.step()) for _ in range(3)])
        assert len(msgs) == 1 and "eval mode or under torch.no_grad()" in msgs[0], msgs
        msgs = caught(probe.to_frame)
        assert len(msgs) == 1 and "no measured step had a forward in training mode" in msgs[0], msgs


def test_empty_probe_says_no_forward_was_seen():
    probe = HebbianProbe(mlp())
    msgs = caught(probe.to_frame)
    assert len(msgs) == 1 and "no forward pass" in msgs[0]
