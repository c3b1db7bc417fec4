"""The curl-descent engine takes its rule from plasticlab.rules: column flips as a per-member piece (sign on
the presynaptic index), the paper's labels as rules, the fused step equal to the pieces it stands for, and
any registered rule (one from user code too) running in the engine."""

import numpy as np
import pytest
import torch

from plasticlab import seeding
from plasticlab.errors import PlasticlabError
from plasticlab.networks.mlp import MLP, init_mlp
from plasticlab.rules import Context, chain, dfa, flip_columns, per_member, rule_names, sgd
from plasticlab.rules.signals import SGD
from plasticlab.simulation.curl import CurlConfig, initial_state, simulate

torch.set_num_threads(1)
D = torch.float64


def small_cfg(**kw):
    base = dict(M=6, N=4, activation="tanh", P=20, B=5, epochs=6, points_per_decade=4, n_test=7)
    return CurlConfig(**{**base, **kw})


def _ctx(net: MLP, seeds):
    x, y = seeding.normal(seeds, 1, (5, net.widths[0])), seeding.normal(seeds, 2, (5, net.widths[-1]))
    return Context(net=net, trace=net.forward(x), x=x, y=y, loss="mse", seeds=torch.as_tensor(seeds), step=0)


def test_flip_columns_negates_the_presynaptic_columns_of_each_member():
    seeds = [0, 1]
    net = init_mlp(seeds, [4, 3, 2], "tanh", bias=True)
    ctx = _ctx(net, seeds)
    rule = chain(sgd(), flip_columns([[2, 0], [1, 3]]))
    g = chain(sgd()).step(chain(sgd()).init(net, torch.tensor(seeds)), ctx).updates
    f = rule.step(rule.init(net, torch.tensor(seeds)), ctx).updates
    for l, ks in enumerate([[2, 0], [1, 3]]):
        for e, k in enumerate(ks):
            (gW, gb), (fW, fb) = g[l], f[l]
            # W is (out, in): the last index is the presynaptic neuron; its first k columns flip sign
            assert torch.equal(fW[e][:, :k], -gW[e][:, :k]) and torch.equal(fW[e][:, k:], gW[e][:, k:])
            assert torch.equal(fb[e], gb[e])  # a bias has a constant presynaptic 1: never flipped
    assert (g[0][0][0, :, :2].abs() > 0).all()  # the flipped entries were not zeros to begin with


def test_flip_columns_checks_its_per_member_values():
    net = init_mlp([0, 1], [4, 3, 2], "tanh")
    with pytest.raises(PlasticlabError, match="3 values of k for 2 members"):
        flip_columns([[1, 1, 1], 0]).init(net, torch.tensor([0, 1]))
    with pytest.raises(PlasticlabError, match="exceeds"):
        flip_columns([0, 4]).init(net, torch.tensor([0, 1]))
    with pytest.raises(PlasticlabError, match="one k per layer"):
        flip_columns(2)


@pytest.mark.parametrize("B", [20, 5])
def test_engine_update_is_the_gd_update_times_d_on_columns(B):
    """SPEC B.2 in the engine: ΔW2 = ΔW2_gd · D2 and ΔW1 = ΔW1_gd · D1 (one step, same start)."""
    cfg = small_cfg(B=B, P=B, epochs=1, norm_constraint=False)
    k1, k2 = [2, 0], [1, 3]
    W1, W2, *_ = initial_state(cfg, torch.tensor([3, 4]), torch.ones(2), D)
    gd = simulate(cfg, [3, 4], rule="gd")
    cu = simulate(cfg, [3, 4], k1=k1, k2=k2, rule="gd_flip")
    d1, d2 = flip_columns([k1, k2]).init(MLP([W1, W2], [None, None], "tanh"), torch.tensor([3, 4]))
    torch.testing.assert_close(cu.W1 - W1, (gd.W1 - W1) * d1[:, None, :], rtol=0, atol=1e-15)
    torch.testing.assert_close(cu.W2 - W2, (gd.W2 - W2) * d2[:, None, :], rtol=0, atol=1e-15)
    assert ((cu.W2 - W2)[1, 0, :3] * (gd.W2 - W2)[1, 0, :3] < 0).all()  # member 1: 3 readout inputs flipped


