"""Part A (emergent Hebbian) figures: the noise σ × decay γ phase maps of hebb-phase."""

from __future__ import annotations

import numpy as np
import pandas as pd

from plasticlab.experiments._hebb_common import summarise
from plasticlab.experiments.hebb_phase import LINREG, band_factor, plot_layer


def _grid(s: pd.DataFrame, value: str):
    piv = s.pivot(index="gamma", columns="sigma", values=value).sort_index().sort_index(axis=1)
    return piv.columns.values, piv.index.values, piv.values


def _edges(v):
    lv = np.log10(v)
    mid = (lv[1:] + lv[:-1]) / 2
    first = lv[0] - (mid[0] - lv[0] if len(lv) > 1 else 0.5)
    last = lv[-1] + (lv[-1] - mid[-1] if len(lv) > 1 else 0.5)
    return 10 ** np.concatenate([[first], mid, [last]])


def _theory_line(ax, sig, k=None):
    xs = np.geomspace(sig.min() / 1.5, sig.max() * 1.5, 50)
    ax.plot(xs, xs**2, "k--", lw=1.6, label="theory: γ = σ²")
    if k is not None and np.isfinite(k) and not 0.5 < k < 2:
        ax.plot(xs, k * xs**2, "k:", lw=1.6, label=f"rescaled: γ = σ² d_in/‖v_row‖² ≈ {k:.3g}σ²")


def _cell_labels(ax, sig, gam, Z, norm, value) -> None:
    """Each cell's value; where γ rows are closer than a label's height (log axis), neighbouring rows'
    labels are staggered left / right of the cell centre so they never overlap."""
    lg, ls = np.log10(gam), np.log10(sig)
    span = lg.max() - lg.min() if len(lg) > 1 else 1.0
    gap = np.diff(lg) / max(span, 1e-12) if len(lg) > 1 else np.array([1.0])
    near = np.zeros(len(gam), bool)
    near[:-1] |= gap < 0.045
    near[1:] |= gap < 0.045
    dx = 0.22 * (np.diff(ls).min() if len(ls) > 1 else 1.0)
    for i, g in enumerate(gam):
        shift = (-dx if i % 2 else dx) if near[i] else 0.0
        for j in range(len(sig)):
            if not np.isfinite(Z[i, j]):
                continue
            shade = float(norm(Z[i, j])) if norm is not None else 0.5
            dark = abs(shade - 0.5) > 0.3 if value == "alignment" else shade < 0.45
            ax.text(
                10 ** (ls[j] + shift),
                g,
                f"{Z[i, j]:.2f}" if value == "alignment" else f"{Z[i, j]:.2g}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
            )


def phase_figure(df, acts, value, title, cmap, norm_fn, cbar_label, mark_min=False):
    """One panel per model: the cell means of ``value`` over σ × γ (log axes), labelled, with γ = σ²."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    n = len(acts)
    n_gam = df[df.gamma > 0].gamma.nunique()
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n + 0.6, max(4.2, 0.3 * n_gam + 1.8)), squeeze=False)
    for ax, act in zip(axes[0], acts):
        cells = df[(df.activation == act) & (df.layer == plot_layer(act)) & (df.gamma > 0) & (df.sigma > 0)]
        s = summarise(cells, ["sigma", "gamma"], value)
        sig, gam, Z = _grid(s, "mean")
        norm = norm_fn(Z)
        mesh = ax.pcolormesh(_edges(sig), _edges(gam), Z, cmap=cmap, norm=norm, shading="flat")
        if len(gam) * len(sig) <= 150:
            _cell_labels(ax, sig, gam, Z, norm, value)
        _theory_line(ax, sig, band_factor(cells) if {"w_sq", "fan_in"} <= set(cells) else None)
        if mark_min and np.isfinite(Z).any():
            i, j = np.unravel_index(np.nanargmin(Z), Z.shape)
            ax.plot(
                sig[j],
                gam[i],
                marker="*",
                ms=16,
                mfc="gold",
                mec="k",
                ls="none",
                label=f"lowest val. loss (σ={sig[j]:g}, γ={gam[i]:.3g})",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sig, [f"{x:g}" for x in sig])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlim(_edges(sig)[0], _edges(sig)[-1])
        ax.set_ylim(_edges(gam)[0], _edges(gam)[-1])
        ax.set_xlabel("parameter noise σ")
        ax.set_ylabel("weight decay γ")
        name = "linear regression" if act == LINREG else f"2-layer MLP, {act} (layer 2)"
        ax.set_title(name)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=9, ncol=1, frameon=False)
        fig.colorbar(mesh, ax=ax, label=cbar_label)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
