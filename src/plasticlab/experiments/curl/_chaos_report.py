"""curl-chaos claims and report: every number from the run's own table.

``claims(df, p)`` is pure (the scoreboard calls it); ``write_report`` adds figures and tables. The run state is
re-derived here from the stored columns with ``metrics.chaos.classify_state``, so a report always applies the
tests documented in docs/chaos.md, whatever thresholds were current when a chunk was computed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from plasticlab.metrics.chaos import LAMBDA_POSITIVE, STATES, classify_state
from plasticlab.study.claims import NKC, AllCells, Claim, fraction

Q_PLATEAU = 1e-4  # the paper's plateau is q ≈ 1e-3…1 (Fig. 3b); below-threshold runs sit near 1e-28
Q_FLAT = 1e-12
FIG = "Fig. 3b"


def with_state(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``state`` recomputed from its columns and the large-N threshold α_h*(c) beside each run."""
    from plasticlab.theory import critical_flip_fraction

    state = classify_state(df.diverged, df.q, df.q_function, df.period2_residual, df.step_change, df.lyapunov)
    thr = np.asarray(critical_flip_fraction(df.c.to_numpy(dtype=float), "hidden"), dtype=float)
    return df.assign(state=state, alpha_star=thr, above=df.alpha_h_eff.to_numpy() > thr)


def size_of(df: pd.DataFrame, p: dict) -> str:
    """What the table was run at, in words (the scoreboard's size column)."""
    full = len(p["seeds"]) >= 10 and p["epochs"] >= 100000 and len(p["alphas"]) >= 21
    grid = (
        f"{len(p['seeds'])} seeds, {p['epochs']:g} epoch-eq., α_h ∈ {{{', '.join(f'{a:g}' for a in p['alphas'])}}}"
    )
    return "paper" if full else f"reduced: {grid}"


def _plateau_cells(d: pd.DataFrame, every_above: bool = False) -> tuple[list[bool], list[str]]:
    """Per c at η = 0.1 (the paper's step): mean q below 1e-12 at every α_h under the large-N threshold, and
    above 1e-4 at the largest α_h run (when it is above the threshold), or with ``every_above`` at every α_h
    above it (the q-vs-c curves, two α_h per c)."""
    ok, notes = [], []
    for c, s in d.groupby("c"):
        means = s.groupby("alpha_h_eff").q.mean()
        thr = float(s.alpha_star.iloc[0])
        for a, q in means[means.index < thr].items():
            ok.append(bool(q < Q_FLAT))
            notes.append(f"c={c:g} α_h={a:.3g}: ⟨q⟩={q:.2g}")
        top = float(means.index.max())
        for a in means.index[means.index > thr] if every_above else [top] if top > thr else []:
            ok.append(bool(means[a] > Q_PLATEAU))
            notes.append(f"c={c:g} α_h={a:.3g}: ⟨q⟩={means[a]:.2g}")
    return ok, notes


def _q_vs_c_runs(d: pd.DataFrame, p: dict) -> pd.DataFrame:
    """The runs of the paper's q-vs-c curves: η = 0.1, c in ``c_grid``, α_h in ``c_alphas``."""
    on_grid = d.c.isin([float(c) for c in p["c_grid"]]) & d.alpha_h.isin([float(a) for a in p["c_alphas"]])
    return d[np.isclose(d.eta, 0.1) & on_grid]


def _q_claim(text: str, cells: pd.DataFrame, size: str, every_above: bool = False) -> Claim:
    """A claim on which side of the threshold ⟨q⟩ lies, over the (c, α_h) cells of ``cells`` (η = 0.1)."""
    ok, notes = _plateau_cells(cells[~cells.diverged], every_above)
    frac, n = fraction(ok)
    return Claim(
        text,
        NKC,
        FIG,
        math.nan,
        frac,
        math.nan,
        n,
        size,
        AllCells("⟨q⟩ on the right side of the threshold"),
        diverged=int(cells.diverged.sum()),
        note="; ".join(notes),
    )


