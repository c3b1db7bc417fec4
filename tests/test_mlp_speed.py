"""The MLP trainer's faster backward pass changes no result beyond rounding: phi' is taken from the forward
pass's output instead of recomputing phi (the same numbers for linear, relu and sigmoid; tanh's fused
grad * (1 - h^2) within the last bits), and the descent's scaling is done in place (the same numbers)."""

import dataclasses

import numpy as np
import pytest
import torch

from plasticlab.networks.mlp import MLP, init_mlp
from plasticlab.rules import make_rule
from plasticlab.rules.base import Context
from plasticlab.simulation.train_mlp import train_mlp
from plasticlab.tasks import teacher_regression
from plasticlab.tasks.shared import share

WIDTHS = [4, 8, 6, 3]
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}  # relative to each result's scale


def contexts(act, dtype, bias, E=3, B=7):
    """The same step's Context with the forward's trace (phi' from h) and with phi' recomputed from z."""
    torch.manual_seed(0)
    net = init_mlp(list(range(E)), WIDTHS, act, bias=bias, dtype=dtype)
    if bias:  # non-zero biases, so z differs from h_b
        net = net.with_params([(W, torch.randn(b.shape, dtype=dtype)) for W, b in net.params()])
    x, y = torch.randn(E, B, WIDTHS[0], dtype=dtype) * 3, torch.randn(E, B, WIDTHS[-1], dtype=dtype)
    trace = net.forward(x)
    assert trace.chained
    kw = dict(net=net, x=x, y=y, loss="mse", seeds=torch.arange(E), step=0)
    return Context(trace=trace, **kw), Context(trace=dataclasses.replace(trace, chained=False), **kw)


@pytest.mark.parametrize("act", ["linear", "relu", "sigmoid"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bias", [False, True])
def test_phi_prime_from_the_output_is_bit_identical(act, dtype, bias):
    new, old = contexts(act, dtype, bias)
    d = new.output_delta()
    for a, b in zip(new.backprop(d), old.backprop(d)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bias", [False, True])
def test_tanh_fused_backward_equals_the_recomputed_one_to_rounding(dtype, bias):
    new, old = contexts("tanh", dtype, bias, E=5, B=33)
    d = new.output_delta()
    eps = torch.finfo(dtype).eps
    for a, b in zip(new.backprop(d), old.backprop(d)):
        assert float((a - b).abs().max()) <= 4 * eps * float(b.abs().max())


def test_a_trace_not_chained_takes_phi_prime_from_z():
    """A trace recorded elsewhere (hooks, convolutions) need not hold phi(z) in pre: backprop must not read it."""
    _, old = contexts("tanh", torch.float64, False)
    garbled = dataclasses.replace(old.trace, pre=[p * 0 + 7 for p in old.trace.pre])
    d = old.output_delta()
    for a, b in zip(dataclasses.replace(old, trace=garbled).backprop(d), old.backprop(d)):
        assert torch.equal(a, b)


def test_descent_in_place_equals_the_out_of_place_expression():
    new, _ = contexts("tanh", torch.float32, True)
    deltas = new.backprop(new.output_delta())
    for (gW, gb), d, h in zip(new.descent(deltas), deltas, new.trace.pre):
        assert torch.equal(gW, -torch.bmm(d.transpose(1, 2), h) / h.shape[1])
        assert torch.equal(gb, -d.mean(dim=1))


SEEDS = [3, 1, 2]
GAMMAS = [0.0, 1e-3]


def run(rule, dtype, act="tanh", members=None, recompute=False, monkeypatch=None):
    """train_mlp on a γ × seed grid (γ-major, seeds fastest, as the experiments order members)."""
    m = [(g, s) for g in GAMMAS for s in SEEDS]
    m = m if members is None else [m[i] for i in members]
    seeds = [s for _, s in m]
    if recompute:  # today's deltas before this change: phi' recomputed from z
        forward = MLP.forward
        monkeypatch.setattr(MLP, "forward", lambda *a, **k: dataclasses.replace(forward(*a, **k), chained=False))
    data = teacher_regression(SEEDS, d_in=WIDTHS[0], d_out=WIDTHS[-1], n_train=40, n_val=12, dtype=dtype)
    return train_mlp(
        init_mlp(seeds, WIDTHS, act, dtype=dtype),
        make_rule(rule, gamma=np.array([g for g, _ in m])),
        share(data, [SEEDS.index(s) for s in seeds]),
        seeds,
        steps=40,
        lr=0.05,
        batch_size=5,
        record_every=9,
        average_from=20,
        late_every=2,
        neurons=True,
    )


def outputs(res):
    """Every per-member output of a TrainResult."""
    yield from res.net.weights
    yield from (res.alignment, res.val_loss, res.train_loss, res.alignment_late, res.val_loss_final)
    yield from (*res.G_mean, *res.H_mean, *res.post_sq_mean, *res.W_mean, *res.neuron_alignment)


@pytest.mark.parametrize("rule", ["sgd", "dfa", "random_nn", "adam"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_training_equals_the_recomputed_backward(rule, dtype, monkeypatch):
    new = run(rule, dtype)
    with monkeypatch.context() as mp:
        old = run(rule, dtype, recompute=True, monkeypatch=mp)
    for a, b in zip(outputs(new), outputs(old)):
        assert torch.equal(a.isnan(), b.isnan())
        scale = float(b.nan_to_num().abs().max())
        assert float((a - b).nan_to_num().abs().max()) <= TOL[dtype] * max(scale, 1e-30)


@pytest.mark.parametrize("act", ["linear", "relu"])
def test_training_is_bit_identical_where_the_arithmetic_is(act, monkeypatch):
    new = run("sgd", torch.float64, act)
    with monkeypatch.context() as mp:
        old = run("sgd", torch.float64, act, recompute=True, monkeypatch=mp)
    for a, b in zip(outputs(new), outputs(old)):
        assert torch.equal(a.nan_to_num(), b.nan_to_num())


def test_a_member_alone_equals_itself_in_the_ensemble():
    whole = run("sgd", torch.float64)
    for i in (0, 4):
        alone = run("sgd", torch.float64, members=[i])
        for a, b in zip(alone.net.weights, whole.net.weights):
            torch.testing.assert_close(a[0], b[i], rtol=1e-12, atol=0)
        torch.testing.assert_close(alone.val_loss[:, 0], whole.val_loss[:, i], rtol=1e-12, atol=0)
