"""rule-identify: claims, figures and report, all computed from the run's own trajectory table or from the
compact per-run feature table written beside it (``features.parquet``), which gives the same numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from plasticlab import identification as ident
from plasticlab.experiments.rules.identify import budget_list, evaluation
from plasticlab.study.claims import AtLeast, Claim, measure
from plasticlab.study.report import Report

PAPER = "beyond the papers"
SOURCE = "rule identification (after Nayebi et al. 2020)"
FULL = "full"


def size_of(p: dict) -> str:
    """The run's size in words, for the claims' ``size`` column."""
    return (
        f"{len(p['rules'])} rules × {len(p['gammas'])} γ × {len(p['sigmas'])} σ × {len(p['seeds'])} seeds, "
        f"{p['steps']} steps"
    )


def best_classifier(acc: pd.DataFrame) -> str:
    """The classifier with the higher mean accuracy on all observables at the full budget."""
    full = acc[(acc.budget == FULL) & (acc.feature_set == "all")]
    return str(full.groupby("classifier").accuracy.mean().idxmax())


def per_fold(acc: pd.DataFrame, feature_set: str, budget: str, clf: str) -> pd.Series:
    """Fold accuracies (indexed by fold) of one cell of the accuracy table."""
    s = acc[(acc.feature_set == feature_set) & (acc.budget == budget) & (acc.classifier == clf)]
    return s.set_index("fold").accuracy


def decay_split(pred: pd.DataFrame, feature_set: str, clf: str) -> pd.DataFrame:
    """Out-of-fold accuracy per fold on runs without decay (γ = 0) and with decay (γ > 0)."""
    d = pred[(pred.feature_set == feature_set) & (pred.classifier == clf)].copy()
    d["decay"] = np.where(d.weight_decay > 0, "γ > 0", "γ = 0")
    d["hit"] = d.rule == d.predicted
    return d.groupby(["decay", "fold"]).hit.mean().unstack("decay")


def claims(df: pd.DataFrame, p: dict) -> list[Claim]:
    """Claims of this experiment, as data; verdicts from ``plasticlab.study.claims.verdict``."""
    acc, pred = evaluation(df, p)
    clf = best_classifier(acc)
    size = size_of(p)
    out = []
    split = decay_split(pred, "alignment only", clf)
    if {"γ = 0", "γ > 0"} <= set(split.columns):
        m, s, n = measure(split["γ = 0"] - split["γ > 0"])
        out.append(
            Claim(
                "Hebbian alignment alone identifies the rule less well under weight decay than without "
                f"(accuracy at γ = 0 minus at γ > 0, {clf}, per fold)",
                PAPER,
                SOURCE,
                math.nan,
                m,
                s,
                n,
                size,
                AtLeast(0.0),
            )
        )
    all_full = per_fold(acc, "all", FULL, clf)
    chance = float(acc[(acc.budget == FULL)].chance.mean())
    m, s, n = measure(all_full - chance)
    out.append(
        Claim(
            f"All observables identify the rule well above chance (accuracy minus chance {chance:.3f}, {clf}, "
            "full budget; test ≥ 0.5)",
            PAPER,
            SOURCE,
            math.nan,
            m,
            s,
            n,
            size,
            AtLeast(0.5, partly=0.25),
        )
    )
    m, s, n = measure(all_full - per_fold(acc, "alignment only", FULL, clf))
    out.append(
        Claim(
            f"Activity and weight statistics add to alignment (accuracy of all minus alignment only, {clf})",
            PAPER,
            SOURCE,
            math.nan,
            m,
            s,
            n,
            size,
            AtLeast(0.1, partly=0.0),
        )
    )
    small = min(p["fractions"]) if p["fractions"] else None
    if small is not None and small < 1:
        part = per_fold(acc, "all", ident.Budget(fraction=small).label, clf)
        m, s, n = measure(part - all_full)
        out.append(
            Claim(
                f"The first {small:.0%} of training identifies the rule almost as well as all of it "
                f"(accuracy difference, all observables, {clf}; test ≥ −0.1)",
                PAPER,
                SOURCE,
                math.nan,
                m,
                s,
                n,
                size,
                AtLeast(-0.1, partly=-0.2),
            )
        )
    return out


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


def _budget_figure(acc: pd.DataFrame, p: dict):
    import matplotlib.pyplot as plt

    ms = ident.mean_sd(acc)
    full_u = int(max(p["units"]))
    axes_def = [
        (
            "fraction of training seen",
            [(f, ident.Budget(fraction=f).label) for f in sorted(p["fractions"])] + [(1.0, FULL)],
        ),
        (
            "units recorded per layer",
            [(u, ident.Budget(units=u).label if u != full_u else FULL) for u in sorted(p["units"])],
        ),
        (
            "measurement noise (sd of each observable)",
            [(0.0, FULL)] + [(s, ident.Budget(noise=s).label) for s in sorted(p["noises"])],
        ),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    colors = dict(zip(ident.FEATURE_SETS, ["tab:red", "tab:blue", "tab:green", "k"]))
    for ax, (title, pts) in zip(axes, axes_def):
        for fs, col in colors.items():
            for clf, ls in (("forest", "-"), ("logistic", "--")):
                d = ms[(ms.feature_set == fs) & (ms.classifier == clf)].set_index("budget")
                xs = [x for x, lab in pts if lab in d.index]
                ys = [d.accuracy[lab] for x, lab in pts if lab in d.index]
                es = [d.sd[lab] for x, lab in pts if lab in d.index]
                ax.errorbar(
                    xs,
                    ys,
                    yerr=es,
                    color=col,
                    ls=ls,
                    marker="o",
                    ms=3,
                    capsize=2,
                    label=f"{fs} ({clf})" if ax is axes[0] else None,
                )
        ax.axhline(acc.chance.mean(), color="grey", ls=":", label="chance" if ax is axes[0] else None)
        ax.set_xlabel(title)
        ax.set_ylim(0, 1.02)
    axes[1].set_xscale("log", base=2)
    axes[0].set_ylabel("accuracy (mean ± sd over folds)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _confusion_figure(pred: pd.DataFrame, order: list[str], clf: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5))
    for ax, fs in zip(axes, ("alignment only", "all")):
        M = ident.confusion(pred[(pred.feature_set == fs) & (pred.classifier == clf)], order)
        im = ax.imshow(M, vmin=0, vmax=1, cmap="viridis")
        for i in range(len(order)):
            for j in range(len(order)):
                if M[i, j] >= 0.05:
                    ax.text(
                        j,
                        i,
                        f"{M[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="k" if M[i, j] > 0.6 else "w",
                    )
        ax.set_xticks(range(len(order)), order, rotation=70, fontsize=7)
        ax.set_yticks(range(len(order)), order, fontsize=7)
        ax.set_xlabel("predicted rule")
        ax.set_ylabel("true rule")
        ax.set_title(f"{fs} ({clf}, full budget): accuracy {np.trace(np.nan_to_num(M)) / len(order):.3f}")
    fig.colorbar(im, ax=axes, fraction=0.02)
    return fig


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


def write_report(df: pd.DataFrame, p: dict, out) -> None:
    """report.md, accuracy.csv (one row per feature set, budget, classifier, fold), predictions and figures."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not ident.is_feature_table(df):
        # the compact per-run table: what the classifiers read, a few MB where the trajectories are 16
        ident.feature_table(df, budget_list(p)).to_parquet(out / "features.parquet", index=False)
    acc, pred = evaluation(df, p)
    acc.to_csv(out / "accuracy.csv", index=False)
    pred.to_csv(out / "predictions.csv", index=False)
    order = [r for r in p["rules"] if r in set(df.rule)]
    clf = best_classifier(acc)
    rep = Report(out, "Which learning rule is this network following? Identification from observables", p)
    rep.add_claims(claims(df, p))
    runs = df.groupby("run").first()
    rep.text(
        f"Each of {len(order)} rules trained a {p['d_in']}→{p['hidden']}→{p['d_out']} {p['activation']} MLP "
        f"on student–teacher regression for {p['steps']} steps under weight decay γ ∈ {p['gammas']} and "
        f"forward-pass weight noise σ ∈ {p['sigmas']}, seeds {p['seeds']} ({len(runs)} runs). At "
        f"{ident.n_checkpoints(df)} checkpoints the engine recorded, per layer and for {sorted(p['units'])} "
        "recorded units: the Hebbian alignment of the learning signal and its change under a weight perturbation "
        f"of sd {p['probe_sigma']} (*alignment*); mean, variance, kurtosis and median of the activations "
        "(*activity*) and of |W| (*weights*, plus the non-gradient fraction of the rule field at the final "
        "weights). Features: each trajectory's mean, last value and slope. Classifiers: logistic regression "
        f"and a random forest, {p['folds']}-fold cross-validation grouped by seed (a seed's teacher, "
        "initialisation and noise are never in both train and test). Chance = accuracy of always answering "
        "the training fold's most frequent rule."
    )
    div = runs.groupby("rule").diverged.sum()
    if div.any():
        rep.text(
            "Runs that diverged (kept: their trajectories up to divergence are observables too, missing "
            "values are imputed): "
            + ", ".join(f"{r} {int(v)}/{int((runs.rule == r).sum())}" for r, v in div.items() if v)
            + "."
        )
    rep.table(accuracy_table(acc), "Accuracy, mean ± sd over folds, per feature set, classifier and budget")
    rep.figure(
        _budget_figure(acc, p),
        "accuracy_budgets",
        "Accuracy against each observation budget (the other two at full); solid forest, dashed logistic "
        "regression; dotted chance.",
    )
    rep.figure(
        _confusion_figure(pred, order, clf),
        "confusion",
        f"Confusion matrices (rows: true rule, normalised) of out-of-fold predictions, {clf}, full budget.",
    )
    _answers(rep, df, p, acc, pred, order, clf)
    rep.write()


