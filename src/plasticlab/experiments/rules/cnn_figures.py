"""Figures of hebb-cnn (they take summary tables and import no experiment module)."""

from __future__ import annotations

import pandas as pd


def alignment_vs_gamma(summ: pd.DataFrame):
    """One panel per layer group: seed-mean late alignment against γ (symlog axis), one line per rule.

    ``summ`` has columns rule, group, gamma, alignment (as ``hebb-cnn``'s ``summary``)."""
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(summ.group)) or ["—"]
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3.0), squeeze=False, sharey=True)
    positive = summ.gamma[summ.gamma > 0]
    lin = float(positive.min()) if len(positive) else 1.0
    for ax, group in zip(axes[0], groups):
        for rule, g in summ[summ.group == group].groupby("rule", sort=False):
            g = g.sort_values("gamma")
            ax.plot(g.gamma, g.alignment, marker="o", label=rule)
        ax.set_xscale("symlog", linthresh=lin)
        ticks = sorted(summ.gamma.unique())
        ax.set_xticks(ticks, [f"{g:g}" for g in ticks], fontsize=7)
        ax.minorticks_off()
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(group)
        ax.set_xlabel("γ")
    axes[0][0].set_ylabel("alignment (late, seed mean)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig
