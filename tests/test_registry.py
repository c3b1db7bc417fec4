"""The rule registry: one place per rule, tags that experiments derive their lists from, make_rule as the
single builder (hyperparameters by name), and a user rule usable by name with no package edit."""

import pytest
import torch

from plasticlab import seeding
from plasticlab.errors import PlasticlabError
from plasticlab.networks.mlp import init_mlp
from plasticlab.rules import (
    Chain,
    Context,
    Decay,
    Signal,
    chain,
    get,
    make_rule,
    parse_rule,
    register,
    rule_names,
    sgd,
    signal,
    unregister,
)
from plasticlab.rules.atlas import ExpGrad


def _ctx(net, x, y, seeds):
    return Context(net=net, trace=net.forward(x), x=x, y=y, loss="mse", seeds=torch.as_tensor(seeds), step=0)


@pytest.fixture
def small():
    seeds = [0, 1]
    net = init_mlp(seeds, [5, 4, 2], "tanh")
    return net, seeding.normal(seeds, 1, (8, 5)), seeding.normal(seeds, 2, (8, 2)), seeds


def test_every_builtin_rule_is_registered_with_its_tags():
    assert list(rule_names())[:2] == ["sgd", "adam"]
    assert set(rule_names(gradient=True)) == {"sgd", "random_nn"}
    assert set(rule_names(local=False)) == {
        "sgd",
        "adam",
        "adam_l2",
        "dfa",
        "random_nn",
        "fa",
        "sign_symmetry",
        "exp_grad",
        "curl",
    }
    assert "three_factor" in rule_names(local=True, needs_targets=True)
    assert not list(rule_names(perturbs_forward=True))
    with pytest.raises(PlasticlabError, match="valid choices"):
        rule_names(smooth=True)


def test_make_rule_takes_hyperparameters_by_name_and_rejects_unknown_ones():
    r = make_rule("exp_grad", gamma=1e-3, max_lr=0.5)
    assert isinstance(r.parts[0], ExpGrad) and r.parts[0].max_lr == 0.5 and isinstance(r.parts[-1], Decay)
    assert make_rule("bcm:rate=0.2").parts[0].rate == 0.2  # the CLI's spelling
    assert make_rule("adam").name.startswith("chain(sgd, adam")  # a factory's chain is flattened
    with pytest.raises(PlasticlabError, match=r"hyperparameter for rule 'bcm' 'beta'.*valid choices: rate"):
        make_rule("bcm", beta=2.0)
    with pytest.raises(PlasticlabError, match="valid choices"):
        make_rule("backprop")
    with pytest.raises(PlasticlabError, match="name:key=value"):
        parse_rule("bcm:rate")
    assert parse_rule("dfa:scale=2:x=a") == ("dfa", {"scale": 2, "x": "a"})


def test_rule_names_are_live_and_accept_hyperparameter_spellings():
    names = rule_names()
    assert "bcm:rate=0.3" in names and "nope" not in names
    # a known rule with a bad hyperparameter answers with its own error (naming bcm's keys), not False
    with pytest.raises(PlasticlabError, match=r"hyperparameter for rule 'bcm' 'beta'; valid choices: rate"):
        "bcm:beta=1" in names  # noqa: B015
    assert "tmp_rule" not in names

    @signal("tmp_rule", gradient=False, local=True, needs_targets=False)
    def tmp_rule(ctx, scale=1.0):
        return [
            (scale * h_b.transpose(1, 2) @ h_a / h_a.shape[1], None)
            for h_a, h_b in zip(ctx.trace.pre, ctx.trace.post)
        ]

    try:
        assert "tmp_rule" in names and "tmp_rule:scale=2" in names  # the same object sees it now
        assert "tmp_rule" in rule_names(local=True) and "tmp_rule" not in rule_names(local=False)
        assert get("tmp_rule").hyperparameters() == {"scale": 1.0}
        with pytest.raises(PlasticlabError, match="already registered"):
            register("tmp_rule", sgd, gradient=True, local=False, needs_targets=True, perturbs_forward=False)
    finally:
        unregister("tmp_rule")
    assert "tmp_rule" not in names


