"""Part A (emergent Hebbian) figures: the noise σ × decay γ phase maps of hebb-phase, and the figures of
hebb-table, hebb-transient, hebb-classify and hebb-transformer."""

from __future__ import annotations

import numpy as np
import pandas as pd

from plasticlab.experiments.hebbian._common import summarise

_ORD = {0: "1st", 1: "2nd", 2: "3rd"}


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


def diverging_norm(Z):
    """Colour norm of an alignment map: −1 … 1 centred on 0 (``Z`` unused; the signature phase_figure asks)."""
    import matplotlib.colors as mcolors

    return mcolors.TwoSlopeNorm(vcenter=0.0, vmin=-1.0, vmax=1.0)


def log_norm(Z):
    """Log colour norm over the finite positive values of ``Z`` (None if there are none)."""
    import matplotlib.colors as mcolors

    Z = Z[np.isfinite(Z) & (Z > 0)]
    return mcolors.LogNorm(vmin=Z.min(), vmax=Z.max()) if len(Z) else None


def _mark_cell(ax, sig, gam, i: int, j: int, label: str) -> None:
    """Outline grid cell (i, j) so its printed value stays readable (a marker on it would cover it)."""
    from matplotlib.patches import Rectangle

    xe, ye = _edges(sig), _edges(gam)
    box = Rectangle((xe[j], ye[i]), xe[j + 1] - xe[j], ye[i + 1] - ye[i], fill=False, ec="gold", lw=2.5)
    ax.add_patch(box)
    ax.add_patch(Rectangle(box.get_xy(), box.get_width(), box.get_height(), fill=False, ec="k", lw=0.8))
    box.set_label(label)


