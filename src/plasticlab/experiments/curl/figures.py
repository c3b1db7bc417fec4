"""Part B (curl descent) figures: heatmaps over (c, α) with the theory boundary drawn on them, the
curl-theory phase diagrams and λ_min curves, the curl-speedup panels and the curl-chaos q / λ / state panels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from plasticlab.experiments.curl._common import TOTAL
from plasticlab.experiments.curl.paper import C_RANGE, SYMBOL
from plasticlab.experiments.curl.paper import THRESHOLDS as PAPER
from plasticlab.metrics.chaos import LAMBDA_POSITIVE, STATES
from plasticlab.theory import LAYERS


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


def hidden_heatmaps(df: pd.DataFrame, acts: list, alpha_star):
    """curl-hidden: median log10 test error over (c, α_h), one panel per activation on one colour scale,
    with the theory boundary ``alpha_star(c)``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(acts), figsize=(5 * len(acts), 4), squeeze=False)
    vmin, vmax = np.nanmin(df.log10_test_error), np.nanmax(df.log10_test_error)
    for ax, act in zip(axes[0], acts):
        g = df[df.activation == act]
        piv = g.pivot_table(index="alpha_h", columns="c", values="log10_test_error", aggfunc="median")
        im, xs, ys = heatmap(ax, piv, "c = M/N", "α_h (flipped input fraction)", vmin, vmax)
        boundary_on_index_axes(ax, xs, ys, alpha_star)
        ax.set_title(f"{act}: log10 test error")
    cb = fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85)
    cb.set_label("log10 final test error (median over seeds)")
    return fig


def readout_heatmaps(g: pd.DataFrame, act: str, alpha_star):
    """curl-readout, one activation: median log10 final test error and peak training error over (c, α_r),
    with the theory boundary ``alpha_star(c)``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    for ax, col, title in (
        (axes[0], "log10_test_error", "final test error"),
        (axes[1], "log10_peak_train_error", "peak training error"),
    ):
        piv = g.pivot_table(index="alpha_r", columns="c", values=col, aggfunc="median")
        im, xs, ys = heatmap(ax, piv, "c = M/N", "α_r (flipped readout fraction)")
        boundary_on_index_axes(ax, xs, ys, alpha_star)
        ax.set_title(f"{act}: log10 {title}")
        fig.colorbar(im, ax=ax, shrink=0.85).set_label(f"log10 {title} (median over seeds)")
    return fig


def _phase_panel(ax, t, s, layer, sizes, colors, xlim, top):
    ax.fill_between(t.c, 0, t.alpha, color="tab:green", alpha=0.15, lw=0, label="stable (theory)")
    ax.fill_between(t.c, t.alpha, top, color="tab:red", alpha=0.08, lw=0, label="unstable (theory)")
    ax.plot(t.c, t.alpha, "k-", lw=1.6, label="large-N boundary α*")
    for N, col in zip(sizes, colors):
        g = s[s.N == N]
        if g.empty:
            continue
        ax.scatter(g.c, g.alpha, s=8, color=col, alpha=0.35, lw=0)
        m = g.groupby("c").alpha.agg(["mean", "std"]).reset_index()
        ax.errorbar(
            m.c,
            m["mean"],
            yerr=m["std"].fillna(0),
            fmt="o-",
            ms=4,
            lw=1,
            color=col,
            capsize=2,
            label=f"sampled N={N} (dots: seeds; mean ± sd)",
        )
    pc = np.array(list(PAPER[layer]))
    ax.scatter(
        pc,
        [PAPER[layer][c] for c in pc],
        marker="s",
        s=45,
        facecolor="none",
        edgecolor="k",
        zorder=5,
        label="paper's listed values",
    )
    ax.set_xscale("log")
    ax.set_xlim(*xlim)
    ax.set_ylim(0, top)
    ax.set_xlabel("c = M / N (inputs / hidden)")
    ax.set_ylabel(f"flipped fraction {SYMBOL[layer]}")


def theory_phase_figure(df: pd.DataFrame):
    """curl-theory: large-N boundary α*(c) per layer, sampled finite-N thresholds and the paper's values."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    th = df[df.source == "theory"]
    thr = df[df.source == "sampled-threshold"]
    sizes = sorted(thr.N.unique())
    colors = plt.cm.viridis(np.linspace(0.15, 0.85, max(len(sizes), 1)))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    panels = [
        ("hidden", C_RANGE, "hidden flips: A = D1 + W1ᵀW1"),
        ("hidden", None, "hidden flips, zoom on the sampled range"),
        ("readout", C_RANGE, "readout flips: A = I + W1ᵀD2W1"),
    ]
    for ax, (layer, full, title) in zip(axes, panels):
        t = th[th.layer == layer].sort_values("c")
        s = thr[thr.layer == layer]
        # the zoom: the hidden boundary lives in c ∈ [¼, ⅔]; the full range squeezes it into a cliff
        zoom = (s.c.min() / 1.25, s.c.max() * 1.25) if not s.empty else (0.1, 1.5)
        xlim = zoom if full is None else full
        _phase_panel(ax, t, s, layer, sizes, colors, xlim, 1.02 if layer == "hidden" else 0.55)
        if full is None:
            ax.set_xticks([x for x in (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 1.5) if xlim[0] <= x <= xlim[1]])
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title)
    handles, labels = axes[2].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    return fig


def theory_curve_figure(df: pd.DataFrame, focus: dict):
    """curl-theory: λ_min(A) vs flipped fraction at finite N, one panel per layer at its ``focus`` c."""
    import matplotlib.pyplot as plt

    smp = df[df.source == "sampled"]
    thr = df[df.source == "sampled-threshold"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, layer in zip(axes, LAYERS):
        s = smp[(smp.layer == layer) & (smp.c_target == focus[layer])]
        sizes = sorted(s.N.unique())
        colors = plt.cm.viridis(np.linspace(0.15, 0.85, max(len(sizes), 1)))
        for N, col in zip(sizes, colors):
            g = s[s.N == N].groupby("alpha").min_eig.agg(["mean", "min", "max"]).reset_index()
            ax.plot(g.alpha, g["mean"], "o-", ms=3, color=col, label=f"N={N}, M={int(s[s.N == N].M.iloc[0])}")
            ax.fill_between(g.alpha, g["min"], g["max"], color=col, alpha=0.2, lw=0)
            a = thr[(thr.layer == layer) & (thr.c_target == focus[layer]) & (thr.N == N)].alpha
            ax.plot(a.mean(), 0, "v", ms=8, color=col, mec="k", mew=0.5, zorder=5)
        if not s.empty:
            ax.axvline(s.alpha_theory.iloc[0], color="k", ls="--", lw=1, label=f"large-N {SYMBOL[layer]}*")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel(f"flipped fraction {SYMBOL[layer]}")
        ax.set_ylabel("λ_min(A)")
        ax.set_title(f"{layer} flips at c ≈ {focus[layer]:g} (band: seed range)")
        if layer == "readout" and not s.empty:
            ax.set_xlim(0, 0.6)
            shown = s[s.alpha <= 0.6].min_eig
            pad = 0.05 * (shown.max() - shown.min())
            ax.set_ylim(shown.min() - pad, shown.max() + pad)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def speedup_p_figure(curves: dict, p: dict, paper: pd.DataFrame):
    """curl-speedup: median epochs vs P per activation; ours filled circles, solid with the norm constraint
    and dotted without (points only below 3 P values); the paper's open squares, dashed."""
    import matplotlib.pyplot as plt

    acts = p["activations"]
    fig, axes = plt.subplots(1, len(acts), figsize=(4.6 * len(acts), 3.6), squeeze=False)
    for ax, act in zip(axes[0], acts):
        for norm, ls in ((True, "-"), (False, ":")):
            m = curves.get((act, norm))
            for rule, col in (("gd", "C0"), ("curl", "C3")):
                if m is None or rule not in m:
                    continue
                # fewer than 3 P values: points only, a line through two would invent the curve's shape
                few = "" if len(m) >= 3 else f", P = {', '.join(str(x) for x in m.P)} only"
                label = f"{rule}, ours, norm constraint {'on' if norm else 'off'}{few}"
                ax.plot(
                    m.P, m[rule], linestyle=ls if len(m) >= 3 else "none", marker="o", ms=7, color=col, label=label
                )
        if act == "tanh":
            ax.plot(paper.P, paper.gd, "s--", mfc="none", color="C0", alpha=0.6, label="gd, paper")
            ax.plot(paper.P, paper.curl, "s--", mfc="none", color="C3", alpha=0.6, label="curl, paper")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="training-set size P",
            ylabel=f"median epochs to train error {p['threshold']:g}",
            title=f"{act}; curl: k = {p['k']} flipped readout, init scale r = {p['r']:g}",
        )
        _integer_epochs(ax)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _integer_epochs(ax) -> None:
    """Epoch ticks as plain integers (1000, 2000), never 10³ or 1.02e+03."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda y, _: f"{y:.0f}")
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: f"{y:.0f}" if str(int(y))[0] in "25" else ""))


def _sweep_figure(draw, xlabel: str, title: str):
    """A small log-y panel of median epochs vs one swept quantity; ``draw(ax)`` draws the curves."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    draw(ax)
    ax.set(yscale="log", xlabel=xlabel, ylabel="median epochs to train error 1e-3", title=title)
    _integer_epochs(ax)
    ax.legend(fontsize=7)
    return fig


