"""A rule written in user code is usable by name everywhere with no package edit: make_rule, hebb-table,
rule-atlas (in its gradient category, from its tag) and RuleOptimizer. Plus one contract test that runs
every registered rule and every transform (optax-style): state structure fixed at init, updates shaped
like the parameters, inputs untouched, a member alone equal to itself in a batch."""

import copy

import pytest
import torch
from torch import nn

import plasticlab
from plasticlab import seeding
from plasticlab.experiments.rules.atlas import GRADIENT_RULES
from plasticlab.networks.mlp import init_mlp
from plasticlab.rules import (
    TRANSFORMS,
    Context,
    RuleOptimizer,
    chain,
    dfa,
    hebbian,
    make_rule,
    per_member,
    rule_names,
    sgd,
)

torch.set_num_threads(1)


def test_user_rule_in_hebb_table(half_sgd, tmp_path):
    tiny = dict(seeds=[0], gammas=[0.0, 5e-3], widths=[6, 5, 5, 3], steps=40, n_train=256, n_val=20)
    df = plasticlab.run("hebb-table", out=tmp_path, rules=["sgd", half_sgd], **tiny)
    assert set(df.rule) == {"sgd", "half_sgd"}
    assert df[df.rule == "half_sgd"].alignment.notna().all()
    assert "half_sgd" in (tmp_path / "report.md").read_text()


def test_user_rule_in_rule_atlas_joins_the_gradient_category(half_sgd, tmp_path):
    assert "half_sgd" in GRADIENT_RULES  # from its tag, not from an edit of the atlas
    tiny = dict(
        seeds=[0], steps=30, n_train=100, n_val=20, d_in=4, hidden=4, d_out=2, analysis_batch=16, warm_steps=2
    )
    df = plasticlab.run("rule-atlas", out=tmp_path, rules=["sgd", half_sgd], noise_draws=2, batch_size=16, **tiny)
    rows = df[df.rule == "half_sgd"]
    assert len(rows) == 4 and (rows.nongradient_fraction < 1e-6).all()  # 0.5 × a gradient is a gradient
    assert "half_sgd" in (tmp_path / "report.md").read_text()


def test_user_rule_as_a_torch_optimizer_is_sgd_at_half_the_step(half_sgd):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    ref = copy.deepcopy(model)
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)
    for m, opt in (
        (model, RuleOptimizer(model, half_sgd, lr=0.2)),
        (ref, torch.optim.SGD(ref.parameters(), lr=0.1)),
    ):
        for _ in range(4):
            opt.zero_grad()
            nn.functional.mse_loss(m(x), y).backward()
            opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def test_rule_hyperparameters_from_the_cli_spelling():
    exp = plasticlab.experiments.get("hebb-table")
    p = exp.params(rules="sgd,dfa:scale=2.0")
    assert p["rules"] == ["sgd", "dfa:scale=2.0"] and make_rule(p["rules"][1]).parts[0].scale == 2.0
    with pytest.raises(plasticlab.PlasticlabError, match="valid choices"):
        exp.params(rules="dfa:rate=2")


# -- one contract over every registered piece -----------------------------------------------------------
def _structure(tree):
    """The shape of a state: container types and lengths, tensor shapes and dtypes, leaf types."""
    if isinstance(tree, torch.Tensor):
        return ("tensor", tuple(tree.shape), tree.dtype)
    if isinstance(tree, (list, tuple)):
        return (type(tree).__name__, tuple(_structure(t) for t in tree))
    if isinstance(tree, dict):
        return ("dict", tuple((k, _structure(v)) for k, v in sorted(tree.items())))
    return type(tree).__name__


def _run(rule, seeds, steps=3):
    net = init_mlp(seeds, [4, 3, 2], "tanh")
    x, y = seeding.normal(seeds, 1, (6, 4)), seeding.normal(seeds, 2, (6, 2))
    state = rule.init(net, torch.as_tensor(seeds))
    first = _structure(state)
    before = [W.clone() for W in net.weights]
    outs = []
    for s in range(steps):
        trace = net.forward(x, rule.perturb(net.weights, state, torch.as_tensor(seeds), s))
        ctx = Context(net=net, trace=trace, x=x, y=y, loss="mse", seeds=torch.as_tensor(seeds), step=s)
        out = rule.step(state, ctx)
        assert _structure(out.state) == first, f"{rule!r}: state changed structure at step {s}"
        state = out.state
        outs.append(out)
    assert all(torch.equal(a, b) for a, b in zip(before, net.weights)), f"{rule!r} mutated the weights"
    return net, outs


def _args(name: str, E: int) -> tuple:
    """A transform's arguments for E members (the last E of a pair, so member 1 of the pair runs alone)."""
    if name == "adam":
        return ()
    if name == "flip_columns":  # per member and per layer: members 0 and 1 flip different columns
        return ([[2, 1][-E:], [0, 3][-E:]],)
    return (0.1,)


PIECES = (
    [(name, lambda E, n=name: make_rule(n, gamma=1e-3)) for name in rule_names()]
    + [(name, lambda E, f=f, n=name: chain(sgd(), f(*_args(n, E)))) for name, f in TRANSFORMS.items()]
    + [("per_member", lambda E: chain(per_member([sgd(), dfa(), hebbian()], [2, 1][-E:])))]
)


@pytest.mark.parametrize("name,build", PIECES, ids=[n for n, _ in PIECES])
def test_every_piece_keeps_the_contract(name, build):
    net, outs = _run(build(2), [3, 7])
    for out in outs:
        for (uW, ub), (W, b) in zip(out.updates, net.params()):
            assert uW.shape == W.shape and torch.isfinite(uW).all(), name
            assert (ub is None) == (b is None)
        assert len(out.signal) == len(out.updates)
    _, alone = _run(build(1), [7])  # member 1 of the pair, run alone
    for (u2, _), (u1, _) in zip(outs[-1].updates, alone[-1].updates):
        torch.testing.assert_close(u2[1:], u1, rtol=1e-12, atol=1e-14)
