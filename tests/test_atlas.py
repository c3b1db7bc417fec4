"""Defining property of each Part C rule: fa uses its fixed feedback not W^T; sign_symmetry only W's signs;
exp_grad never changes a sign; bcm's threshold slides; soft_wta is competitive; three_factor follows its
modulator; flip negates presynaptic columns. Plus: every rule runs in the ensemble trainer, and a member
alone equals itself inside a batch."""

import math

import pytest
import torch

from plasticlab import seeding
from plasticlab.errors import PlasticlabError
from plasticlab.networks.mlp import MLP, Trace, init_mlp
from plasticlab.rules import (
    bcm,
    chain,
    curl,
    exp_grad,
    fa,
    flip,
    make_rule,
    rule_names,
    sgd,
    sign_symmetry,
    soft_wta,
    three_factor,
)
from plasticlab.rules.atlas import Running
from plasticlab.rules.base import Context
from plasticlab.simulation.train_mlp import train_mlp
from plasticlab.tasks import teacher_regression

torch.set_num_threads(1)


def ctx_for(net, x, y, seeds=(0,), step=0):
    return Context(net=net, trace=net.forward(x), x=x, y=y, loss="mse", seeds=torch.as_tensor(seeds), step=step)


@pytest.fixture
def small():
    seeds = [0, 1]
    net = init_mlp(seeds, [5, 4, 3, 2], "tanh")
    x = seeding.normal(seeds, 1, (16, 5))
    y = seeding.normal(seeds, 2, (16, 2))
    return net, x, y, seeds


def signal(rule, net, x, y, seeds, state=None):
    r = chain(rule)
    st = r.init(net, torch.as_tensor(seeds)) if state is None else state
    return r.step(st, ctx_for(net, x, y, seeds)), st


def test_fa_uses_fixed_feedback_not_transposed_weights(small):
    net, x, y, seeds = small
    out, st = signal(fa(), net, x, y, seeds)
    g = [u for u, _ in out.updates]
    s = [u for u, _ in chain(sgd()).step((None,), ctx_for(net, x, y, seeds)).updates]
    assert torch.allclose(g[-1], s[-1])  # the output layer learns as in backprop
    assert not torch.allclose(g[0], s[0])
    # setting the feedback to the true weights recovers backprop exactly
    same = chain(fa()).step(((None, *net.weights[1:]),), ctx_for(net, x, y, seeds)).updates
    for (a, _), b in zip(same, s):
        assert torch.allclose(a, b)
    # hidden signals do not move when the weights above change (activity held fixed), backprop's do…
    tr = net.forward(x)
    other = [net.weights[0], net.weights[1] * 3.0, net.weights[2] * -2.0]
    tr2 = Trace(tr.pre, tr.post, tr.z, tr.out, weights=other)
    c2 = Context(
        net=MLP(other, net.biases, net.activation),
        trace=tr2,
        x=x,
        y=y,
        loss="mse",
        seeds=torch.as_tensor(seeds),
        step=0,
    )
    assert torch.allclose(chain(fa()).step(st, c2).updates[0][0], g[0])
    assert not torch.allclose(chain(sgd()).step((None,), c2).updates[0][0], s[0])
    # …and FA chains layer by layer, unlike DFA: the first layer hears B_2 B_3, computed here by hand
    from plasticlab.networks.activations import activation as act

    _, dphi = act("tanh")
    d3 = tr.out - y
    d2 = torch.bmm(d3, st[0][2]) * dphi(tr.z[1])
    d1 = torch.bmm(d2, st[0][1]) * dphi(tr.z[0])
    assert torch.allclose(g[0], -torch.bmm(d1.transpose(1, 2), tr.pre[0]) / 16)


def test_sign_symmetry_uses_only_signs(small):
    net, x, y, seeds = small
    # with equal-magnitude weights above layer 0, sign(W) * mean|W| = W: sign symmetry is backprop
    eq = MLP([net.weights[0]] + [torch.sign(W) * 0.3 for W in net.weights[1:]], net.biases, net.activation)
    a = chain(sign_symmetry()).step((None,), ctx_for(eq, x, y, seeds)).updates
    b = chain(sgd()).step((None,), ctx_for(eq, x, y, seeds)).updates
    for (u, _), (v, _) in zip(a, b):
        assert torch.allclose(u, v)
    # otherwise it differs from backprop in the hidden layers
    a = chain(sign_symmetry()).step((None,), ctx_for(net, x, y, seeds)).updates
    b = chain(sgd()).step((None,), ctx_for(net, x, y, seeds)).updates
    assert not torch.allclose(a[0][0], b[0][0]) and torch.allclose(a[-1][0], b[-1][0])