def speedup_k_figure(med: pd.DataFrame, ks: pd.DataFrame, p: dict, paper: pd.DataFrame):
    """curl-speedup: curl's median epochs vs flipped readout neurons k, GD's median dotted, paper squares."""

    def draw(ax):
        for (act, norm), g in ks.groupby(["activation", "norm_constraint"]):
            ax.plot(g.k_readout, g["median"], "-o", label=f"{act}, norm constraint {'on' if norm else 'off'}")
            gd = med[
                (med.activation == act)
                & (med.norm_constraint == norm)
                & (p["sweep_P"] == med.P)
                & (med.rule == "gd")
                & (med.init_scale == p["r"])
            ]["median"]
            ax.axhline(float(gd.iloc[0]), ls=":", color=ax.lines[-1].get_color())
        ax.plot(paper.k_readout, paper.curl, "s", mfc="none", color="k", label="paper (tanh, norm constraint on)")

    return _sweep_figure(
        draw, f"flipped readout neurons k (of N = {p['N']})", f"P = {p['sweep_P']}, r = {p['r']:g}; dotted: GD"
    )


def speedup_r_figure(rs: pd.DataFrame, p: dict, paper: pd.DataFrame):
    """curl-speedup: median epochs vs student init scale r per rule, the paper's squares."""

    def draw(ax):
        for (act, norm, rule), g in rs.groupby(["activation", "norm_constraint", "rule"]):
            label = f"{rule}, {act}, norm constraint {'on' if norm else 'off'}"
            ax.plot(g.init_scale, g["median"], "-o", label=label)
        ax.plot(paper.init_scale, paper.gd, "s", mfc="none", color="C0", label="gd (paper)")
        ax.plot(paper.init_scale, paper.curl, "s", mfc="none", color="C3", label="curl (paper)")

    return _sweep_figure(
        draw, "student init scale r", f"P = {p['sweep_P']}; curl: k = {p['k']} flipped readout neuron(s)"
    )


