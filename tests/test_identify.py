"""Rule identification: the engine's observer hook, observables, features, classifiers, identify()."""

import numpy as np
import pandas as pd
import pytest
import torch

import plasticlab
from plasticlab import PlasticlabError
from plasticlab.identification import Budget, evaluate, feature_columns, features, identify, train_identifier
from plasticlab.metrics import hebbian_alignment
from plasticlab.metrics.observables import ObservableRecorder, layer_observables, moments
from plasticlab.networks import init_mlp
from plasticlab.rules import make_rule
from plasticlab.simulation.train_mlp import train_mlp
from plasticlab.tasks import teacher_regression


def _small(seeds, **kw):
    data = teacher_regression(seeds, d_in=6, d_out=2, n_train=64, n_val=16)
    net = init_mlp(seeds, [6, 8, 2], "tanh")
    return train_mlp(net, make_rule("adam", gamma=1e-3), data, seeds, steps=30, lr=0.01, batch_size=8, **kw)


def test_observer_sees_every_checkpoint_and_leaves_training_unchanged():
    seeds = torch.arange(3)
    seen = []

    def observe(step, ctx, out, state, alive):
        # re-running the rule from the state it started from must reproduce its output (no hidden mutation)
        again = ctx_rule.step(state, ctx)
        assert torch.equal(again.signal[0][0], out.signal[0][0])
        seen.append((step, ctx.trace.post[0].shape, alive.clone()))

    ctx_rule = make_rule("adam", gamma=1e-3)
    data = teacher_regression(seeds, d_in=6, d_out=2, n_train=64, n_val=16)
    net = init_mlp(seeds, [6, 8, 2], "tanh")
    watched = train_mlp(
        net, ctx_rule, data, seeds, steps=30, lr=0.01, batch_size=8, record_every=10, observe=observe
    )
    plain = _small(seeds, record_every=10)
    assert [s for s, _, _ in seen] == watched.steps_recorded == [0, 10, 20, 29]
    assert seen[0][1] == (3, 8, 8) and all(a.all() for _, _, a in seen)
    assert torch.equal(watched.net.weights[1], plain.net.weights[1])