def test_labels_are_rules_from_the_registry():
    cfg, seeds = small_cfg(), [0, 1]
    by_label = simulate(cfg, seeds, k1=[0, 2], k2=1, rule="gd_flip")
    rule = chain(sgd(), flip_columns([[0, 2], 1]))
    by_rule = simulate(cfg, seeds, rule=rule)
    assert torch.equal(by_label.W1, by_rule.W1) and torch.equal(by_label.W2, by_rule.W2)
    assert set(by_rule.members.rule) == {repr(rule)}
    mixed = simulate(cfg, seeds, k2=1, rule=["gd", "dfa_uniform_flip"])
    chosen = simulate(
        cfg, seeds, rule=chain(per_member([sgd(), dfa(feedback="uniform")], [0, 1]), flip_columns([0, [0, 1]]))
    )
    assert torch.equal(mixed.W1, chosen.W1) and torch.equal(mixed.W2, chosen.W2)


@pytest.mark.parametrize(
    "rules",
    [["gd"], ["gd_flip"], ["dfa_uniform_flip"], ["gd", "gd_flip", "dfa_uniform", "dfa_uniform_flip"], ["sgd"]],
)
def test_the_papers_rules_take_the_fused_step(rules):
    """The committed curl results come from the fused step: a registry change that sent these rules through
    Context instead would change them by rounding (as a zero decay appended to "sgd" once nearly did)."""
    from plasticlab.simulation.curl import _members, init_fn

    cfg = small_cfg()
    p, _ = init_fn(cfg, _members(cfg, list(range(len(rules))), 1, 2, 1.0, rules, None))
    assert p.fused and p.dfa_any == any(r.startswith("dfa") for r in rules)


def test_uniform_dfa_feedback_is_the_curl_engines_draw():
    cfg = small_cfg()
    W1, W2, *_, F = initial_state(cfg, torch.tensor([5, 9]), torch.ones(2), D)
    (B,) = dfa(feedback="uniform").init(MLP([W1, W2], [None, None], "tanh"), torch.tensor([5, 9]))
    assert torch.equal(B, F)  # U(±1/√N), SPEC B.2, on the engine's historical stream


class ContextSGD(SGD):
    """sgd that the fused step does not recognise: it runs through rules.Context."""

    name = "context_sgd"


@pytest.mark.parametrize(
    "kw", [dict(B=5), dict(B=20), dict(B=20, activation="linear"), dict(B=5, norm_constraint=False)]
)
def test_context_path_equals_the_fused_step(kw):
    cfg, seeds = small_cfg(**kw), [0, 1]
    fused = simulate(cfg, seeds, k1=[0, 2], k2=1, rule="gd_flip")
    ctx = simulate(cfg, seeds, rule=chain(ContextSGD(), flip_columns([[0, 2], 1])))
    torch.testing.assert_close(ctx.W1, fused.W1, rtol=0, atol=1e-12)
    torch.testing.assert_close(ctx.W2, fused.W2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ctx.peak_train_error, fused.peak_train_error, rtol=1e-9)


def test_compile_leaves_a_context_rule_eager():
    rule = chain(ContextSGD(), flip_columns([[0, 2], 1]))
    eager = simulate(small_cfg(), [0, 1], rule=rule, compile=False)
    compiled = simulate(small_cfg(), [0, 1], rule=rule, compile=True)
    assert torch.equal(eager.W1, compiled.W1) and torch.equal(eager.W2, compiled.W2)


@pytest.mark.parametrize("B", [5, 20])
def test_a_user_registered_rule_runs_in_the_curl_engine(half_sgd, B):
    cfg = small_cfg(B=B)
    mine = simulate(cfg, [0, 1], k2=1, rule=half_sgd, eta=2 * cfg.eta)  # k1/k2 flip its columns too
    curl = simulate(cfg, [0, 1], k2=1, rule="gd_flip")
    assert list(mine.members.rule) == ["half_sgd", "half_sgd"]
    torch.testing.assert_close(mine.W1, curl.W1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mine.test_error, curl.test_error, rtol=1e-9)


@pytest.mark.parametrize("name", list(rule_names()))
def test_every_registered_rule_runs_in_the_curl_engine(name):
    from plasticlab.simulation.curl_rules import flips_columns, label_pieces

    cfg = small_cfg(epochs=3)
    k = 0 if any(flips_columns(p) for p in label_pieces(name)[0]) else 1  # a rule that flips itself takes no k
    batch = simulate(cfg, [3, 7], k2=[0, k], rule=name)
    alone = simulate(cfg, [7], k2=k, rule=name)
    assert np.isfinite(batch.test_error[:, -1]).all() or batch.diverged.any()
    torch.testing.assert_close(alone.W1[0], batch.W1[1], rtol=1e-12, atol=1e-14)


def test_a_batch_may_mix_learning_signals_only():
    with pytest.raises(PlasticlabError, match="differ only in their learning signal"):
        simulate(small_cfg(), [0, 1], rule=["adam", "sgd"])