def chaos_figure(d: pd.DataFrame, cs: list):
    """curl-chaos: mean q and median q(W2W1) (top) and λ of the function (bottom) vs α_h, one column per c and
    one colour per η; dashed: the large-N threshold α_h*(c). ``d``: runs with ``alpha_star`` (with_state)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(cs), figsize=(4.2 * len(cs), 7), squeeze=False)
    colour = {eta: f"C{i}" for i, eta in enumerate(sorted(d.eta.unique()))}
    for j, c in enumerate(cs):
        s = d[d.c == float(c)]
        for eta, e in s.groupby("eta"):
            m = e.groupby("alpha_h_eff").agg(
                q=("q", "mean"), qf=("q_function", "median"), lam=("lyapunov", "median")
            )
            col = colour[eta]  # one colour per η across panels
            axes[0, j].plot(m.index, m.q.clip(lower=1e-32), "o-", color=col, label=f"η = {eta:g}: mean q")
            axes[0, j].plot(m.index, m.qf.clip(lower=1e-32), "x:", color=col, label=f"η = {eta:g}: median q(W2W1)")
            axes[1, j].plot(e.alpha_h_eff, e.lyapunov, ".", color=col, alpha=0.4)
            axes[1, j].plot(m.index, m.lam, "o-", color=col, label=f"η = {eta:g} (median)")
        for ax in axes[:, j]:
            ax.axvline(float(s.alpha_star.iloc[0]), color="k", ls="--", lw=1)
            ax.set_xlabel("α_h = k1/M")
        axes[0, j].set_yscale("log")
        axes[0, j].set_title(f"c = {c:g} (M, N) = ({int(s.M.iloc[0])}, {int(s.N.iloc[0])})")
        axes[1, j].axhline(LAMBDA_POSITIVE, color="grey", ls=":", lw=1)
        axes[1, j].axhline(0, color="k", lw=0.6)
        axes[1, j].set_yscale("symlog", linthresh=1e-4)
    axes[0, 0].set_ylabel("q")
    axes[1, 0].set_ylabel("λ of the function [1/epoch-eq.]")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def q_vs_c_figure(g: pd.DataFrame):
    """curl-chaos: the paper's q-vs-c curves (runs ``g`` at η = 0.1); filled markers where α_h > α_h*(c)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (a, s) in enumerate(g.groupby("alpha_h")):
        m = s.groupby("c").agg(q=("q", "mean"), above=("above", "first"))
        q = m.q.clip(lower=1e-32)
        ax.plot(m.index, q, "-", color=f"C{i}", label=f"α_h = {a:g}")
        ax.plot(m.index[m.above], q[m.above], "o", color=f"C{i}")
        ax.plot(m.index[~m.above], q[~m.above], "o", mfc="none", color=f"C{i}")
    ax.set(xscale="log", yscale="log", xlabel=f"c = M/N (M + N = {TOTAL})", ylabel="mean q over runs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def state_figure(d: pd.DataFrame, cs: list):
    """curl-chaos: stacked run counts per state for every (α_h, η), one panel per c; the legend sits beside
    the panels (never over a bar) and the count axis has integer ticks only."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(cs), figsize=(4.2 * len(cs) + 1.4, 3.6), squeeze=False, layout="constrained")
    colours = dict(zip(STATES, ["C2", "C1", "C0", "C3", "C4", "k"]))
    for ax, c in zip(axes[0], cs):
        counts = d[d.c == c].groupby(["alpha_h", "eta"]).state.value_counts().unstack(fill_value=0)
        bottom = np.zeros(len(counts))
        labels = [f"{a:g}\nη={e:g}" for a, e in counts.index]
        for st in STATES:
            if st in counts:
                ax.bar(labels, counts[st], bottom=bottom, color=colours[st], label=st)
                bottom += counts[st].to_numpy()
        step = max(1, len(labels) // 8)  # a paper-size grid has ~60 bars: label every step-th
        ax.set_xticks(range(0, len(labels), step), labels[::step])
        ax.set_title(f"c = {c:g}")
        ax.set_xlabel("α_h, step size")
        ax.tick_params(axis="x", labelsize=7)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylabel("runs")
    handles = [Patch(color=colours[st], label=st) for st in STATES]
    fig.legend(handles=handles, fontsize=7, loc="outside right upper", title="state", title_fontsize=7)
    return fig
