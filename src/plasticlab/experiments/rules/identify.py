"""rule-identify: can the learning rule be told from what an experimenter can record?

Every rule of the library trains the same student–teacher regression under weight decay × forward-pass
noise × seeds (one ensemble per rule). At a fixed schedule of checkpoints the engine's ``observe`` hook
records per-layer observables (:mod:`plasticlab.metrics.observables`): Hebbian alignment of the learning
signal and its response to a small weight perturbation, activity statistics and weight statistics, for
several numbers of recorded units. At the end, where an experimenter would know the weights, the
non-gradient fraction of each run's rule field. The results table holds these trajectories (one row per
run × units × checkpoint); claims, figures and tables come from logistic-regression and random-forest
classifiers trained on their summaries (:mod:`plasticlab.identification`) with cross-validation grouped by
seed, for four feature sets and three observation budgets. Beside the report the run keeps
``accuracy.csv``, ``predictions.csv`` and ``features.parquet`` (the compact per-run table the classifiers
read, which gives the same numbers as the trajectories and stands in for them in a committed result).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from plasticlab import identification as ident
from plasticlab.analysis import nongradient_fraction_hutchinson
from plasticlab.experiments.rules.atlas import (
    ACTIVATIONS,
    REGRESSION,
    RegistryRules,
    RegressionSpec,
    member_field,
    train_ensemble,
)
from plasticlab.metrics.observables import ObservableRecorder
from plasticlab.rules import make_rule, rule_names
from plasticlab.study import (
    NONNEG,
    SIZE,
    STEPS,
    Figure,
    Interval,
    ListOf,
    Require,
    RunContext,
    Table,
    register,
    shared_fields,
)
from plasticlab.study.claims import BEYOND, AtLeast, Claim, measure

SOURCE = "rule identification (after Nayebi et al. 2020)"
FULL = ident.Budget().label
EVAL_KEYS = ("fractions", "noises", "folds", "trees")  # how the table is read, not what is run


@dataclass
class Spec(RegressionSpec):
    """A rule-identify chunk: the shared fields and what is recorded."""

    checkpoints: int
    units: list[int]
    probe_sigma: float
    nongradient_probes: int


@register
class RuleIdentify(RegistryRules):
    """rule-identify: record observables of every rule, then classify the rule from their trajectories."""

    name = "rule-identify"
    summary = "Identify the learning rule from recorded observables (alignment, activity, weights) by classifier"
    title = "which learning rule is this network following? Identification from observables"
    budget_s = 240
    code_version = 1
    spec_type = Spec
    columns = ("rule", "weight_decay", "noise", "seed", "run", "units", "step", "align_l0", "nongradient_fraction")
    tiny = dict(
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
    )  # seconds: the contract test
    base_defaults = dict(  # and rules: every registered rule (RegistryRules)
        rules=[],
        gammas=[0.0, 1e-2, 5e-2],
        sigmas=[0.0, 0.1],
        seeds=list(range(8)),
        steps=3000,
        checkpoints=40,
        **REGRESSION,
        n_train=2000,
        n_val=200,
        units=[16, 4, 2],
        probe_sigma=0.05,
        nongradient_probes=8,
        analysis_batch=128,
        fractions=[0.1, 0.25, 0.5],
        noises=[0.5, 1.0, 2.0],
        folds=5,
        trees=100,
    )
    quick = dict(
        gammas=[0.0, 1e-2],
        seeds=[0, 1, 2, 3],
        steps=800,
        checkpoints=20,
        units=[16, 2],
        fractions=[0.25],
        noises=[1.0],
        folds=4,
    )
    choices = dict(rules=rule_names(), activation=ACTIVATIONS)
    constraints = dict(
        checkpoints=STEPS,
        units=ListOf(SIZE),
        probe_sigma=NONNEG,
        nongradient_probes=Interval(int, 0, 10_000),
        analysis_batch=SIZE,
        fractions=ListOf(Interval(float, 0, 1, closed="right"), min_len=0),
        noises=ListOf(NONNEG, min_len=0),
        folds=Interval(int, 2, 1000),
        trees=SIZE,
    )
    relations = (
        Require(("seeds",), lambda s: len(set(s)) >= 2, "at least 2 seeds (cross-validation is grouped by seed)"),
        Require(("rules",), lambda r: len(set(r)) >= 2, "at least 2 rules to tell apart"),
        Require(
            ("units", "d_in", "hidden", "d_out"),
            lambda u, *layers: max(u) >= max(layers),
            "the largest of units covers every layer (>= d_in, hidden and d_out)",
        ),
    )

    def chunks(self, p):
        """One chunk per rule: its decay × noise × seed grid is one ensemble."""
        keep = shared_fields(Spec, p, "rule")
        return [Spec(rule=r, **keep) for r in p["rules"]]

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """Train the rule's ensemble recording observables; one row per run × units × checkpoint."""
        return run_rule(spec, ctx)

    def claims(self, df, p):
        """Alignment under decay, all observables vs chance and vs alignment, early training vs all."""
        return identify_claims(df, p, self.size(p))

    def notes(self, p):
        """The setting, the observables and how the classifiers are scored."""
        return (
            f"Each rule trained a {p['d_in']}→{p['hidden']}→{p['d_out']} {p['activation']} MLP on student–teacher "
            f"regression for {p['steps']} steps under weight decay γ and forward-pass weight noise σ. At every "
            "checkpoint the engine recorded, per layer and per number of recorded units, the observables named in "
            "the feature table below; features are each trajectory's mean, last value and slope. Classifiers: "
            f"logistic regression and a random forest, {p['folds']}-fold cross-validation grouped by seed (a "
            "seed's teacher, initialisation and noise are never in both train and test). Chance = accuracy of "
            "always answering the training fold's most frequent rule. Diverged runs are kept: their trajectories "
            "up to divergence are observables too (missing values imputed)."
        )

    def figures(self, df, p):
        """Accuracy against each observation budget, and the confusion matrices at the full budget."""
        from plasticlab.experiments.rules.figures import budget_figure, confusion_figure

        acc, pred = evaluation(df, p)
        clf, order = best_classifier(acc), [r for r in p["rules"] if r in set(df.rule)]
        mats = {fs: confusion(pred, fs, clf, order) for fs in ("alignment only", "all")}
        return [
            Figure(
                "accuracy_budgets",
                budget_figure(acc, p["fractions"], p["units"], p["noises"]),
                "Accuracy against each observation budget (the other two at full); solid forest, dashed "
                "logistic regression; dotted chance.",
            ),
            Figure(
                "confusion",
                confusion_figure(mats, order, clf),
                f"Confusion matrices (rows: true rule, normalised) of out-of-fold predictions, {clf}, "
                "full budget.",
            ),
        ]

    def tables(self, df, p):
        """Accuracy per budget, what the names mean, the forest's top features, confusions, divergences."""
        acc, pred = evaluation(df, p)
        clf, order = best_classifier(acc), [r for r in p["rules"] if r in set(df.rule)]
        pairs = [
            dict(feature_set=fs, rule_a=a, rule_b=b, rate=v)
            for fs in ("alignment only", "all")
            for a, b, v in ident.confused_pairs(confusion(pred, fs, clf, order), order, 3)
        ]
        split = decay_split(pred, "alignment only", clf).mean().rename("accuracy").rename_axis("runs")
        runs = df.groupby("run")[["rule", "diverged"]].first()
        div = runs.groupby("rule").diverged.agg(diverged="sum", runs="size").reset_index()
        imp = importances(df, p, 8)
        imp["meaning"] = imp.feature.map(describe_feature)
        return [
            Table(accuracy_table(acc), "Accuracy, mean ± sd over folds, per feature set, classifier and budget"),
            Table(name_table(p), "What the feature and budget names mean"),
            Table(imp, "The forest's largest impurity importances (all observables, every run, full budget)"),
            Table(split.reset_index(), f"Alignment only ({clf}): accuracy on runs without and with decay"),
            Table(
                pd.DataFrame(pairs), f"Most confused rule pairs ({clf}; mean of the two misclassification rates)"
            ),
        ] + ([Table(div[div.diverged > 0], "Runs that diverged, per rule")] if div.diverged.any() else [])

    def files(self, df, p):
        """accuracy.csv (per feature set, budget, classifier, fold), predictions.csv and features.parquet."""
        acc, pred = evaluation(df, p)
        out = {"accuracy.csv": acc, "predictions.csv": pred}
        if not ident.is_feature_table(df):  # the compact per-run table: a few MB where the trajectories are 16
            out["features.parquet"] = ident.feature_table(df, budget_list(p))
        return out