def phase_figure(panels, value, title, cmap, norm_fn, cbar_label, mark_min=False):
    """One panel per model, ``panels``: (title, run table of the panel's layer, theory rescale k or None).
    The cell means of ``value`` over σ × γ (log axes), labelled, with γ = σ²; ``mark_min`` outlines the
    lowest cell."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    n = len(panels)
    n_gam = max([c.gamma.nunique() for _, c, _ in panels] + [1])
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n + 0.6, max(4.2, 0.3 * n_gam + 1.8)), squeeze=False)
    for ax, (name, cells, k) in zip(axes[0], panels):
        s = summarise(cells, ["sigma", "gamma"], value)
        sig, gam, Z = _grid(s, "mean")
        norm = norm_fn(Z)
        mesh = ax.pcolormesh(_edges(sig), _edges(gam), Z, cmap=cmap, norm=norm, shading="flat")
        if len(gam) * len(sig) <= 150:
            _cell_labels(ax, sig, gam, Z, norm, value)
        _theory_line(ax, sig, k)
        if mark_min and np.isfinite(Z).any():
            i, j = np.unravel_index(np.nanargmin(Z), Z.shape)
            _mark_cell(ax, sig, gam, int(i), int(j), f"lowest val. loss (σ={sig[j]:g}, γ={gam[i]:g})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sig, [f"{x:g}" for x in sig])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlim(_edges(sig)[0], _edges(sig)[-1])
        ax.set_ylim(_edges(gam)[0], _edges(gam)[-1])
        ax.set_xlabel("parameter noise σ")
        ax.set_ylabel("weight decay γ")
        ax.set_title(name)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=9, ncol=1, frameon=False)
        fig.colorbar(mesh, ax=ax, label=cbar_label)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def table_figure(s: pd.DataFrame, sel: pd.DataFrame, paper: pd.DataFrame, rows: dict, rules: list, layer: int):
    """hebb-table: alignment vs γ per rule, mean ± sem (left) and every seed (right), beside the paper's
    Table 1 rows (``paper``: row, gamma, alignment); ``rows`` maps a rule to the paper row it is set beside,
    and each paper row is drawn once, in the colour of its first rule."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    gpos = {g: i for i, g in enumerate(sorted(set(s.gamma)))}
    drawn: set[str] = set()
    for i, rule in enumerate(rules):
        r = s[s.rule == rule]
        col = f"C{i}"
        axes[0].errorbar(
            [gpos[g] for g in r.gamma],
            r["mean"],
            yerr=r["sem"].fillna(0),
            fmt="o-",
            color=col,
            capsize=3,
            label=f"{rule} (ours)",
        )
        row = rows.get(rule)
        if row is not None and row not in drawn:
            drawn.add(row)
            same = [r for r in rules if rows.get(r) == row]  # one paper row set beside several rules
            pr = paper[(paper.row == row) & paper.gamma.isin(gpos)]
            axes[0].plot(
                [gpos[g] for g in pr.gamma],
                pr.alignment,
                "s--",
                color=col,
                mfc="none",
                alpha=0.7,
                label=f"paper's {row} row" + (f" ({', '.join(same)})" if len(same) > 1 else ""),
            )
        pts = sel[sel.rule == rule]
        axes[1].scatter(
            [gpos[g] + 0.08 * (i - 1.5) for g in pts.gamma], pts.alignment, s=14, color=col, label=rule
        )
    for ax in axes:
        ax.set_xticks(list(gpos.values()), [f"{g:g}" for g in gpos])
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("weight decay γ")
        ax.set_ylabel(f"layer {layer + 1} Hebbian alignment")
    axes[0].set_title("mean ± sem over seeds; dashed: paper's Table 1")
    axes[1].set_title("every seed")
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def transient_figure(tr: pd.DataFrame, layers: list, late_step: float, steps: int):
    """hebb-transient: alignment vs training step (log axis) per layer, the late window shaded."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(layers), figsize=(4.3 * len(layers), 3.8), squeeze=False, sharey=True)
    for ax, l in zip(axes[0], layers):
        for i, (key, g) in enumerate(tr[tr.layer == l].groupby(["rule", "gamma"])):
            c = g.groupby("step").alignment.agg(["mean", "std"])
            x = np.maximum(c.index.values, 1)
            ax.plot(x, c["mean"], color=f"C{i}", label=f"{key[0]}, γ={key[1]:g}")
            ax.fill_between(x, c["mean"] - c["std"], c["mean"] + c["std"], color=f"C{i}", alpha=0.15, lw=0)
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvspan(late_step, steps, color="k", alpha=0.05, lw=0)
        ax.set_xscale("log")
        ax.set_xlabel("training step")
        ax.set_title(f"layer {l} ({_ORD.get(l, str(l + 1) + 'th')} weight matrix)")
    axes[0][0].set_ylabel("Hebbian alignment (mean ± sd over seeds)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def neuron_figure(nr: pd.DataFrame, layers: list):
    """hebb-transient: histogram of the fraction of late checkpoints each neuron's update was Hebbian."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    hl = 1 if len(layers) > 1 else 0
    for i, (key, g) in enumerate(nr[nr.layer == hl].groupby(["rule", "gamma"])):
        ax.hist(
            g.frac_hebbian.dropna(),
            bins=np.linspace(0, 1, 21).tolist(),
            histtype="step",
            lw=1.5,
            color=f"C{i}",
            label=f"{key[0]}, γ={key[1]:g}",
        )
    ax.set_xlabel("fraction of late checkpoints a neuron's update was Hebbian")
    ax.set_ylabel("neurons")
    # two lines: on one the title is wider than the axes and is cut at the figure's edge
    ax.set_title(f"layer {hl} ({_ORD.get(hl, str(hl + 1) + 'th')} weight matrix)\nneurons near stationarity")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def classify_figure(s: pd.DataFrame, acc: pd.DataFrame, gam: list):
    """hebb-classify: alignment per rule and layer (left) and validation accuracy (right) vs γ."""
    import matplotlib.pyplot as plt

    pos = {g: i for i, g in enumerate(gam)}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, ((rule, l), g) in enumerate(s.groupby(["rule", "layer"])):
        axes[0].errorbar(
            [pos[x] for x in g.gamma],
            g["mean"],
            yerr=g["sem"].fillna(0),
            fmt="o-",
            capsize=3,
            color=f"C{i}",
            label=f"{rule}, layer {l + 1}",
        )
    for i, (rule, g) in enumerate(acc.groupby("rule")):
        axes[1].errorbar(
            [pos[x] for x in g.gamma],
            g.val_acc,
            yerr=g.val_acc_sem.fillna(0),
            fmt="o-",
            capsize=3,
            color=f"C{i}",
            label=rule,
        )
    for ax in axes:
        ax.set_xticks(list(pos.values()), [f"{x:g}" for x in gam])
        ax.set_xlabel("weight decay γ")
        ax.legend(fontsize=8)
    axes[0].axhline(0, color="grey", lw=0.8)
    axes[0].set_ylabel("Hebbian alignment")
    axes[1].set_ylabel("validation accuracy")
    fig.tight_layout()
    return fig