def _answers(rep, df, p, acc, pred, order, clf) -> None:
    ms = ident.mean_sd(acc)
    full = ms[(ms.budget == FULL) & (ms.classifier == clf)].set_index("feature_set")
    chance = float(acc[acc.budget == FULL].chance.mean())
    split = decay_split(pred, "alignment only", clf).mean()
    lines = ["## Answers", ""]
    lines.append(
        f"- **Alignment alone** ({clf}): {full.accuracy['alignment only']:.3f} ± {full.sd['alignment only']:.3f} "
        f"(chance {chance:.3f}); on runs without decay {split.get('γ = 0', math.nan):.3f}, with decay "
        f"{split.get('γ > 0', math.nan):.3f}."
    )
    best = full.accuracy.idxmax()
    lines.append(
        "- **Which observables**: "
        + ", ".join(
            f"{fs} {full.accuracy[fs]:.3f} ± {full.sd[fs]:.3f}" for fs in ident.FEATURE_SETS if fs in full.index
        )
        + f"; best: {best}. Most important features of the forest: "
        + ", ".join(f"{r.feature} ({r.importance:.3f})" for r in importances(df, p, 5).itertuples())
        + "."
    )
    alls = ms[(ms.feature_set == "all") & (ms.classifier == clf)].set_index("budget").accuracy
    lines.append(
        "- **How much data** (all observables, "
        + clf
        + "): "
        + ", ".join(f"{b} {v:.3f}" for b, v in alls.items())
        + "."
    )
    for fs in ("alignment only", "all"):
        M = ident.confusion(pred[(pred.feature_set == fs) & (pred.classifier == clf)], order)
        pairs = ident.confused_pairs(M, order, 3)
        lines.append(
            f"- **Most confused pairs** ({fs}): "
            + ("; ".join(f"{a} ↔ {b} {v:.2f}" for a, b, v in pairs) if pairs else "none")
            + " (mean of the two misclassification rates)."
        )
    rep.text("\n".join(lines))
