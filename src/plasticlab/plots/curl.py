"""Part B (curl descent) figures: heatmaps over (c, α) with the theory boundary drawn on them."""

from __future__ import annotations

import numpy as np
import pandas as pd


def heatmap(ax, piv: pd.DataFrame, xlabel: str, ylabel: str, vmin=None, vmax=None):
    """Draw a pivot table (index = y, columns = x) as a cell-centred colour map on ``ax``."""
    xs, ys = piv.columns.to_numpy(float), piv.index.to_numpy(float)
    im = ax.pcolormesh(
        np.arange(len(xs) + 1) - 0.5,
        np.arange(len(ys) + 1) - 0.5,
        piv.to_numpy(float),
        cmap="viridis",
        vmin=vmin,
        vmax=vmax,
        shading="flat",
    )
    step = max(1, len(xs) // 6)
    ax.set_xticks(range(0, len(xs), step), [f"{x:.2g}" for x in xs[::step]])
    ystep = max(1, len(ys) // 6)
    ax.set_yticks(range(0, len(ys), ystep), [f"{y:.2g}" for y in ys[::ystep]])
    ax.set(xlabel=xlabel, ylabel=ylabel)
    return im, xs, ys


def boundary_on_index_axes(ax, xs, ys, alpha_star, label="theory α* (large N)"):
    """Draw α*(x) on a heatmap whose axes are cell indices (x log-spaced, α linear)."""
    lx = np.log(xs)
    fine = np.exp(np.linspace(lx[0], lx[-1], 400))
    a = alpha_star(fine)
    if a is None:
        return
    xi = np.interp(np.log(fine), lx, np.arange(len(xs)))
    yi = np.interp(a, ys, np.arange(len(ys)))
    ax.plot(xi, yi, "w--", lw=2, label=label)
    ax.legend(loc="upper right", fontsize=7)