def transformer_figure(mean_all: pd.DataFrame, second: pd.DataFrame, paper: pd.DataFrame, gammas: list):
    """hebb-transformer: late alignment vs γ per rule, all layers (± s.e.m.), 2nd layer, the paper's cells."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    xs = {g: i for i, g in enumerate(gammas)}
    for i, (rule, curve) in enumerate(mean_all.groupby("rule")):
        color = f"C{i}"
        x = curve.gamma.map(xs)
        ax.errorbar(x, curve.alignment, yerr=curve["err"], marker="o", color=color, label=f"{rule} (all layers)")
        sc = second[second.rule == rule]
        ax.plot(
            sc.gamma.map(xs), sc.alignment, ls="--", marker="s", ms=4, color=color, label=f"{rule} (2nd layer)"
        )
        pp = paper[paper.rule == rule]
        ax.plot(pp.gamma.map(xs), pp.alignment, ls=":", marker="x", color=color, alpha=0.6, label=f"{rule}, paper")
    ax.set_xticks(list(xs.values()), [f"{g:g}" for g in xs])
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("weight decay γ")
    ax.set_ylabel("Hebbian alignment (late)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "every run diverged", transform=ax.transAxes, ha="center")
    return fig


def dfa_figure(d: pd.DataFrame, setting: list[str]):
    """hebb-dfa: layer-2 alignment over training per ``setting`` (left) and vs the mechanism's predictor
    (right); ``d``: the layer-2 rows of runs that did not diverge."""
    import matplotlib.pyplot as plt

    from plasticlab.experiments.hebbian.paper import TABLE1_MLP_DFA0

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (key, s) in enumerate(d.groupby(setting)):
        tr = s.groupby("step").alignment.mean()
        axes[0].plot(
            tr.index + 1,
            tr.values,
            color=f"C{i % 10}",
            lw=1,
            label=", ".join(f"{k} {v:g}" for k, v in zip(setting, key)),
        )
        late = s[s.step >= 100]
        axes[1].scatter(late.c_H_target * late.c_G_target, late.alignment, s=3, alpha=0.3, color=f"C{i % 10}")
    axes[0].axhline(TABLE1_MLP_DFA0, color="k", ls="--", lw=1, label=f"paper {TABLE1_MLP_DFA0:g}")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("layer-2 alignment (mean over seeds)")
    axes[0].legend(fontsize=6)
    axes[1].set_xlabel("cos(H, ⟨B·y h_aᵀ⟩) · cos(g, ⟨(B·y ⊙ φ′) h_aᵀ⟩)")
    axes[1].set_ylabel("layer-2 alignment")
    fig.tight_layout()
    return fig


def adam_figure(s: pd.DataFrame, paper: dict, layer: int):
    """hebb-adam: alignment of −∂ℓ/∂W vs γ per (rule, lr), collapsed seeds noted, the paper's Adam row."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    gpos = {g: i for i, g in enumerate(sorted(set(s.gamma)))}
    for i, ((rule, lr), r) in enumerate(s.groupby(["rule", "lr"])):
        ax.errorbar(
            [gpos[g] for g in r.gamma],
            r.alignment,
            yerr=r["sem"].fillna(0),
            fmt="o-",
            capsize=3,
            color=f"C{i}",
            label=f"{rule}, lr {lr:g}",
        )
        for g, c in zip(r.gamma, r.collapsed):
            if c:
                ax.annotate(f"{c} collapsed", (gpos[g], 0), color=f"C{i}", fontsize=7)
    pg = [g for g in paper if g in gpos and np.isfinite(paper[g])]
    ax.plot([gpos[g] for g in pg], [paper[g] for g in pg], "ks--", mfc="none", label="paper (Table 1)")
    ax.set_xticks(list(gpos.values()), [f"{g:g}" for g in gpos])
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("weight decay γ")
    ax.set_ylabel(f"layer {layer + 1} alignment of −∂ℓ/∂W")
    ax.legend(fontsize=7)
    return fig