def test_a_decorated_signal_equals_its_function(small):
    net, x, y, seeds = small

    @signal("half_sgd_t", gradient=True)
    def half_sgd(ctx, factor=0.5):
        g = ctx.descent(ctx.backprop(ctx.output_delta()))
        return [(factor * w, None if b is None else factor * b) for w, b in g]

    try:
        ctx = _ctx(net, x, y, seeds)
        full = chain(sgd()).step(((),), ctx).updates
        for name, hyper, f in (("half_sgd_t", {}, 0.5), ("half_sgd_t", {"factor": 0.25}, 0.25)):
            r = make_rule(name, **hyper)
            assert isinstance(r, Chain) and isinstance(r.parts[0], Signal)
            got = r.step(r.init(net, torch.as_tensor(seeds)), ctx).updates
            for (gw, gb), (fw, fb) in zip(got, full):
                torch.testing.assert_close(gw, f * fw, rtol=0, atol=0)
                assert (gb is None) == (fb is None)
    finally:
        unregister("half_sgd_t")


def test_per_member_decay_and_noise_equal_the_float_ones(small):
    net, x, y, seeds = small
    ctx = _ctx(net, x, y, seeds)
    a, b = make_rule("sgd", gamma=0.02, sigma=0.1), make_rule("sgd", gamma=[0.02, 0.02], sigma=[0.1, 0.1])
    sa, sb = a.init(net, ctx.seeds), b.init(net, ctx.seeds)
    for Wa, Wb in zip(a.perturb(net.weights, sa, ctx.seeds, 3), b.perturb(net.weights, sb, ctx.seeds, 3)):
        torch.testing.assert_close(Wa, Wb, rtol=0, atol=0)
    for (ua, _), (ub, _) in zip(a.step(sa, ctx).updates, b.step(sb, ctx).updates):
        torch.testing.assert_close(ua, ub, rtol=0, atol=0)
    # a member with σ = 0 inside a noisy batch sees its clean weights
    c = make_rule("sgd", sigma=[0.0, 0.3])
    Wc = c.perturb(net.weights, c.init(net, ctx.seeds), ctx.seeds, 0)
    assert torch.equal(Wc[0][0], net.weights[0][0]) and not torch.equal(Wc[0][1], net.weights[0][1])
    with pytest.raises(PlasticlabError, match="gamma"):
        make_rule("sgd", gamma=[0.1, -1.0])


def test_read_only_per_member_values_raise_no_warning():
    # a pandas column's values arrive read-only; torch.as_tensor warned on them at every rule build
    import warnings

    import numpy as np

    from plasticlab.rules.registry import _nonzero

    gamma = np.array([0.0, 1e-3])
    gamma.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _nonzero(gamma) and not _nonzero(np.zeros(2)) and not _nonzero(0.0)


def test_lr_group_comes_from_the_registry_not_from_name_lists():
    from plasticlab.rules import lr_group, pick_lr, register, rule_names
    from plasticlab.rules.registry import unregister

    assert lr_group("adam") == lr_group("adam_l2:b1=0.8") == "adaptive"
    assert lr_group("sgd") == lr_group("dfa") == "gradient"
    assert {lr_group(r) for r in rule_names(local=True)} == {"local"}  # bcm and soft_wta too, not only hebbian
    assert pick_lr("oja", gradient=0.1, local=0.01) == 0.01
    assert pick_lr("adam", gradient=0.1) == 0.1  # one lr for every rule: no group needed
    from plasticlab.rules import sgd

    register("my_local_sgd", lambda: sgd(), gradient=True, local=True, needs_targets=True, perturbs_forward=False)
    try:
        assert lr_group("my_local_sgd") == "local"  # a user's rule gets its group from its tags
    finally:
        unregister("my_local_sgd")
    with pytest.raises(PlasticlabError, match="no-such"):
        lr_group("no-such")
