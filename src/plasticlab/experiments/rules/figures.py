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