def test_exp_grad_never_changes_a_sign():
    seeds = [0, 1, 2]
    data = teacher_regression(seeds, d_in=6, d_out=3, n_train=300, n_val=20, teacher_hidden=(5,))
    net = init_mlp(seeds, [6, 5, 3], "tanh", scale=0.5)
    signs = [torch.sign(W) for W in net.weights]
    lr = 0.5  # far too large for sgd here; exp_grad with max_lr = lr still keeps every sign
    res = train_mlp(net, chain(exp_grad(max_lr=lr)), data, seeds, steps=60, lr=lr, batch_size=32, record_every=20)
    for s, W in zip(signs, res.net.weights):
        assert torch.equal(torch.sign(W), s)
    # and it is the exponentiated step: W_new = W exp(lr sign(W) g)
    x, y = data.batch(torch.as_tensor(seeds), 0, 32)
    ctx = ctx_for(net, x, y, seeds)
    g = chain(sgd()).step((None,), ctx).updates[0][0]
    u = chain(exp_grad(max_lr=lr)).step((None,), ctx).updates[0][0]
    W = net.weights[0]
    assert torch.allclose(W + lr * u, W * torch.exp(lr * torch.sign(W) * g))
    assert torch.allclose(
        chain(exp_grad(max_lr=1e-6)).step((None,), ctx).updates[0][0], W.abs() * g, rtol=1e-4, atol=1e-12
    )  # first order: |W| g


def test_bcm_threshold_slides(small):
    net, x, y, seeds = small
    r = chain(bcm(rate=0.5))
    out = r.step(r.init(net, torch.as_tensor(seeds)), ctx_for(net, x, y, seeds))
    th0 = out.state[0].value
    assert torch.allclose(th0[0], (net.forward(x).post[0] ** 2).mean(1))  # starts at <post^2>
    # stronger input: post^2 grows, the threshold follows (halfway per step at rate 0.5)
    out2 = r.step(out.state, ctx_for(net, 3 * x, y, seeds))
    m2 = (net.forward(3 * x).post[0] ** 2).mean(1)
    assert torch.allclose(out2.state[0].value[0], 0.5 * th0[0] + 0.5 * m2)
    assert (out2.state[0].value[0] > th0[0]).all()
    # g = <post (post - theta) pre^T>: a raised threshold turns the same activity into depression
    tr = net.forward(x)
    hi = [t * 100 for t in th0]
    g_hi = r.step((Running(1, hi),), ctx_for(net, x, y, seeds)).updates[0][0]
    th = (1 - 0.5) * hi[0] + 0.5 * (tr.post[0] ** 2).mean(1)
    phi = tr.post[0] * (tr.post[0] - th[:, None, :])
    assert torch.allclose(g_hi, torch.bmm(phi.transpose(1, 2), tr.pre[0]) / 16)


def test_soft_wta_winner_takes_the_update():
    W = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]], dtype=torch.float64)
    net = MLP([W], [None], "linear")
    x = torch.tensor([[[2.0, 0.1]]], dtype=torch.float64)  # closest to unit 0
    g = chain(soft_wta(beta=5.0)).step((None,), ctx_for(net, x, x[..., :3] * 0 + 0, [0])).updates[0][0]
    norms = g[0].norm(dim=1)
    assert norms.argmax().item() == 0 and norms[0] > 5 * norms[1]
    # unit norm rows are a fixed point of the row normalisation when x lies along the row
    x1 = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)
    g1 = chain(soft_wta()).step((None,), ctx_for(net, x1, torch.zeros(1, 1, 3, dtype=torch.float64), [0]))
    assert torch.allclose(g1.updates[0][0][0, 0], torch.zeros(2, dtype=torch.float64), atol=1e-12)


def test_three_factor_follows_its_modulator(small):
    net, x, y, seeds = small
    r = chain(three_factor())
    tr = net.forward(x)
    loss = 0.5 * ((tr.out - y) ** 2).sum(-1)
    base = torch.tensor([loss[0].mean().item(), 1e6], dtype=torch.float64)  # member 1: everything beat baseline
    out = r.step((Running(1, base),), ctx_for(net, x, y, seeds))
    m = -(loss - base[:, None])
    for l in range(3):
        want = torch.bmm((m[:, :, None] * tr.post[l]).transpose(1, 2), tr.pre[l]) / 16
        assert torch.allclose(out.updates[l][0], want)
    hebb = torch.bmm(tr.post[0].transpose(1, 2), tr.pre[0])
    assert (out.updates[0][0][1] * hebb[1]).sum() > 0  # rewarded: Hebbian
    assert torch.allclose(out.state[0].value, 0.9 * base + 0.1 * loss.mean(1))  # baseline moves after the signal


