"""rule-atlas figures: alignment vs non-gradient fraction (one facet per decay/noise condition) and the
alignment heat table. Rules are told apart by colour *and* marker (a qualitative palette)."""

from __future__ import annotations

import numpy as np
import pandas as pd

FLOOR = 1e-16  # gradient fields sit at rounding level; drawn at this floor on the log axis
MARKERS = "osD^vPX*<>ph"


def rule_styles(rules: list[str]) -> dict[str, tuple]:
    """(colour, marker) per rule: tab10 colours and markers advance together, so neighbours differ in both
    and 14 rules stay distinguishable (10 colours × 11 markers)."""
    import matplotlib.pyplot as plt

    cols = [plt.get_cmap("tab10")(i) for i in range(10)]
    return {r: (cols[i % len(cols)], MARKERS[i % len(MARKERS)]) for i, r in enumerate(rules)}


def _label(g: float, s: float) -> str:
    return f"γ={g:g}, σ={s:g}"


def signature_facets(summ: pd.DataFrame):
    """One panel per (γ, σ): each rule's mean alignment (x) vs its non-gradient fraction (y, log)."""
    import matplotlib.pyplot as plt

    conds = [
        tuple(c)
        for c in summ[["weight_decay", "noise"]].drop_duplicates().sort_values(["weight_decay", "noise"]).values
    ]
    rules = list(dict.fromkeys(summ.rule))
    style = rule_styles(rules)
    fig, axes = plt.subplots(1, len(conds), figsize=(3.4 * len(conds) + 2.2, 4.2), sharey=True, squeeze=False)
    for ax, (g, s) in zip(axes[0], conds):
        cell = summ[(summ.weight_decay == g) & (summ.noise == s)]
        for r in rules:
            row = cell[cell.rule == r]
            if len(row) and np.isfinite(row.alignment.iloc[0]):
                c, m = style[r]
                y = max(float(row.nongradient_fraction.iloc[0]), FLOOR)
                ax.scatter(row.alignment.iloc[0], y, color=c, marker=m, s=60, edgecolor="k", linewidth=0.5)
        ax.set(yscale="log", ylim=(FLOOR / 3, 2), xlim=(-1.05, 1.05), title=_label(g, s))
        ax.axhline(1e-6, color="grey", ls=":", lw=1)
        ax.axvline(0, color="grey", lw=0.6)
        ax.set_xlabel("Hebbian alignment (output layer)")
    axes[0][0].set_ylabel("non-gradient fraction ‖J_antisym‖/‖J‖")
    axes[0][0].text(-1.0, 2e-6, "gradient fields below", fontsize=7, color="grey")
    handles = [
        plt.Line2D([], [], ls="none", marker=style[r][1], color=style[r][0], mec="k", mew=0.5, ms=8, label=r)
        for r in rules
    ]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title="rule")
    fig.suptitle("Same Hebbian signature, different rules (one panel per decay γ and noise σ)")
    fig.tight_layout()
    return fig