def theorem_figure(ok: pd.DataFrame, rules: list):
    """hebb-theorem: lhs vs rhs of the stationarity identity, every run × layer (``ok``: not diverged)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 5))
    markers = dict(zip(rules, "osD^vPX*"))
    for rule in rules:
        s = ok[ok.rule == rule]
        if len(s):
            ax.scatter(s.rhs, s.lhs, marker=markers.get(rule, "o"), s=28, alpha=0.75, label=rule)
    lim = ok[["lhs", "rhs"]].abs().replace(0, np.nan).stack().dropna()
    if len(lim):
        xs = np.geomspace(lim.min() / 1.5, lim.max() * 1.5, 10)
        ax.plot(xs, xs, "k--", lw=1, label="identity: lhs = rhs")
    ax.set_xscale("log")
    # linear only well below every rhs, so the identity line stays straight where the points are
    if len(ok) and (ok.lhs > 0).all():
        ax.set_yscale("log")
    else:
        ax.set_yscale("symlog", linthresh=max(float(ok.rhs.abs().min()) / 10 if len(ok) else 1e-6, 1e-12))
    ax.set_xlabel("γ E‖h_b‖²  (rhs)")
    ax.set_ylabel("⟨E g, E h_b h_aᵀ⟩  (lhs)")
    ax.set_title("stationarity identity, every run × layer")
    ax.legend(fontsize=8)
    return fig


def valopt_figure(grids: dict, best: dict):
    """hebb-valopt: validation loss beside alignment over σ × γ per setting (``grids``: setting -> table of
    sigma, gamma, val_loss, alignment), ★ at the validation optimum (``best``: setting -> (σ, γ))."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(grids), 2, figsize=(9, 3 * len(grids)), squeeze=False)
    for row, (s, g) in zip(axes, grids.items()):
        for ax, col, cmap in zip(row, ["val_loss", "alignment"], ["viridis", "RdBu_r"]):
            piv = g.pivot(index="sigma", columns="gamma", values=col)
            kw = dict(vmin=-1, vmax=1) if col == "alignment" else {}
            im = ax.imshow(piv.values, origin="lower", aspect="auto", cmap=cmap, **kw)
            ax.set_xticks(range(piv.shape[1]), [f"{c:g}" for c in piv.columns], fontsize=7)
            ax.set_yticks(range(piv.shape[0]), [f"{c:g}" for c in piv.index], fontsize=7)
            sigma, gamma = best[s]
            if sigma in piv.index and gamma in piv.columns:
                ax.plot(list(piv.columns).index(gamma), list(piv.index).index(sigma), "k*", ms=12)
            ax.set_title(f"{s}: {col}", fontsize=9)
            ax.set_xlabel("γ")
            ax.set_ylabel("σ")
            fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig
