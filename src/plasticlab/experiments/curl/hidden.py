"""curl-hidden: final test error over (c = M/N, α_h = k1/M) with M + N fixed.

The hidden-flip simulations of Ninou, Kadmon & Cayco-Gajic 2025. Their theory: the solution manifold is
stable below α_h*(c) — for every α_h when c ≤ 1/4, for no α_h > 0 when c ≥ 2/3 — so learning should succeed
below the boundary and fail above it. One chunk = one (M, N, activation) shape; its members are α_h × seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from plasticlab.experiments.curl._common import (
    GRID_CHOICES,
    GRID_CONSTRAINTS,
    GRID_RELATIONS,
    GridSpec,
    boundary_table,
    config_of,
    empirical_boundary,
    flip_members,
    flip_table,
    nkc,
    shape_chunks,
    theory_alpha,
)
from plasticlab.simulation.curl import simulate
from plasticlab.study import POSITIVE, SIZE, Experiment, Figure, RunContext, Table, register
from plasticlab.study.claims import AtLeast, AtMost, Claim


@dataclass
class Spec(GridSpec):
    """A curl-hidden chunk: the grid's fields, the batch size and the students' init scale."""

    B: int
    init_scale: float


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
        text = (
            f"{act}: cells above the theory boundary α_h*(c) end ≥ 1 decade worse than below it "
            "(median log10 test error, unstable − stable)"
        )
        out.append(nkc(text, src, math.nan, gap, n, size, AtLeast(1.0), diverged=div))
        dev, n_c = math.nan, 0
        if cell is not None:
            emp = empirical_boundary(cell, "alpha_h", "log10_test_error", "hidden")
            d = (emp.alpha_breakdown - emp.theory).abs().dropna()
            dev, n_c = (float(d.mean()), len(d)) if len(d) else (math.nan, 0)
        text = (
            f"{act}: learning breaks down near the theory boundary (mean |α_breakdown − α_h*| "
            "over c columns with a visible breakdown)"
        )
        out.append(nkc(text, src, math.nan, dev, n_c, size, AtMost(0.1, partly=0.2), diverged=div))
    return out


@register
class CurlHidden(Experiment):
    """curl-hidden: final test error over (c, alpha_h) against the theory stability boundary."""

    name = "curl-hidden"
    title = "hidden-flip curl descent vs the stability boundary"
    spec_type = Spec
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
        """One chunk per (activation, c, block of seeds)."""
        return shape_chunks(p, Spec)

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """Train every α_h × seed member of the shape from its own random start."""
        cfg = config_of(spec)
        members, k1 = flip_members(spec, spec.M)
        res = simulate(
            cfg,
            [s for _, s in members],
            k1=k1,
            rule="gd_flip",
            init_scale=spec.init_scale,
            device=ctx.device,
            compile=ctx.compile,
        )
        return flip_table(spec, cfg, res.table(), dict(alpha_h=[a for a, _ in members], k1=k1))

    def claims(self, df, p):
        """Per activation: cells above the theory boundary end worse; where learning breaks down vs α_h*(c)."""
        return hidden_claims(df, p, self.size(p))

    def notes(self, p):
        """The setting and what the dashed line is."""
        return (
            f"Median over seeds of log10 final test error, M + N = {p['total']}, P = {p['P']}, B = {p['B']}, "
            "norm constraint: each layer held at its initial Frobenius norm. Dashed: the large-N theory "
            "boundary α_h*(c); learning should succeed below it and fail above it."
        )

    def figures(self, df, p):
        """The test-error heatmap over (c, α_h) per activation with the theory boundary."""
        from plasticlab.experiments.curl.figures import hidden_heatmaps

        df = df.assign(log10_test_error=np.log10(df.test_error.clip(lower=1e-40)))
        fig = hidden_heatmaps(df, list(dict.fromkeys(df.activation)), lambda c: theory_alpha(c, "hidden"))
        return [Figure("hidden_heatmap", fig, "log10 final test error over (c, α_h); dashed: theory boundary")]

    def tables(self, df, p):
        """Per activation: error of cells theory calls stable / unstable; breakdown α vs theory."""
        out = []
        for act in dict.fromkeys(df.activation):
            cell = _cells(df[df.activation == act])
            if cell is None:
                continue
            stats = cell.groupby("theory_stable").log10_test_error.describe()[["count", "50%", "min", "max"]]
            out.append(
                Table(stats.reset_index(), f"{act}: log10 test error of cells theory calls stable / unstable")
            )
            emp = empirical_boundary(cell, "alpha_h", "log10_test_error", "hidden")
            out.append(
                Table(
                    boundary_table(emp),
                    f"{act}: empirical breakdown α_h (first α on the bad side of the column's midpoint) vs "
                    "the paper's large-N theory α_h*(c); finite N shifts it",
                )
            )
        return out