# -- observables ----------------------------------------------------------------------------------------
def test_moments_match_numpy_and_kurtosis_is_nan_where_undefined():
    x = torch.randn(2, 4000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[1] = 3.0
    m = moments(x, "a")
    assert abs(m["a_kurt"][0].item() - 3.0) < 0.3  # Gaussian
    assert torch.isnan(m["a_kurt"][1]) and m["a_var"][1] == 0 and m["a_median"][1] == 3.0
    assert np.isclose(m["a_var"][0].item(), x[0].numpy().var())


def test_unit_budget_restricts_alignment_to_the_recorded_block():
    g = torch.randn(1, 5, 4, dtype=torch.float64)
    pre = torch.randn(1, 7, 4, dtype=torch.float64)
    post = torch.randn(1, 7, 5, dtype=torch.float64)
    W = torch.randn(1, 5, 4, dtype=torch.float64)
    full = layer_observables(g, pre, post, W, None)
    two = layer_observables(g, pre, post, W, 2)
    assert torch.allclose(full["align"], hebbian_alignment(g, pre, post))
    assert torch.allclose(two["align"], hebbian_alignment(g[:, :2, :2], pre[:, :, :2], post[:, :, :2]))
    assert torch.allclose(two["w_mean"], W[:, :2, :2].abs().mean((1, 2)))
    assert torch.isnan(full["align_noise"]).all()  # no probe given


def _recorded(seeds, rule="sgd", probe=0.05, steps=20):
    seeds = torch.as_tensor(seeds)
    data = teacher_regression(seeds, d_in=6, d_out=2, n_train=64, n_val=16)
    net = init_mlp(seeds, [6, 8, 2], "tanh")
    r = make_rule(rule, gamma=1e-3)
    rec = ObservableRecorder(r, units=(None, 2), probe_sigma=probe)
    train_mlp(net, r, data, seeds, steps=steps, lr=0.05, batch_size=8, record_every=5, observe=rec)
    return rec.trajectories()


def test_recorded_member_alone_equals_member_in_batch():
    together, alone = _recorded([0, 1, 2]), _recorded([1])
    assert together.keys() == alone.keys() and len(together) == 10 * 2 * 2  # observables × layers × units
    for k in together:
        assert torch.allclose(together[k][:, 1], alone[k][:, 0], atol=1e-10, equal_nan=True), k


def test_perturbation_response_vanishes_for_a_vanishing_probe_and_not_for_a_real_one():
    tiny = _recorded([0, 1], probe=1e-9)[("align_noise", 1, None)]
    real = _recorded([0, 1], probe=0.3)[("align_noise", 1, None)]
    assert tiny.abs().max() < 1e-6 and real.abs().max() > 1e-3


# -- features, classifiers, identify ----------------------------------------------------------------------
def _synthetic(rules=("a", "b", "c"), seeds=range(6), T=11, diverge=None):
    """Trajectory table whose rules differ in the slope of align_l0 and the level of w_mean_l0."""
    rows = []
    for i, r in enumerate(rules):
        for s in seeds:
            rng = np.random.default_rng(100 * i + s)
            for t in range(T):
                w = float("nan") if diverge == (r, s) and t > 5 else 0.1 * (i + 1) + 0.01 * rng.normal()
                rows.append(
                    dict(
                        rule=r,
                        weight_decay=0.0,
                        noise=0.0,
                        seed=s,
                        run=f"{r}|{s}",
                        units=4,
                        step=10 * t,
                        align_l0=(i - 1) * t / T + 0.02 * rng.normal(),
                        w_mean_l0=w,
                        act_mean_l0=rng.normal(),
                    )
                )
    return pd.DataFrame(rows)


def test_features_summarise_mean_last_and_slope_within_the_seen_fraction():
    df = _synthetic(diverge=("c", 0))
    X = features(df)
    a = X.loc["a|0"]
    assert a["align_l0:slope"] < -0.5 and X.loc["c|0", "align_l0:slope"] > 0.5
    assert np.isclose(
        X.loc["c|0", "w_mean_l0:last"], np.log1p(df[(df.run == "c|0") & (df.step == 50)].w_mean_l0.item())
    )
    half = features(df, Budget(fraction=0.5))
    assert half.loc["c|1", "align_l0:last"] < X.loc["c|1", "align_l0:last"]  # only steps <= 50 seen
    noisy = features(df, Budget(noise=1.0))
    assert not np.allclose(noisy["act_mean_l0:mean"], X["act_mean_l0:mean"])
    assert feature_columns(X, "alignment only") == ["align_l0:mean", "align_l0:last", "align_l0:slope"]
    with pytest.raises(PlasticlabError, match="feature set"):
        feature_columns(X, "spikes only")


def test_grouped_cross_validation_separates_separable_rules_and_never_shares_a_seed():
    df = _synthetic()
    acc, pred = evaluate(df, [Budget()], n_splits=3, trees=10)
    assert set(acc.columns) >= {"feature_set", "budget", "classifier", "fold", "accuracy", "chance"}
    forest = acc[acc.classifier == "forest"].groupby("feature_set").accuracy
    assert forest.min()[["all", "alignment only", "weights only"]].eq(1.0).all()
    assert forest.mean()["activity only"] < 0.6  # pure noise: no better than chance, give or take
    assert acc[(acc.classifier == "logistic") & (acc.feature_set == "all")].accuracy.mean() >= 0.8
    assert np.allclose(acc.chance, 1 / 3)
    one = pred[(pred.feature_set == "all") & (pred.classifier == "forest")]
    assert sorted(one.run) == sorted(df.run.unique())  # every run tested exactly once
    assert one.groupby("seed").fold.nunique().eq(1).all()  # a seed sits in one test fold only


def test_identify_returns_rule_probabilities_for_new_recordings(tmp_path):
    train = _synthetic(seeds=range(5))
    new = _synthetic(seeds=[7]).drop(columns=["rule", "weight_decay", "noise", "seed"])
    model = train_identifier(train, classifier="logistic")
    P = identify(new, model)
    assert list(P.columns) == ["a", "b", "c"] and np.allclose(P.sum(axis=1), 1)
    assert [P.loc[f"{r}|7"].idxmax() for r in "abc"] == ["a", "b", "c"]
    single = new[new.run == "b|7"].drop(columns=["run", "units"])  # one run, no run/units columns
    assert identify(single, train).iloc[0].idxmax() == "b"
    with pytest.raises(PlasticlabError, match="step"):
        identify(pd.DataFrame(dict(x=[1.0])), model)
    with pytest.raises(PlasticlabError, match="no rule-identify table"):
        identify(new, tmp_path)


# -- the experiment -------------------------------------------------------------------------------------
def test_rule_identify_tiny_run_writes_accuracy_table_report_and_claims(tmp_path):
    from plasticlab.study import get
    from plasticlab.study.claims import VERDICTS

    kw = dict(
        rules=["sgd", "hebbian", "curl"],
        seeds=[0, 1],
        gammas=[0.0, 0.01],
        sigmas=[0.0],
        steps=40,
        checkpoints=4,
        units=[16, 2],
        fractions=[0.5],
        noises=[1.0],
        folds=2,
        nongradient_probes=2,
        n_train=128,
        analysis_batch=32,
        trees=10,
    )
    out = tmp_path / "rule-identify"
    df = plasticlab.run("rule-identify", quick=True, out=out, **kw)
    assert set(df.rule) == {"sgd", "hebbian", "curl"} and df.run.nunique() == 12
    acc = pd.read_csv(out / "accuracy.csv")
    assert list(acc.columns[:6]) == ["feature_set", "budget", "classifier", "fold", "accuracy", "chance"]
    assert set(acc.budget) == {"full", "fraction 0.5", "units 2", "noise 1"} and len(acc) == 4 * 4 * 2 * 2
    report = (out / "report.md").read_text()
    assert (out / "confusion.png").exists() and "What the feature and budget names mean" in report
    assert "| align_lN |" in report and "| units u |" in report  # feature and budget names explained
    exp = get("rule-identify")
    claims = exp.claims(df, exp.params(quick=True, **kw))
    assert len(claims) == 4 and all(c.verdict in VERDICTS and c.n == 2 for c in claims)
    _compact_table_gives_the_same_numbers(df, exp.params(quick=True, **kw), out, claims)
    with pytest.raises(PlasticlabError, match="2 seeds"):
        exp.params(quick=True, seeds=[0])


def _compact_table_gives_the_same_numbers(df, p, out, claims):
    """features.parquet (one row per run) stands in for the trajectory table: same features for every
    budget, same accuracy table, and `reproduce --collect` and identify() work from it alone."""
    from plasticlab.experiments.rules.identify import budget_list, evaluation
    from plasticlab.reproduce import reproduce

    ft = pd.read_parquet(out / "features.parquet")
    assert len(ft) == df.run.nunique() and "step" not in ft
    for b in budget_list(p) + [Budget(units=16)]:
        pd.testing.assert_frame_equal(features(ft, b), features(df, b), check_exact=True)
    with pytest.raises(PlasticlabError, match="no budget 'units 4'"):
        features(ft, Budget(units=4))
    acc_csv = (out / "accuracy.csv").read_text()
    assert evaluation(ft, p)[0].to_csv(index=False) == acc_csv
    (out / "results.parquet").unlink()
    [oc] = reproduce(out.parent, collect=True, only=["rule-identify"])
    assert oc.status == "ok" and [c.ours for c in oc.claims] == [c.ours for c in claims]
    assert (out / "accuracy.csv").read_text() == acc_csv  # the report rewritten from the compact table
    new = df[df.seed == 0].drop(columns=["rule", "weight_decay", "noise", "seed"])
    assert np.allclose(identify(new, out).sum(axis=1), 1)


def test_feature_names_read_in_words():
    from plasticlab.experiments.rules.identify import OBSERVABLES, describe_feature, name_table

    mean = "mean over the observed checkpoints"
    assert describe_feature("align_l0:mean") == f"{OBSERVABLES['align']}; layer 0; {mean}"
    assert describe_feature("w_kurt_l1:slope") == "kurtosis of abs(W); layer 1; least-squares slope"
    assert describe_feature("nongradient_fraction_final").startswith("log10 of the non-gradient fraction")
    table = name_table(dict(units=[16, 2]))
    assert {"align_noise_lN", "nongradient_fraction_final", ":last", "units u", "noise s", "full"} <= set(
        table.name
    )
    assert not table.meaning.str.contains("|", regex=False).any()  # a "|" would split the markdown cell


@pytest.mark.parametrize("name", ["rule-identify", "rule-transfer", "rule-atlas"])
def test_default_rules_are_the_registry_when_params_are_built(name):
    from plasticlab.rules import rule_names, signal, unregister
    from plasticlab.study import get

    exp = get(name)  # imported before the rule below exists

    @signal("late_rule_t", gradient=True)
    def late_rule_t(ctx):
        return ctx.descent(ctx.backprop(ctx.output_delta()))

    try:
        assert "late_rule_t" in exp.params()["rules"]  # registered after import: it joins the default list
    finally:
        unregister("late_rule_t")
    p = exp.params(quick=True)
    assert "late_rule_t" not in p["rules"] and p["rules"] == list(rule_names())  # removed: it does not linger
    assert exp.size(p) == "quick"