def alignment_table(summ: pd.DataFrame):
    """Rules × conditions heat table of alignment, cells that failed marked div (all diverged) / coll."""
    import matplotlib.pyplot as plt

    conds = [
        tuple(c)
        for c in summ[["weight_decay", "noise"]].drop_duplicates().sort_values(["weight_decay", "noise"]).values
    ]
    rules = list(dict.fromkeys(summ.rule))
    Z = np.full((len(rules), len(conds)), np.nan)
    fig, ax = plt.subplots(figsize=(1.5 * len(conds) + 2.5, 0.38 * len(rules) + 1.4))
    for i, r in enumerate(rules):
        for j, (g, s) in enumerate(conds):
            row = summ[(summ.rule == r) & (summ.weight_decay == g) & (summ.noise == s)]
            if not len(row):
                continue
            row = row.iloc[0]
            Z[i, j] = row.alignment
            note = f"{row.alignment:+.2f}"
            if row.diverged == row.n:
                note = "div"
            elif row.collapsed + row.diverged == row.n:
                note = "coll"
            ax.text(j, i, note, ha="center", va="center", fontsize=7)
    im = ax.imshow(Z, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(conds)), [_label(g, s) for g, s in conds], rotation=25, fontsize=8)
    ax.set_yticks(range(len(rules)), rules, fontsize=8)
    ax.set_title("alignment per rule and condition (div = all diverged, coll = collapsed)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04).set_label("Hebbian alignment (mean over seeds)")
    fig.tight_layout()
    return fig


# -- rule-identify ------------------------------------------------------------------------------------------
def budget_figure(acc: pd.DataFrame, fractions: list[float], units: list[int], noises: list[float]):
    """Accuracy against each observation budget (the other two at full), per feature set and classifier."""
    import matplotlib.pyplot as plt

    from plasticlab import identification as ident

    ms = ident.mean_sd(acc)
    full_u, full = int(max(units)), ident.Budget().label
    axes_def: list[tuple[str, list[tuple[float, str]]]] = [
        (
            "fraction of training seen",
            [(f, ident.Budget(fraction=f).label) for f in sorted(fractions)] + [(1.0, full)],
        ),
        (
            "units recorded per layer",
            [(u, ident.Budget(units=u).label if u != full_u else full) for u in sorted(units)],
        ),
        (
            "measurement noise (sd of each observable)",
            [(0.0, full)] + [(s, ident.Budget(noise=s).label) for s in sorted(noises)],
        ),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    colors = dict(zip(ident.FEATURE_SETS, ["tab:red", "tab:blue", "tab:green", "k"]))
    for ax, (title, pts) in zip(axes, axes_def):
        for fs, col in colors.items():
            for clf, ls in (("forest", "-"), ("logistic", "--")):
                d = ms[(ms.feature_set == fs) & (ms.classifier == clf)].set_index("budget")
                xs, labs = [x for x, lab in pts if lab in d.index], [lab for _, lab in pts if lab in d.index]
                label = f"{fs} ({clf})" if ax is axes[0] else None
                ax.errorbar(
                    xs,
                    d.accuracy[labs],
                    yerr=d.sd[labs],
                    color=col,
                    ls=ls,
                    marker="o",
                    ms=3,
                    capsize=2,
                    label=label,
                )
        ax.axhline(acc.chance.mean(), color="grey", ls=":", label="chance" if ax is axes[0] else None)
        ax.set(xlabel=title, ylim=(0, 1.02))
    axes[1].set_xscale("log", base=2)
    axes[0].set_ylabel("accuracy (mean ± sd over folds)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def confusion_figure(mats: dict[str, np.ndarray], order: list[str], clf: str):
    """Row-normalised confusion matrices, one panel per feature set, one shared and labelled colour bar.

    The panels share the rule axis, so only the first carries the rule names and the ``true rule`` label:
    nothing of one panel runs into the next."""
    import matplotlib.pyplot as plt

    n = len(order)
    side = 0.36 * n + 2.0
    fig, axes = plt.subplots(
        1,
        len(mats),
        figsize=(side * len(mats) + 1.5, side + 0.8),
        sharey=True,
        layout="constrained",
        squeeze=False,
    )
    for ax, (fs, M) in zip(axes[0], mats.items()):
        im = ax.imshow(M, vmin=0, vmax=1, cmap="viridis")
        for i, j in zip(*np.nonzero(np.nan_to_num(M) >= 0.05)):
            ax.text(
                j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=6, color="k" if M[i, j] > 0.6 else "w"
            )
        ax.set_xticks(range(n), order, rotation=45, ha="right", rotation_mode="anchor", fontsize=7)
        ax.set_yticks(range(n), order, fontsize=7)
        ax.set_xlabel("predicted rule")
        ax.set_title(f"{fs} ({clf}, full budget)\naccuracy {np.trace(np.nan_to_num(M)) / n:.3f}", fontsize=9)
    axes[0][0].set_ylabel("true rule")
    bar = fig.colorbar(im, ax=axes[0].tolist(), fraction=0.03, pad=0.02)
    bar.set_label("share of the true rule's runs predicted as each rule (rows sum to 1)")
    return fig
