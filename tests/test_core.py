"""Foundation: seeding, the alignment metric, rule sign conventions, ensemble invariance, bad input."""

import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from plasticlab import PlasticlabError, seeding
from plasticlab.metrics import hebbian_alignment, neuron_alignment
from plasticlab.networks import init_mlp
from plasticlab.rules import (
    Context,
    adam,
    chain,
    dfa,
    hebbian,
    make_rule,
    oja,
    param_noise,
    sgd,
    signal_noise,
    weight_decay,
)
from plasticlab.simulation.train_mlp import train_mlp
from plasticlab.study import Experiment, coerce, parse_value
from plasticlab.tasks import cifar10, digits, teacher_regression


# -- seeding ------------------------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 2**40), min_size=1, max_size=6, unique=True), st.integers(0, 2**62))
def test_member_draws_do_not_depend_on_the_batch(seeds, key):
    together = seeding.normal(seeds, key, (3, 4))
    for i, s in enumerate(seeds):
        alone = seeding.normal([s], key, (3, 4))
        assert torch.equal(together[i], alone[0])


def test_draws_look_standard_and_keys_differ():
    z = seeding.normal([7], 1, (200_000,))[0]
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert not torch.equal(seeding.normal([7], 1, (10,)), seeding.normal([7], 2, (10,)))
    assert not torch.equal(seeding.normal([7], 1, (10,)), seeding.normal([8], 1, (10,)))
    u = seeding.uniform([3], 0, (100_000,))
    assert u.min() > 0 and u.max() < 1
    p = seeding.permutation([1, 2], 0, 50)
    assert all(sorted(row.tolist()) == list(range(50)) for row in p)


# -- the metric (SPEC A.2) ------------------------------------------------------------------------------
def test_alignment_hand_computed():
    pre = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)  # B=2, in=2
    post = torch.tensor([[3.0], [1.0]], dtype=torch.float64)  # B=2, out=1
    H = torch.tensor([[1.5, 1.0]], dtype=torch.float64)  # (1/B) sum post pre^T
    G = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    expected = 1.5 / math.sqrt(1.5**2 + 1.0)
    assert hebbian_alignment(G, pre, post).item() == pytest.approx(expected, rel=1e-12)
    assert hebbian_alignment(H, pre, post).item() == pytest.approx(1.0)
    assert hebbian_alignment(-H, pre, post).item() == pytest.approx(-1.0)
    assert hebbian_alignment(torch.tensor([[-1.0, 1.5]], dtype=torch.float64), pre, post).item() == pytest.approx(
        0.0, abs=1e-12
    )


def test_alignment_is_of_batch_means_not_mean_of_per_sample_cosines():
    pre = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    post = torch.tensor([[1.0], [1.0]])
    G = torch.tensor([[1.0, 0.0]])
    # per-sample cosines are 1 and 0 (mean 0.5); the batch-mean cosine is 1/sqrt(2)
    assert hebbian_alignment(G, pre, post).item() == pytest.approx(1 / math.sqrt(2))


def test_alignment_nan_when_collapsed_and_broadcasts_over_ensembles():
    pre = torch.randn(3, 5, 4, dtype=torch.float64)
    post = torch.randn(3, 5, 2, dtype=torch.float64)
    G = torch.randn(3, 2, 4, dtype=torch.float64)
    G[1] = 0
    a = hebbian_alignment(G, pre, post)
    assert a.shape == (3,) and torch.isnan(a[1]) and not torch.isnan(a[[0, 2]]).any()
    assert torch.isnan(hebbian_alignment(G[0], pre[0], torch.zeros(5, 2, dtype=torch.float64)))
    rows = neuron_alignment(G, pre, post)
    assert rows.shape == (3, 2)
    with pytest.raises(ValueError):
        hebbian_alignment(G, pre, post[:, :4])


# -- sign conventions of the rules ----------------------------------------------------------------------
def _ctx(net, x, y, step=0, rule=None, state=None, seeds=None):
    seeds = torch.arange(net.ensemble_size) if seeds is None else seeds
    weights = net.weights if rule is None else rule.perturb(net.weights, state, seeds, step)
    return Context(net=net, trace=net.forward(x, weights), x=x, y=y, loss="mse", seeds=seeds, step=step)


