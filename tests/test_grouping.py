"""Shared-batch grouping in the curl engine: members that share a seed advance with one wide product per
layer, and their results equal the per-member step's up to the products' summation order."""

import numpy as np
import pytest

from plasticlab.rules import chain, flip_columns, sgd
from plasticlab.simulation import curl
from plasticlab.simulation.curl import CurlConfig, group_order, simulate

RULES = ["gd", "gd_flip", "dfa_uniform", "dfa_uniform_flip"]


def cfg(**kw):
    base = dict(M=7, N=5, P=20, B=5, epochs=25, n_test=8, points_per_decade=5, dtype="float64")
    return CurlConfig(**(base | kw))


def grid_kw(seeds=(3, 1, 2)):
    """Condition-major, seed-minor members (as the experiments order them): 4 rules × 3 seeds."""
    conds = zip(RULES, [0, 3, 0, 2], [0, 1, 0, 2], [1.0, 2.0, 1.0, 0.5], [0.1, 0.1, 0.2, 0.3])
    rows = [(r, k1, k2, sc, eta, s) for r, k1, k2, sc, eta in conds for s in seeds]
    return [r[5] for r in rows], dict(
        rule=[r[0] for r in rows],
        k1=[r[1] for r in rows],
        k2=[r[2] for r in rows],
        init_scale=[r[3] for r in rows],
        eta=[r[4] for r in rows],
    )


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def close(grouped, plain, tol, same_labels=True):
    """Every per-member output of two runs agrees within ``tol`` (relative), in the same member order."""
    assert grouped.members.seed.equals(plain.members.seed)
    assert not same_labels or grouped.members.equals(plain.members)
    for f in ("W1", "W2"):
        a, b = getattr(grouped, f), getattr(plain, f)
        assert float((a - b).abs().max() / b.abs().max()) < tol, f
    assert rel(grouped.train_error, plain.train_error) < tol
    assert rel(grouped.test_error, plain.test_error) < tol
    np.testing.assert_array_equal(np.isnan(grouped.train_error), np.isnan(plain.train_error))
    np.testing.assert_array_equal(grouped.diverged, plain.diverged)


@pytest.mark.parametrize("act", ["linear", "tanh", "relu"])
@pytest.mark.parametrize("B", [5, 20])  # mini-batch (reshuffled each epoch) and full batch
def test_grouped_equals_per_member_float64(act, B):
    seeds, kw = grid_kw()
    c = cfg(activation=act, B=B, moment_match=False)
    grouped, plain = simulate(c, seeds, **kw), simulate(c, seeds, **kw, group=False)
    assert group_order(c, grouped.members)[1] == 4  # 4 members per seed: grouping was on
    close(grouped, plain, 1e-12)