def claims(df: pd.DataFrame, p: dict) -> list[Claim]:
    """The paper's claims (Ninou, Kadmon & Cayco-Gajic 2025, Fig. 3b) beside ours, verdicts by the shared rule."""
    d = with_state(df)
    size = size_of(df, p)
    out = []
    paper_eta = d[np.isclose(d.eta, 0.1) & d.c.isin([float(c) for c in p["cs"]])]
    out.append(
        _q_claim(
            "q plateau above threshold: mean q < 1e-12 below α_h*(c), > 1e-4 at the largest α_h (η = 0.1)",
            paper_eta,
            size,
        )
    )
    alphas = ", ".join(f"{a:g}" for a in p["c_alphas"])
    out.append(
        _q_claim(
            f"q vs c at α_h ∈ {{{alphas}}} (η = 0.1): mean q < 1e-12 where α_h < α_h*(c), > 1e-4 where above",
            _q_vs_c_runs(d, p),
            size,
            every_above=True,
        )
    )
    for eta, s in d.groupby("eta"):
        plateau = s[(s.q > Q_PLATEAU) & ~s.diverged]
        frac, n = fraction(plateau.state == "irregular")
        mix = ", ".join(f"{k} {v}" for k, v in plateau.state.value_counts().items())
        out.append(
            Claim(
                f"the plateau is chaos at η = {eta:g}: runs with q > 1e-4 are irregular (λ > {LAMBDA_POSITIVE:g})",
                NKC,
                FIG,
                1.0,
                frac,
                math.nan,
                n,
                size,
                AllCells("run irregular"),
                diverged=int(s.diverged.sum()),
                note=f"states of the q > 1e-4 runs: {mix or 'none'}",
            )
        )
    below = d[~d.above]
    # converged is decided by q alone: at a point converged for 1e5 epochs the function separation of the
    # Lyapunov copy has shrunk to rounding, so λ there is ≈ 0 ± rounding, not the transverse rate
    frac, n = fraction(below.state == "converged")
    out.append(
        Claim(
            "below the large-N threshold α_h*(c) runs from the teacher stay converged (q < 1e-12)",
            NKC,
            "Sec. 4 (stability of the solution manifold)",
            math.nan,
            frac,
            math.nan,
            n,
            size,
            AllCells("run converged"),
            diverged=int(below.diverged.sum()),
        )
    )
    for a, want in ((0.25, "converged"), (0.4, "irregular")):
        pt = d[np.isclose(d.c, 0.4) & np.isclose(d.alpha_h, a) & np.isclose(d.eta, 0.1)]
        frac, n = fraction(pt.state == want)
        out.append(
            Claim(
                f"finite N (M = 62, N = 157, η = 0.1): α_h = {a:g} is {want}",
                NKC,
                "Sec. 4 (finite N)",
                1.0,
                frac,
                math.nan,
                n,
                size,
                AllCells(f"run {want}"),
            )
        )
    return out


def state_mix(d: pd.DataFrame) -> pd.DataFrame:
    """Per (c, α_h, η): run counts per state, median λ, mean and median q, median q_function."""
    g = d.groupby(["c", "alpha_h", "eta"])
    counts = g.state.value_counts().unstack(fill_value=0).reindex(columns=list(STATES), fill_value=0)
    stats = g.agg(
        runs=("seed", "size"),
        k1=("k1", "first"),
        median_lyapunov=("lyapunov", "median"),
        mean_q=("q", "mean"),
        median_q=("q", "median"),
        median_q_function=("q_function", "median"),
        median_error=("train_error", "median"),
    )
    counts = counts.loc[:, (counts > 0).any()]
    return stats.join(counts).reset_index()