def test_flip_negates_presynaptic_columns(small):
    net, x, y, seeds = small
    ctx = ctx_for(net, x, y, seeds)
    g = chain(sgd()).step((None,), ctx).updates
    f = chain(sgd(), flip(k=[2, 0, 1])).step((None, None), ctx).updates
    for (a, _), (b, _), k in zip(g, f, [2, 0, 1]):
        assert torch.equal(b[..., :k], -a[..., :k]) and torch.equal(b[..., k:], a[..., k:])
    c = chain(curl(fraction=0.5, layers=[1])).step((None,), ctx).updates  # round(0.5 * 4) = 2 columns
    assert torch.equal(c[1][0][..., :2], -g[1][0][..., :2]) and torch.equal(c[0][0], g[0][0])
    d = chain(curl()).step((None,), ctx).updates  # default: one flipped readout neuron
    assert torch.equal(d[2][0][..., :1], -g[2][0][..., :1]) and torch.equal(d[2][0][..., 1:], g[2][0][..., 1:])
    assert torch.equal(d[0][0], g[0][0]) and torch.equal(d[1][0], g[1][0])
    with pytest.raises(PlasticlabError, match="fraction"):
        flip(fraction=1.5)
    with pytest.raises(PlasticlabError, match="exactly one"):
        flip()


def test_every_rule_trains_and_members_are_independent():
    assert {"bcm", "soft_wta", "three_factor", "fa", "sign_symmetry", "exp_grad", "curl"} <= set(rule_names())
    seeds = [4, 5]
    data = teacher_regression(seeds, d_in=4, d_out=2, n_train=100, n_val=20, teacher_hidden=(3,))
    for name in rule_names():
        rule = make_rule(name, gamma=1e-3, sigma=0.01)
        both = train_mlp(
            init_mlp(seeds, [4, 3, 2], "tanh"), rule, data, seeds, steps=6, lr=0.05, batch_size=8, record_every=3
        )
        one_data = teacher_regression(seeds[1:], d_in=4, d_out=2, n_train=100, n_val=20, teacher_hidden=(3,))
        one = train_mlp(
            init_mlp(seeds[1:], [4, 3, 2], "tanh"),
            make_rule(name, gamma=1e-3, sigma=0.01),
            one_data,
            seeds[1:],
            steps=6,
            lr=0.05,
            batch_size=8,
            record_every=3,
        )
        for W2, W1 in zip(both.net.weights, one.net.weights):
            assert torch.allclose(W2[1:], W1, atol=1e-12), name
        assert math.isfinite(both.val_loss_final[0].item()), name


def test_rule_atlas_chunk_and_report(tmp_path):
    """A tiny rule-atlas run: required columns, NaN only where marked, claims computed from the table."""

    from plasticlab.study import get, run_chunks
    from plasticlab.study.report import write_report

    exp = get("rule-atlas")
    p = exp.params(
        rules=["sgd", "hebbian", "curl"],
        seeds=[0],
        steps=40,
        n_train=200,
        n_val=50,
        d_in=4,
        hidden=4,
        d_out=2,
        analysis_batch=32,
        warm_steps=2,
        noise_draws=2,
        batch_size=16,
    )
    df = run_chunks(exp, exp.chunks(p))
    for col in ["rule", "weight_decay", "noise", "final_loss", "alignment", "nongradient_fraction", "converged"]:
        assert col in df
    assert len(df) == 3 * 4
    ok = df[df.status.isin(["converged", "not converged"])]
    assert not ok[["final_loss", "alignment", "nongradient_fraction"]].isna().any().any()
    sgd_rows = df[df.rule == "sgd"]
    assert (sgd_rows.nongradient_fraction < 1e-6).all()
    assert (df[df.rule == "curl"].nongradient_fraction_init > 0.01).all()
    write_report(exp, df, p, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "rule_atlas.png" in text and (tmp_path / "rule_atlas.png").exists()
    claims = {c.claim.split(" (")[0]: c for c in exp.claims(df, p)}
    grad = claims["gradient rules"]
    assert grad.ours == sgd_rows.nongradient_fraction.max() and grad.n == len(sgd_rows)
    assert grad.verdict == "reproduced"
    curl = claims["non-gradient rules"]
    assert curl.n == 2 and curl.verdict == "reproduced"  # curl and hebbian are in this run
    with pytest.raises(PlasticlabError, match="valid choices"):
        exp.params(rules=["sgd", "nope"])