@pytest.mark.parametrize("act", ["linear", "tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("bias", [False, True])
def test_sgd_signal_is_minus_autograd_gradient(act, bias):
    seeds = torch.arange(2)
    net = init_mlp(seeds, [4, 6, 5, 3], act, bias=bias)
    if bias:
        net = net.with_params([(W, b + 0.1) for W, b in net.params()])
    x = seeding.normal(seeds, 1, (7, 4))
    y = seeding.normal(seeds, 2, (7, 3))
    rule = chain(sgd())
    sig = rule.step(rule.init(net, seeds), _ctx(net, x, y)).signal
    params = [p.clone().requires_grad_(True) for pair in net.params() for p in pair if p is not None]
    it = iter(params)
    leaf = net.with_params([(next(it), None if b is None else next(it)) for _, b in net.params()])
    loss = 0.5 * ((leaf.forward(x).out - y) ** 2).sum(-1).mean(-1).sum()
    loss.backward()
    it = iter(params)
    for gW, gb in sig:
        assert torch.allclose(gW, -next(it).grad, atol=1e-12)  # descent direction: -grad, never +grad
        if gb is not None:
            assert torch.allclose(gb, -next(it).grad, atol=1e-12)


def test_decay_is_never_inside_the_signal():
    seeds = torch.arange(2)
    net = init_mlp(seeds, [4, 5, 3], "tanh")
    x, y = seeding.normal(seeds, 1, (6, 4)), seeding.normal(seeds, 2, (6, 3))
    plain = chain(sgd())
    decayed = chain(sgd(), weight_decay(0.3))
    a = plain.step(plain.init(net, seeds), _ctx(net, x, y))
    b = decayed.step(decayed.init(net, seeds), _ctx(net, x, y))
    for (s1, _), (s2, _), (u2, _), W in zip(a.signal, b.signal, b.updates, net.weights):
        assert torch.equal(s1, s2)
        assert torch.allclose(u2, s2 - 0.3 * W)


def test_adam_keeps_descent_sign_and_decay_decoupled():
    seeds = torch.arange(1)
    net = init_mlp(seeds, [3, 2], "linear")
    x, y = seeding.normal(seeds, 1, (5, 3)), seeding.normal(seeds, 2, (5, 2))
    rule = chain(sgd(), adam(), weight_decay(0.1))
    out = rule.step(rule.init(net, seeds), _ctx(net, x, y))
    g = chain(sgd()).step((None,), _ctx(net, x, y)).signal[0][0]
    # first Adam step is sign(g) (up to eps): same direction as the descent signal
    assert torch.allclose(out.signal[0][0], torch.sign(g), atol=1e-6)
    assert torch.allclose(out.updates[0][0], out.signal[0][0] - 0.1 * net.weights[0])


def test_hebbian_signal_has_alignment_one_and_oja_is_hebb_minus_decay():
    seeds = torch.arange(3)
    net = init_mlp(seeds, [4, 3], "linear")
    x, y = seeding.normal(seeds, 1, (9, 4)), seeding.normal(seeds, 2, (9, 3))
    ctx = _ctx(net, x, y)
    sig = chain(hebbian()).step((None,), ctx).signal[0][0]
    assert torch.allclose(
        hebbian_alignment(sig, ctx.trace.pre[0], ctx.trace.post[0]), torch.ones(3, dtype=torch.float64)
    )
    o = chain(oja()).step((None,), ctx).signal[0][0]
    post = ctx.trace.post[0]
    assert torch.allclose(o, sig - (post**2).mean(1)[:, :, None] * net.weights[0])


def test_dfa_uses_fixed_feedback_not_transposed_weights():
    seeds = torch.arange(2)
    net = init_mlp(seeds, [4, 6, 3], "tanh")
    x, y = seeding.normal(seeds, 1, (5, 4)), seeding.normal(seeds, 2, (5, 3))
    rule = chain(dfa())
    state = rule.init(net, seeds)
    ctx = _ctx(net, x, y)
    g = rule.step(state, ctx).signal
    e = ctx.trace.out - y
    B = state[0][0]
    delta = torch.bmm(e, B.transpose(1, 2)) * (1 - torch.tanh(ctx.trace.z[0]) ** 2)
    assert torch.allclose(g[0][0], -torch.bmm(delta.transpose(1, 2), x) / 5)
    sg = chain(sgd()).step((None,), ctx).signal
    assert torch.allclose(g[1][0], sg[1][0])  # the output layer learns as in SGD
    assert not torch.allclose(g[0][0], sg[0][0])


def test_param_noise_same_draw_in_both_factors_and_update_applied_to_v():
    seeds = torch.arange(2)
    net = init_mlp(seeds, [4, 1], "linear")
    x, y = seeding.normal(seeds, 1, (8, 4)), seeding.normal(seeds, 2, (8, 1))
    rule = chain(sgd(), param_noise(0.5), weight_decay(0.01))
    state = rule.init(net, seeds)
    ctx = _ctx(net, x, y, step=3, rule=rule, state=state)
    w = ctx.trace.weights[0]
    assert not torch.allclose(w, net.weights[0])  # the forward pass used v + eps
    assert torch.allclose(ctx.trace.post[0], torch.bmm(x, w.transpose(1, 2)))  # Hebbian factor sees v + eps
    out = rule.step(state, ctx)
    resid = torch.bmm(x, w.transpose(1, 2)) - y
    assert torch.allclose(out.signal[0][0], -torch.bmm(resid.transpose(1, 2), x) / 8)  # signal sees v + eps
    assert torch.allclose(out.updates[0][0], out.signal[0][0] - 0.01 * net.weights[0])  # decay acts on v
    again = _ctx(net, x, y, step=4, rule=rule, state=state).trace.weights[0]
    assert not torch.allclose(again, w)  # fresh every step


def test_signal_noise_only_changes_the_signal_by_sigma():
    seeds = torch.arange(2)
    net = init_mlp(seeds, [30, 20], "linear")
    x, y = seeding.normal(seeds, 1, (8, 30)), seeding.normal(seeds, 2, (8, 20))
    base = chain(sgd()).step((None,), _ctx(net, x, y)).signal[0][0]
    noisy = chain(sgd(), signal_noise(0.2)).step((None, None), _ctx(net, x, y)).signal[0][0]
    assert (noisy - base).std().item() == pytest.approx(0.2, rel=0.15)


def test_rule_construction_errors_are_readable():
    with pytest.raises(PlasticlabError, match="valid choices"):
        make_rule("backprop")
    with pytest.raises(PlasticlabError, match="learning signal"):
        chain(weight_decay(0.1))
    with pytest.raises(PlasticlabError, match="gamma"):
        weight_decay(-1)
    with pytest.raises(PlasticlabError, match="activation"):
        init_mlp([0], [2, 2], "softplus")


# -- ensembles, divergence --------------------------------------------------------------------------------
def _train(seeds, lr=0.05, steps=40, rule="sgd", **kw):
    data = teacher_regression(seeds, d_in=6, d_out=2, n_train=64, n_val=16)
    net = init_mlp(seeds, [6, 8, 2], "tanh")
    return train_mlp(
        net,
        make_rule(rule, gamma=1e-3, sigma=0.05),
        data,
        seeds,
        steps=steps,
        lr=lr,
        batch_size=8,
        record_every=10,
        **kw,
    )


def test_member_alone_equals_member_in_batch():
    together = _train(torch.arange(5))
    alone = _train(torch.tensor([3]))
    assert torch.allclose(together.net.weights[0][3], alone.net.weights[0][0], atol=1e-12)
    assert torch.allclose(together.alignment[:, :, 3], alone.alignment[:, :, 0], atol=1e-12, equal_nan=True)


def test_diverging_member_is_recorded_and_does_not_poison_the_rest():
    seeds = torch.arange(3)
    data = teacher_regression(seeds, d_in=6, d_out=2, n_train=64, n_val=16)
    net = init_mlp(seeds, [6, 8, 2], "linear")
    net.weights[0][1] *= 1e6  # member 1 explodes
    res = train_mlp(net, make_rule("sgd"), data, seeds, steps=60, lr=0.5, batch_size=8, record_every=5)
    assert res.diverged.tolist() == [False, True, False]
    assert 0 <= res.diverged_at[1] < 60 and torch.isnan(res.diverged_at[[0, 2]]).all()
    assert torch.isfinite(res.val_loss_final[[0, 2]]).all() and torch.isnan(res.val_loss_final[1])
    ref = init_mlp(seeds, [6, 8, 2], "linear")
    ok = train_mlp(ref, make_rule("sgd"), data, seeds, steps=60, lr=0.5, batch_size=8, record_every=5)
    assert torch.allclose(ok.net.weights[0][[0, 2]], res.net.weights[0][[0, 2]])


def test_strong_decay_collapses_to_nan_alignment():
    seeds = torch.arange(2)
    data = teacher_regression(seeds, d_in=4, d_out=1, n_train=32, n_val=8)
    net = init_mlp(seeds, [4, 4, 1], "tanh")
    res = train_mlp(net, make_rule("hebbian", gamma=5.0), data, seeds, steps=200, lr=0.1, batch_size=8)
    assert res.collapsed.all() and torch.isnan(res.alignment_late).all()


# -- tasks --------------------------------------------------------------------------------------------------
def test_teacher_regression_is_per_member_and_linear_teacher_norm():
    d = teacher_regression(
        [0, 1],
        d_in=32,
        d_out=1,
        n_train=10,
        n_val=5,
        teacher_hidden=(),
        teacher_activation="linear",
        teacher_scale=32**0.5,
    )
    assert d.x_train.shape == (2, 10, 32) and d.y_val.shape == (2, 5, 1)
    single = teacher_regression(
        [1],
        d_in=32,
        d_out=1,
        n_train=10,
        n_val=5,
        teacher_hidden=(),
        teacher_activation="linear",
        teacher_scale=32**0.5,
    )
    assert torch.allclose(d.y_train[1], single.y_train[0], rtol=1e-12, atol=1e-12)  # same to float tolerance
    with pytest.raises(PlasticlabError):
        teacher_regression([0], d_in=0)


def test_digits_and_cifar_from_a_local_file(tmp_path):
    d = digits()
    assert d.x_train.shape[-1] == 64 and d.y_train.shape[-1] == 10 and d.loss == "xent"
    rng = np.random.default_rng(0)
    for name, n in [("data_batch_1", 12), ("data_batch_2", 8), ("test_batch", 6)]:
        with open(tmp_path / name, "wb") as f:
            pickle.dump(
                {
                    b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                    b"labels": rng.integers(0, 10, n).tolist(),
                },
                f,
            )
    c = cifar10(tmp_path)
    assert c.x_train.shape == (1, 20, 3072) and c.x_val.shape == (1, 6, 3072)
    assert torch.allclose(c.y_train.sum(-1), torch.ones(1, 20))
    with pytest.raises(PlasticlabError, match="data_batch"):
        cifar10(tmp_path / "missing")


# -- experiment parameters ------------------------------------------------------------------------------
class _Toy(Experiment):
    name = "toy"
    summary = "toy"
    defaults = dict(gammas=[0.0, 1e-3], steps=100, activation="tanh", bias=False)
    choices = dict(activation=["linear", "tanh"])


def test_overrides_are_validated_and_coerced():
    t = _Toy()
    p = t.params(gammas="0,5e-4", steps="200", bias="true")
    assert p["gammas"] == [0.0, 5e-4] and p["steps"] == 200 and p["bias"] is True
    assert t.params(gammas=0.1)["gammas"] == [0.1]
    with pytest.raises(PlasticlabError, match=r"stepz.*valid choices.*steps"):
        t.params(stepz=3)
    with pytest.raises(PlasticlabError, match="steps"):
        t.params(steps="many")
    with pytest.raises(PlasticlabError, match=r"activation.*valid choices"):
        t.params(activation="relu")
    assert parse_value("[1, 2]") == [1, 2] and parse_value("tanh") == "tanh"
    assert coerce("x", "k", "linear,tanh", ["tanh"]) == ["linear", "tanh"]


def test_train_mlp_step_fn_is_pure_and_drives_train_mlp():
    from plasticlab.networks.mlp import init_mlp
    from plasticlab.rules import make_rule
    from plasticlab.simulation.train_mlp import init_fn, step_fn, train_mlp
    from plasticlab.tasks import teacher_regression

    seeds = torch.tensor([0, 1])
    data = teacher_regression(seeds, d_in=4, d_out=1, n_train=50, n_val=10)
    net = init_mlp(seeds, [4, 6, 1], "tanh")
    rule = make_rule("sgd", gamma=0.01)
    s0 = init_fn(net, rule, seeds)
    w0 = [W.clone() for W in net.weights]
    s = s0
    for _ in range(5):
        s, _info = step_fn(s, rule, data, seeds, lr=0.1, batch_size=8, check=True)
    assert all(torch.equal(a, b) for a, b in zip(s0.net.weights, w0)) and s.step == 5
    res = train_mlp(net, rule, data, seeds, steps=5, lr=0.1, batch_size=8, record_every=1)
    assert all(torch.equal(a, b) for a, b in zip(res.net.weights, s.net.weights))