def _figures(rep, d: pd.DataFrame, p: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cs = [c for c in p["cs"] if (d.c == float(c)).any()]
    if not cs:
        return
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
    rep.figure(
        fig,
        "chaos_vs_alpha",
        "q (top; mean over runs as the paper plots it, and q of W2W1) and λ of "
        "the function (bottom; dots: runs) vs α_h per η; dashed: large-N threshold α_h*(c)",
    )
    plt.close(fig)


def _q_vs_c_figure(rep, d: pd.DataFrame, p: dict) -> None:
    """The paper's q-vs-c curves (η = 0.1, α_h ∈ c_alphas); filled markers where α_h is above α_h*(c)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = _q_vs_c_runs(d, p)
    if g.c.nunique() < 2:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (a, s) in enumerate(g.groupby("alpha_h")):
        m = s.groupby("c").agg(q=("q", "mean"), above=("above", "first"))
        q = m.q.clip(lower=1e-32)
        ax.plot(m.index, q, "-", color=f"C{i}", label=f"α_h = {a:g}")
        ax.plot(m.index[m.above], q[m.above], "o", color=f"C{i}")
        ax.plot(m.index[~m.above], q[~m.above], "o", mfc="none", color=f"C{i}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("c = M/N (M + N = 219)")
    ax.set_ylabel("mean q over runs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    rep.figure(
        fig,
        "q_vs_c",
        "q vs c at η = 0.1 (mean over runs); filled: α_h above the large-N threshold α_h*(c), open: below",
    )
    plt.close(fig)


def _state_figure(rep, d: pd.DataFrame, p: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cs = sorted(set(d.c.unique()) & {float(c) for c in p["cs"]}) or sorted(d.c.unique())
    fig, axes = plt.subplots(1, len(cs), figsize=(4.2 * len(cs), 3.6), squeeze=False)
    colours = dict(zip(STATES, ["C2", "C1", "C0", "C3", "C4", "k"]))
    for ax, c in zip(axes[0], cs):
        counts = d[d.c == c].groupby(["alpha_h", "eta"]).state.value_counts().unstack(fill_value=0)
        bottom = np.zeros(len(counts))
        labels = [f"{a:g}\nη={e:g}" for a, e in counts.index]
        for st in STATES:
            if st in counts:
                ax.bar(labels, counts[st], bottom=bottom, color=colours[st], label=st)
                bottom += counts[st].to_numpy()
        ax.set_title(f"c = {c:g}")
        ax.set_xlabel("α_h, step size")
        ax.tick_params(axis="x", labelsize=7)
    axes[0, 0].set_ylabel("runs")
    from matplotlib.patches import Patch

    axes[0, -1].legend(handles=[Patch(color=colours[st], label=st) for st in STATES], fontsize=7)
    fig.tight_layout()
    rep.figure(fig, "state_mix", "State of every run per α_h and step size η (tests in docs/chaos.md)")
    plt.close(fig)


def write_report(df: pd.DataFrame, p: dict, out: Path) -> None:
    """report.md with the verdicts, the state mix per (c, α_h, η), and the q / λ figures."""
    from plasticlab.study.report import Report

    d = with_state(df)
    rep = Report(out, "curl-chaos: what the q plateau of hidden-flip curl descent is made of", p)
    rep.add_claims(claims(df, p))
    rep.text(_method_text(d, p))
    _figures(rep, d, p)
    _q_vs_c_figure(rep, d, p)
    _state_figure(rep, d, p)
    rep.table(state_mix(d), "State mix per c, α_h and step size η (runs per state; λ per epoch-equivalent)")
    rep.text(_findings(d))
    rep.write()


def _method_text(d: pd.DataFrame, p: dict) -> str:
    start = (
        "W1 = teacher, W2 = teacher + {:g} on every entry (the authors' script)"
        if p["start"] == "authors"
        else "teacher + N(0, {:g}²) on every weight"
    ).format(p["perturbation"])
    return (
        f"Linear student on its balanced teacher (‖W1‖_F = √N, ‖W2‖ = 1), start: {start}; "
        f"full batch P = {p['P']}, each layer held at its initial Frobenius norm, k1 = int(α_h·M) flipped "
        f"inputs. Every step size "
        f"η ∈ {{{', '.join(f'{e:g}' for e in p['etas'])}}} covers the time of {p['epochs']:g} epochs at η = 0.1 "
        f"(epochs·0.1/η steps). Over the last {p['record']:g} epoch-equivalents: q of all weights (the paper's "
        f"order parameter), q of the function W2W1, the recurrence test and the error trace; λ is the largest "
        f"Lyapunov exponent of the network output over the training inputs, over the last {p['lyap_window']:g} "
        f"epoch-equivalents after a {p['lyap_warmup']:g} warm-up, per epoch-equivalent of η = 0.1. States "
        f"(first test that holds): diverged; converged (q < 1e-12); period-2 (the state returns to itself every "
        f"two steps); drift (the function is stationary, q(W2W1) < 1e-12, while the weights move); irregular "
        f"(λ > {LAMBDA_POSITIVE:g}); oscillating (the function moves, λ ≤ {LAMBDA_POSITIVE:g}). "
        f"{len(d)} runs, {int(d.diverged.sum())} diverged. {_coverage(d, p)}"
    )


def _coverage(d: pd.DataFrame, p: dict) -> str:
    """Which requested (c, η) pairs the table holds, and which it lacks (a sweep stopped early)."""
    first = [(float(c), float(p["etas"][0])) for c in dict.fromkeys(p["cs"] + p["c_grid"])]
    wanted = first + [(float(c), float(e)) for e in p["etas"][1:] for c in dict.fromkeys(p["cs"])]
    have = set(zip(d.c.astype(float), d.eta.astype(float)))
    missing = [f"c = {c:g}, η = {e:g}" for c, e in wanted if (c, e) not in have]
    return f"Not run (requested, not in this table): {'; '.join(missing)}." if missing else ""


def _findings(d: pd.DataFrame) -> str:
    lines = ["**What the large-q runs are, per η** (runs with q > 1e-4):", ""]
    for eta, s in d[d.q > Q_PLATEAU].groupby("eta"):
        mix = ", ".join(f"{v} {k}" for k, v in s.state.value_counts().items())
        lam = s.lyapunov
        lines.append(
            f"- η = {eta:g}: {len(s)} runs — {mix}; λ from {lam.min():.3g} to {lam.max():.3g} (median "
            f"{lam.median():.3g}); λ > 0 in {int((lam > 0).sum())}, > {LAMBDA_POSITIVE:g} (irregular) in "
            f"{int((lam > LAMBDA_POSITIVE).sum())}, > 1e-3 in {int((lam > 1e-3).sum())}; error range not "
            f"shrinking over the window (swing decay ≤ 0) in {int((s.error_swing_decay <= 0).sum())}; "
            f"training error {s.train_error.min():.3g}–{s.train_error.max():.3g}."
        )
    if len(lines) == 2:
        lines.append("- none")
    lines += [
        "",
        f"Runs with 0 < λ ≤ {LAMBDA_POSITIVE:g} per epoch-equivalent are counted as oscillating, not irregular; "
        "the counts above show how many sit near the threshold.",
    ]
    return "\n".join(lines)