def test_grouped_runs_take_the_grouped_step(monkeypatch):
    calls = []
    step = curl._group_step_tensors
    monkeypatch.setattr(curl, "_group_step_tensors", lambda *a, **k: calls.append(a[4].shape) or step(*a, **k))
    seeds, kw = grid_kw()
    c = cfg(activation="tanh", epochs=2)
    simulate(c, seeds, **kw)
    assert calls == [(3, c.B, c.M)] * (2 * c.P // c.B)  # 3 groups (seeds) per step, one batch each
    calls.clear()
    simulate(c, seeds, **kw, group=False)
    simulate(c, [0, 1, 2], rule="gd_flip", k2=1)  # one member per seed: nothing to group
    assert calls == []


def test_grouped_equals_per_member_float32():
    seeds, kw = grid_kw()
    c = cfg(activation="tanh", dtype="float32")
    close(simulate(c, seeds, **kw), simulate(c, seeds, **kw, group=False), 1e-4)


def test_member_alone_equals_member_in_a_group():
    seeds, kw = grid_kw()
    c = cfg(activation="tanh")
    grouped = simulate(c, seeds, **kw)
    for i in (0, 5, 11):
        alone = simulate(c, [seeds[i]], **{k: [v[i]] for k, v in kw.items()})
        assert float((alone.W1[0] - grouped.W1[i]).abs().max() / alone.W1.abs().max()) < 1e-12
        assert rel(grouped.test_error[i], alone.test_error[0]) < 1e-12


@pytest.mark.parametrize("outer_bmm", [True, False])
def test_grouped_forward_with_per_member_flipped_inputs(outer_bmm, monkeypatch):
    # every member of a group flips another number of inputs (as curl-hidden's α_h do)
    monkeypatch.setattr(curl, "_OUTER_BMM", 0 if outer_bmm else 1 << 40)
    c = cfg(M=100, N=100, P=10, B=5, epochs=3, activation="tanh")
    seeds, k1 = [0, 1] * 7, [k for k in (0, 10, 30, 50, 70, 90, 100) for _ in (0, 1)]
    close(simulate(c, seeds, k1=k1), simulate(c, seeds, k1=k1, group=False), 1e-12)


def test_grouped_divergence_and_history_are_per_member_in_the_given_order():
    c = cfg(activation="linear", norm_constraint=False, record_last=3, epochs=12)
    seeds = [0, 1, 0, 1]
    eta = [0.1, 0.1, 50.0, 0.1]  # member 2 blows up; its seed-mate and the others go on
    grouped, plain = simulate(c, seeds, eta=eta), simulate(c, seeds, eta=eta, group=False)
    assert list(grouped.diverged) == [False, False, True, False]
    np.testing.assert_array_equal(grouped.diverged_at, plain.diverged_at)
    close(grouped, plain, 1e-12)
    for f in ("W1", "W2"):
        assert float((grouped.history[f] - plain.history[f]).abs().max()) < 1e-12


def test_group_order_groups_only_equal_seed_counts():
    c = cfg()
    m = curl._members(c, [5, 4, 5, 4], 0, 0, 1.0, "gd_flip", None)
    order, k = group_order(c, m)
    assert k == 2 and list(order) == [1, 3, 0, 2]  # seed 4's members, then seed 5's, each in given order
    assert group_order(c, curl._members(c, [5, 4, 5], 0, 0, 1.0, "gd_flip", None)) == (None, 1)  # 2 vs 1
    assert group_order(c, curl._members(c, [0, 1, 2], 0, 0, 1.0, "gd_flip", None)) == (None, 1)  # one each
    moments = cfg(activation="linear", B=20)
    assert group_order(moments, curl._members(moments, [0, 0], 0, 0, 1.0, "gd_flip", None)) == (None, 1)
    # a rule object holds per-member values in the given order: only already seed-major members group
    assert group_order(c, m, reorder=False) == (None, 1)
    major = curl._members(c, [4, 4, 5, 5], 0, 0, 1.0, "gd_flip", None)
    assert group_order(c, major, reorder=False)[1] == 2


def test_a_given_rule_object_keeps_its_member_order(monkeypatch):
    calls = []
    step = curl._group_step_tensors
    monkeypatch.setattr(curl, "_group_step_tensors", lambda *a, **k: calls.append(1) or step(*a, **k))
    c = cfg(activation="tanh")
    seeds, k2 = [0, 1, 0, 1], [0, 0, 2, 3]  # seed-minor: not grouped, since the rule is given as an object
    rule = chain(sgd(), flip_columns([np.zeros(4, int), np.array(k2)]))
    np.testing.assert_array_equal(simulate(c, seeds, rule=rule).W2, simulate(c, seeds, k2=k2, group=False).W2)
    assert calls == []
    major = [0, 0, 1, 1], [0, 2, 0, 3]  # seed-major: grouped in place
    rule = chain(sgd(), flip_columns([np.zeros(4, int), np.array(major[1])]))
    given = simulate(c, major[0], rule=rule)
    assert calls  # it did group
    close(given, simulate(c, major[0], k2=major[1], group=False), 1e-12, same_labels=False)


@pytest.mark.slow
def test_compiled_grouped_step_equals_eager():
    seeds, kw = grid_kw((0, 1))
    c = cfg(activation="tanh", epochs=4)
    close(simulate(c, seeds, **kw, compile=True), simulate(c, seeds, **kw, group=False), 1e-10)