def run_rule(spec: Spec, ctx: RunContext | None = None) -> pd.DataFrame:
    """Train one rule's decay × noise × seed ensemble, recording observables; one row per run × units ×
    checkpoint."""
    every = max(1, spec.steps // spec.checkpoints)
    observe = partial(ObservableRecorder, units=spec.units, probe_sigma=spec.probe_sigma)
    conds, data, _, res, lr, rec = train_ensemble(spec, ctx or RunContext(), _make, every, observe)
    traj = rec.trajectories()
    rows = []
    for e, (g, s, seed) in enumerate(conds):
        ng = _nongradient(g, s, int(seed), res.net, data, e, spec) if not res.diverged[e] else math.nan
        base = dict(
            rule=spec.rule,
            weight_decay=g,
            noise=s,
            seed=int(seed),
            run=f"{spec.rule}|{g:g}|{s:g}|{seed}",
            lr=lr,
            diverged=bool(res.diverged[e]),
            diverged_at=float(res.diverged_at[e]),
            final_loss=float(res.val_loss_final[e]),
            nongradient_fraction=ng,
        )
        for u in spec.units:
            for t, step in enumerate(rec.steps):
                row = dict(base, units=int(u), step=step)
                row.update({f"{obs}_l{layer}": float(v[t, e]) for (obs, layer, uu), v in traj.items() if uu == u})
                rows.append(row)
    return pd.DataFrame(rows)


def _make(name: str, lr: float, gamma, sigma):
    return make_rule(name, gamma=gamma, sigma=sigma)  # the rule as registered (no step-size hyper)


def _nongradient(gamma, sigma, seed, net, data, e, spec: Spec) -> float:
    """Non-gradient fraction ‖J_A‖/‖J‖ of member e's rule field (its γ, σ) at its final weights, by
    Hutchinson probes on a fixed batch of its training data (stateful rules warmed up there first)."""
    if not spec.nongradient_probes:
        return math.nan
    rule = make_rule(spec.rule, gamma=gamma, sigma=sigma)
    field = member_field(rule, net, data, e, seed, spec, 10, (0, 1) if sigma else (0,))
    if field is None:
        return math.nan
    F, theta = field
    v = nongradient_fraction_hutchinson(F, theta, probes=spec.nongradient_probes, seed=seed)
    return v if math.isfinite(v) else math.nan


# -- evaluation, shared by the claims, figures, tables and files (computed once per table) ---------------------
def table_key(df: pd.DataFrame, p: dict) -> str:
    """A content hash of the table and the evaluation parameters (the cache key of ``evaluation``)."""
    h = hashlib.sha256(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    h.update(repr([p["fractions"], p["units"], p["noises"], p["folds"], p["trees"]]).encode())
    return h.hexdigest()


def budget_list(p: dict) -> list[ident.Budget]:
    """The observation budgets this run's parameters ask the classifiers to be evaluated at."""
    return ident.budgets(p["fractions"], p["units"], p["noises"], int(max(p["units"])))


_CACHE: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}


def evaluation(df: pd.DataFrame, p: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accuracy table, out-of-fold predictions at the full budget) for this run's table."""
    key = table_key(df, p)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = ident.evaluate(df, budget_list(p), n_splits=p["folds"], trees=p["trees"])
    return _CACHE[key]


def best_classifier(acc: pd.DataFrame) -> str:
    """The classifier with the higher mean accuracy on all observables at the full budget."""
    full = acc[(acc.budget == FULL) & (acc.feature_set == "all")]
    return str(full.groupby("classifier").accuracy.mean().idxmax())


def per_fold(acc: pd.DataFrame, feature_set: str, budget: str, clf: str) -> pd.Series:
    """Fold accuracies (indexed by fold) of one cell of the accuracy table."""
    s = acc[(acc.feature_set == feature_set) & (acc.budget == budget) & (acc.classifier == clf)]
    return s.set_index("fold").accuracy


def confusion(pred: pd.DataFrame, feature_set: str, clf: str, order: list[str]) -> np.ndarray:
    """The row-normalised confusion matrix of one feature set's out-of-fold predictions."""
    return ident.confusion(pred[(pred.feature_set == feature_set) & (pred.classifier == clf)], order)


def decay_split(pred: pd.DataFrame, feature_set: str, clf: str) -> pd.DataFrame:
    """Out-of-fold accuracy per fold on runs without decay (γ = 0) and with decay (γ > 0)."""
    d = pred[(pred.feature_set == feature_set) & (pred.classifier == clf)].copy()
    d["decay"] = np.where(d.weight_decay > 0, "γ > 0", "γ = 0")
    d["hit"] = d.rule == d.predicted
    return d.groupby(["decay", "fold"]).hit.mean().unstack("decay")


def _claim(text: str, diff: pd.Series, size: str, test) -> Claim:
    m, s, n = measure(diff)
    return Claim(text, BEYOND, SOURCE, math.nan, m, s, n, size, test)


def identify_claims(df: pd.DataFrame, p: dict, size: str) -> list[Claim]:
    """Claims of this experiment, as data; verdicts from ``plasticlab.study.claims.verdict``."""
    acc, pred = evaluation(df, p)
    clf = best_classifier(acc)
    out = []
    split = decay_split(pred, "alignment only", clf)
    if {"γ = 0", "γ > 0"} <= set(split.columns):
        text = (
            "Hebbian alignment alone identifies the rule less well under weight decay than without "
            f"(accuracy at γ = 0 minus at γ > 0, {clf}, per fold)"
        )
        out.append(_claim(text, split["γ = 0"] - split["γ > 0"], size, AtLeast(0.0)))
    all_full = per_fold(acc, "all", FULL, clf)
    chance = float(acc[(acc.budget == FULL)].chance.mean())
    text = (
        f"All observables identify the rule well above chance (accuracy minus chance {chance:.3f}, {clf}, "
        "full budget; test ≥ 0.5)"
    )
    out.append(_claim(text, all_full - chance, size, AtLeast(0.5, partly=0.25)))
    text = f"Activity and weight statistics add to alignment (accuracy of all minus alignment only, {clf})"
    out.append(_claim(text, all_full - per_fold(acc, "alignment only", FULL, clf), size, AtLeast(0.1, partly=0.0)))
    small = min(p["fractions"]) if p["fractions"] else None
    if small is not None and small < 1:
        part = per_fold(acc, "all", ident.Budget(fraction=small).label, clf)
        text = (
            f"The first {small:.0%} of training identifies the rule almost as well as all of it "
            f"(accuracy difference, all observables, {clf}; test ≥ −0.1)"
        )
        out.append(_claim(text, part - all_full, size, AtLeast(-0.1, partly=-0.2)))
    return out


# -- tables -------------------------------------------------------------------------------------------------
def accuracy_table(acc: pd.DataFrame) -> pd.DataFrame:
    """Accuracy ‘mean ± sd’ over folds: rows feature set × classifier, one column per budget, and chance."""
    ms = ident.mean_sd(acc)
    ms["cell"] = [f"{a:.3f} ± {s:.3f}" for a, s in zip(ms.accuracy, ms.sd.fillna(0))]
    wide = ms.pivot_table(
        index=["feature_set", "classifier"], columns="budget", values="cell", aggfunc="first", sort=False
    )
    wide = wide[list(dict.fromkeys(acc.budget))]
    wide["chance"] = ms.groupby(["feature_set", "classifier"], sort=False).chance.mean().map(lambda c: f"{c:.3f}")
    return wide.reset_index()


# Markdown tables split cells at "|": weights are written abs(W), layers N.
OBSERVABLES = dict(
    align="Hebbian alignment cos(G, H) of the learning signal G with the Hebbian direction H",
    align_noise="change of that alignment when the forward weights get a small random perturbation",
    act_mean="mean post-activation over the batch and the recorded units",
    act_var="variance of the post-activations",
    act_kurt="kurtosis of the post-activations (3 for a Gaussian)",
    act_median="median post-activation",
    w_mean="mean abs(W) over the recorded block of weights",
    w_var="variance of abs(W)",
    w_kurt="kurtosis of abs(W)",
    w_median="median abs(W)",
)
FINAL = f"{ident.NONGRADIENT}_final"
FINAL_MEANING = "log10 of the non-gradient fraction ‖J_A‖/‖J‖ of the rule's field at the final weights"
SUMMARY = dict(mean="mean over the observed checkpoints", last="last finite value", slope="least-squares slope")


def describe_feature(name: str) -> str:
    """A feature name in words, e.g. ``align_l0:mean`` -> the alignment of layer 0, mean over checkpoints."""
    if name.startswith(ident.NONGRADIENT):
        return FINAL_MEANING
    obs, _, summ = name.partition(":")
    base, _, layer = obs.rpartition("_l")
    return "; ".join([OBSERVABLES.get(base, base), f"layer {layer}", SUMMARY.get(summ, summ)])


def name_table(p: dict) -> pd.DataFrame:
    """The naming scheme: observables, layers, summaries and the observation-budget labels."""
    rows = [(f"{k}_lN", v) for k, v in OBSERVABLES.items()] + [(FINAL, FINAL_MEANING)]
    rows.append(("_l0, _l1", "layer N: 0 = input → hidden weights, 1 = hidden → output"))
    rows += [(f":{k}", v) for k, v in SUMMARY.items()]
    rows.append(("act_…, w_…, nongradient_…", "taken through sign(x) log(1 + abs(x)) first"))
    rows += [
        ("full", f"all of training, all {max(p['units'])} units per layer, no measurement noise"),
        ("fraction f", "only checkpoints in the first f of training seen"),
        ("units u", "only the first u units of each layer recorded"),
        ("noise s", "Gaussian noise of s × each observable's sd added to every recorded value"),
    ]
    return pd.DataFrame(rows, columns=["name", "meaning"])


def importances(df: pd.DataFrame, p: dict, top: int = 8) -> pd.DataFrame:
    """The forest's largest impurity importances on all observables (fit on every run, full budget)."""
    X = ident.features(df, ident.Budget(units=int(max(p["units"]))))
    cols = ident.feature_columns(X, "all")
    y = ident.labels(df, X.index).rule.to_numpy()
    model = ident.make_classifier("forest", trees=p["trees"]).fit(X[cols].to_numpy(), y)
    imp = model[-1].feature_importances_
    kept = model[0].get_feature_names_out(cols) if hasattr(model[0], "get_feature_names_out") else cols
    s = pd.Series(imp, index=list(kept)).sort_values(ascending=False).head(top)
    return s.rename("importance").rename_axis("feature").reset_index()
