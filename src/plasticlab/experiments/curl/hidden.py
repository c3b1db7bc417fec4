"""curl-hidden: final test error over (c = M/N, α_h = k1/M) with M + N fixed.

The hidden-flip simulations of Ninou, Kadmon & Cayco-Gajic 2025. Their theory: the solution manifold is
stable below α_h*(c) — for every α_h when c ≤ 1/4, for
no α_h > 0 when c ≥ 2/3 — so learning should succeed below the boundary and fail above it.

One chunk = one (M, N, activation) shape; its members are α_h values × seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from plasticlab.experiments.curl._common import (
    GRID_CHOICES,
    GRID_CONSTRAINTS,
    GRID_RELATIONS,
    flip_members,
    flip_table,
    shape_for,
)
from plasticlab.simulation.curl import CurlConfig, simulate
from plasticlab.study import POSITIVE, SIZE, Experiment, register, seed_blocks
from plasticlab.study.claims import NKC, AtLeast, AtMost, Claim
from plasticlab.study.report import Report


def shape_chunks(p: dict, keys: tuple[str, ...]) -> list[dict]:  # keys: the spec's entries besides the seeds
    """One chunk per (activation, c, block of seeds): each c fixes a network shape (M, N), i.e. one ensemble
    batch; seed blocks let a run extended by more seeds reuse the blocks it has."""
    return [
        dict(activation=act, c_nominal=c, M=M, N=N, alphas=p["alphas"], **{k: p[k] for k in keys}, seeds=block)
        for act in p["activations"]
        for c in log_cs(p["c_min"], p["c_max"], p["n_c"])
        for M, N in [shape_for(c, p["total"])]
        for block in seed_blocks(p["seeds"])
    ]


def log_cs(lo: float, hi: float, n: int) -> list[float]:
    """n log-spaced load values c from lo to hi."""
    return [float(c) for c in np.logspace(math.log10(lo), math.log10(hi), n)]


def theory_alpha(c, layer: str):
    """The large-N boundary from the theory module (owned elsewhere); None if it is not importable."""
    try:
        from plasticlab.theory.curl import critical_flip_fraction
    except ImportError:
        return None
    return critical_flip_fraction(np.asarray(c, float), layer)


def empirical_boundary(grid: pd.DataFrame, xcol: str, acol: str, value: str) -> pd.DataFrame:
    """Per x: the smallest α whose log10 error lies closer to the column's worst than to its α=0 value
    (NaN if none) — a threshold-free estimate of where learning breaks down."""
    rows = []
    for x, g in grid.groupby(xcol):
        g = g.sort_values(acol)
        v = g[value].to_numpy()
        good, bad = v[0], np.nanmax(v)
        if not np.isfinite(good) or bad - good < 1.0:  # < 1 decade apart: no breakdown visible
            rows.append((x, np.nan))
            continue
        over = np.flatnonzero(v > (good + bad) / 2)
        rows.append((x, float(g[acol].to_numpy()[over[0]]) if len(over) else np.nan))
    return pd.DataFrame(rows, columns=[xcol, "alpha_breakdown"])


def _cells(g: pd.DataFrame) -> pd.DataFrame | None:
    """Median log10 test error per (c, α_h) cell and whether theory calls the cell stable (None: no theory)."""
    g = g[~g.diverged].assign(log10_test_error=np.log10(g.test_error.clip(lower=1e-40)))
    a_star = theory_alpha(g.c.to_numpy(), "hidden")
    if a_star is None or g.empty:
        return None
    g = g.assign(theory_stable=g.alpha_h.to_numpy() < a_star)
    return g.groupby(["c", "alpha_h", "theory_stable"]).log10_test_error.median().reset_index()


def hidden_claims(df: pd.DataFrame, p: dict, size: str) -> list[Claim]:
    """Per activation: the error gap across the theory boundary, and the empirical breakdown α vs theory."""
    out = []
    src = "hidden-flip simulations (test-error heatmap over c × α_h with the theory boundary)"
    for act in dict.fromkeys(df.activation):
        g = df[df.activation == act]
        div = int(g.diverged.sum())
        cell = _cells(g)
        gap, n = math.nan, 0
        if cell is not None:
            st, un = cell[cell.theory_stable], cell[~cell.theory_stable]
            if len(st) and len(un):
                gap = float(un.log10_test_error.median() - st.log10_test_error.median())
                n = len(cell)
        out.append(
            Claim(
                f"{act}: cells above the theory boundary α_h*(c) end ≥ 1 decade worse than below it "
                "(median log10 test error, unstable − stable)",
                NKC,
                src,
                math.nan,
                gap,
                math.nan,
                n,
                size,
                AtLeast(1.0),
                diverged=div,
            )
        )
        dev, n_c = math.nan, 0
        if cell is not None:
            emp = empirical_boundary(cell, "c", "alpha_h", "log10_test_error")
            emp["theory"] = theory_alpha(emp.c.to_numpy(), "hidden")
            d = (emp.alpha_breakdown - emp.theory).abs().dropna()
            dev, n_c = (float(d.mean()), len(d)) if len(d) else (math.nan, 0)
        out.append(
            Claim(
                f"{act}: learning breaks down near the theory boundary (mean |α_breakdown − α_h*| "
                "over c columns with a visible breakdown)",
                NKC,
                src,
                math.nan,
                dev,
                math.nan,
                n_c,
                size,
                AtMost(0.1, partly=0.2),
                diverged=div,
            )
        )
    return out


@register
class CurlHidden(Experiment):
    """curl-hidden: final test error over (c, alpha_h) against the theory stability boundary."""

    name = "curl-hidden"
    summary = "final test error over (c, α_h): hidden-flip curl descent vs the theory stability boundary"
    budget_s = 180
    columns = ("c", "alpha_h", "activation", "seed", "test_error", "diverged")
    tiny = dict(
        n_c=2, c_min=0.2, c_max=2.0, alphas=[0.0, 1.0], seeds=[0], total=24, epochs=30, activations=["linear"]
    )  # seconds: the contract test
    defaults = dict(
        c_min=0.1,
        c_max=10.0,
        n_c=20,
        alphas=[round(0.05 * i, 2) for i in range(21)],
        activations=["linear", "tanh"],
        seeds=list(range(10)),
        total=219,
        P=250,
        B=10,
        epochs=100000,
        eta=0.1,
        init_scale=1.0,
        norm_constraint=True,
        points_per_decade=10,
        dtype="float64",
    )
    # quick: 5 c values, 6 flip fractions, 2 seeds, 400 epochs — the stable/unstable contrast is already
    # orders of magnitude wide there; the full run is the paper's grid.
    quick = dict(
        c_min=0.15,
        c_max=4.0,
        n_c=5,
        alphas=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        seeds=[0, 1],
        epochs=400,
        dtype="float32",
    )
    choices = GRID_CHOICES
    constraints = dict(GRID_CONSTRAINTS, B=SIZE, init_scale=POSITIVE)
    relations = GRID_RELATIONS

    def chunks(self, p):
        return shape_chunks(
            p, ("P", "B", "epochs", "eta", "init_scale", "norm_constraint", "points_per_decade", "dtype")
        )

    def run_chunk(self, spec):
        M, N = spec["M"], spec["N"]
        cfg = CurlConfig(
            M=M,
            N=N,
            activation=spec["activation"],
            P=spec["P"],
            B=spec["B"],
            epochs=spec["epochs"],
            eta=spec["eta"],
            norm_constraint=spec["norm_constraint"],
            points_per_decade=spec["points_per_decade"],
            dtype=spec["dtype"],
        )
        members, k1 = flip_members(spec, M)
        res = simulate(cfg, [s for _, s in members], k1=k1, rule="curl", init_scale=spec["init_scale"])
        return flip_table(spec, cfg, res.table(), dict(alpha_h=[a for a, _ in members], k1=k1))

    def claims(self, df, p):
        """Per activation: cells above the theory boundary end worse; where learning breaks down vs α_h*(c)."""
        return hidden_claims(df, p, self.size(p))

    def report(self, df, p, out):
        from plasticlab.experiments.curl.figures import hidden_heatmaps

        rep = Report(out, "curl-hidden: hidden-flip curl descent vs the stability boundary", p)
        rep.text(
            f"Median over {len(p['seeds'])} seeds of log10 final test error after {p['epochs']} epochs, "
            f"M + N = {p['total']}, P = {p['P']}, B = {p['B']}, norm constraint "
            f"{'on' if p['norm_constraint'] else 'off'}. White dashed line: the large-N theory boundary "
            f"α_h*(c) (Ninou, Kadmon & Cayco-Gajic 2025); learning should succeed below it and fail above it."
        )
        df = df.assign(log10_test_error=np.log10(df.test_error.clip(lower=1e-40)))
        acts = list(dict.fromkeys(df.activation))
        fig = hidden_heatmaps(df, acts, lambda c: theory_alpha(c, "hidden"))
        rep.figure(fig, "hidden_heatmap", "log10 final test error over (c, α_h); dashed: theory boundary")

        rep.add_claims(hidden_claims(df, p, self.size(p)))
        for act in acts:
            cell = _cells(df[df.activation == act])
            if cell is None:
                continue
            rep.table(
                cell.groupby("theory_stable")
                .log10_test_error.describe()[["count", "50%", "min", "max"]]
                .reset_index(),
                f"{act}: log10 test error of cells theory calls stable / unstable",
            )
            emp = empirical_boundary(cell, "c", "alpha_h", "log10_test_error")
            emp["theory"] = theory_alpha(emp.c.to_numpy(), "hidden")
            rep.compare(
                emp[["c", "alpha_breakdown"]].rename(columns={"alpha_breakdown": "alpha"}),
                emp[["c", "theory"]].rename(columns={"theory": "alpha"}),
                on=["c"],
                value="alpha",
                caption=f"{act}: empirical breakdown α_h (first α on the bad side of the column's "
                "midpoint) vs the paper's large-N theory α_h*(c); finite N shifts it",
            )
        rep.write()
