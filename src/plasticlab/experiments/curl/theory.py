"""curl-theory: large-N phase diagrams of the solution manifold (Ninou, Kadmon & Cayco-Gajic 2025), with
finite-N sampled spectra.

Theory rows give α*(c) on a log grid of c; sampled rows give λ_min(A) at balanced points of finite size
(N hidden neurons, M = round(cN) inputs) on a grid of flipped fractions, and the bisected first unstable
flip count per seed. Two chunk shapes with different keys (theory, sampled): specs stay plain dicts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from plasticlab.experiments.curl._common import compare, nkc
from plasticlab.experiments.curl.paper import C_RANGE, SYMBOL
from plasticlab.experiments.curl.paper import THRESHOLDS as PAPER
from plasticlab.study import POSITIVE, Experiment, Figure, Interval, ListOf, RunContext, Table, register
from plasticlab.study.claims import AllCells, AtMost, Claim, Within, fraction
from plasticlab.theory import LAYERS, FlipPath, balanced_point, critical_flip_fraction


@register
class CurlTheory(Experiment):
    """curl-theory: critical flip fractions from theory and sampled finite-N spectra."""

    name = "curl-theory"
    title = "stability of the solution manifold under rule flips"
    summary = "curl descent: critical flip fractions α_h*(c), α_r*(c) and finite-N sampled spectra"
    budget_s = 60
    columns = ("source", "layer", "c", "alpha", "N", "seed", "min_eig", "stable")
    tiny = dict(
        seeds=[0, 1], sizes=[20, 40], c_hidden=[0.4], c_readout=[0.5], n_alpha=5, n_theory=20
    )  # seconds: the contract test
    defaults = dict(
        seeds=[0, 1, 2, 3, 4],
        sizes=[50, 200, 1000],  # N, hidden neurons; M = round(c N)
        c_hidden=[0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.85, 1.0, 1.3],
        c_readout=[1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
        n_alpha=21,
        n_theory=300,
        max_weights=12_000_000,  # skip sampled points whose W1 would be larger (memory, draw time)
    )
    quick = dict(
        seeds=[0, 1, 2],
        sizes=[30, 100, 300],
        c_hidden=[0.15, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0],
        c_readout=[0.01, 0.1, 1.0, 10.0],
        n_alpha=11,
        n_theory=200,
    )

    constraints = dict(
        sizes=ListOf(Interval(int, 2, 100_000)),
        n_alpha=Interval(int, 2, 10_000),
        n_theory=Interval(int, 2, 100_000),
        max_weights=Interval(int, 2, 10**9),
        c_hidden=ListOf(POSITIVE),
        c_readout=ListOf(POSITIVE),
    )

    def chunks(self, p):
        """Two theory chunks (one per layer) and one sampled chunk per (layer, c, N) within max_weights."""
        cs = np.geomspace(*C_RANGE, p["n_theory"])
        out: list[dict[str, Any]] = [
            dict(kind="theory", layer=layer, c=sorted(set(cs.tolist()) | set(PAPER[layer]))) for layer in LAYERS
        ]
        for layer in LAYERS:
            for c in p[f"c_{layer}"]:
                for N in p["sizes"]:
                    M = int(round(c * N))
                    if M < 1 or p["max_weights"] < M * N:
                        continue
                    out.append(
                        dict(
                            kind="sampled",
                            layer=layer,
                            c_target=float(c),
                            M=M,
                            N=int(N),
                            seeds=list(p["seeds"]),
                            n_alpha=int(p["n_alpha"]),
                        )
                    )
        return out

    def run_chunk(self, spec, ctx: RunContext) -> pd.DataFrame:
        """Invert the closed form (theory chunk) or sample λ_min(A) over flip counts (sampled chunk)."""
        if spec["kind"] == "theory":
            c = np.asarray(spec["c"], dtype=float)
            df = pd.DataFrame(
                dict(source="theory", layer=spec["layer"], c=c, alpha=critical_flip_fraction(c, spec["layer"]))
            )
            return _typed(df)
        from threadpoolctl import threadpool_limits

        # one BLAS thread: chunks run side by side on few cores and OpenBLAS spin-waits when oversubscribed
        with threadpool_limits(limits=1, user_api="blas"):
            return _sampled(spec)

    def claims(self, df, p):
        """Large-N thresholds beside the paper's values and asymptotes, their shape, finite-N checks."""
        return theory_claims(df, p, self.size(p))

    def notes(self, p):
        """How the thresholds are computed and sampled."""
        return (
            "Large-N critical flipped fractions from the paper's parametric closed forms, inverted for c by "
            "vectorised bisection; finite-size checks: λ_min(A) of A = ‖W2‖²D1 + W1ᵀD2W1 at balanced points "
            "(W1 ~ N(0, 1/M), ‖W2‖² = 1) with N hidden neurons and M = round(cN) inputs. A sampled threshold "
            "is halfway between the last stable and the first unstable flip count (bisection; λ_min is "
            "non-increasing in the number of flips). The manifold is stable iff A is positive definite."
        )

    def figures(self, df, p):
        """The phase diagrams and, when both layers were sampled, λ_min curves at c ≈ 0.4 / 0.1."""
        from plasticlab.experiments.curl.figures import theory_curve_figure, theory_phase_figure

        out = [
            Figure(
                "phase_diagrams",
                theory_phase_figure(df),
                "Large-N phase diagrams (black line; green = stable, red = unstable) with finite-N sampled "
                "thresholds (dots: seeds; markers: mean ± sd) and the paper's listed values (squares).",
            )
        ]
        thr = df[df.source == "sampled-threshold"]
        focus = {
            layer: _nearest(thr[thr.layer == layer].c_target.unique(), target)
            for layer, target in (("hidden", 0.4), ("readout", 0.1))
            if (thr.layer == layer).any()
        }
        if len(focus) == 2:
            out.append(
                Figure(
                    "min_eig_curves",
                    theory_curve_figure(df, focus),
                    "λ_min(A) vs flipped fraction at finite N (mean over seeds; band = seed range; triangles: "
                    "bisected sign change, mean over seeds); it should approach the dashed large-N threshold "
                    "as N grows.",
                )
            )
        return out

    def tables(self, df, p):
        """Ours vs the paper's α* and readout asymptotes; sampled thresholds vs theory per N."""
        th = df[df.source == "theory"]
        paper = pd.DataFrame([dict(layer=l, c=c, alpha=a) for l, d in PAPER.items() for c, a in d.items()])
        ours = th.merge(paper[["layer", "c"]], on=["layer", "c"])[["layer", "c", "alpha"]]
        r = th[th.layer == "readout"].sort_values("c").iloc[[0, -1]]
        asym = r.assign(alpha=[0.5 - np.sqrt(r.c.iloc[0]), 1 / (16 * r.c.iloc[1])])
        out = [
            Table(
                compare(ours, paper, ["layer", "c"], "alpha"),
                "Large-N threshold α*: ours (closed form inverted) vs the paper's listed values",
            ),
            Table(
                compare(r[["layer", "c", "alpha"]], asym[["layer", "c", "alpha"]], ["layer", "c"], "alpha"),
                "Readout asymptotes: ours vs the paper's ½ − √c (c → 0) and 1/(16c) (c → ∞)",
            ),
        ]
        thr = df[df.source == "sampled-threshold"]
        return out + (_finite_tables(thr, p) if len(thr) else [])


def _nearest(values, target):
    values = np.asarray(values)
    return values[np.argmin(np.abs(np.log(values) - np.log(target)))]


def _sampled(spec) -> pd.DataFrame:
    layer, M, N, seeds = spec["layer"], spec["M"], spec["N"], spec["seeds"]
    W1, _ = balanced_point(M, N, seeds)  # ‖W2‖² = 1 is all A needs of W2
    path = FlipPath(W1, layer)
    dim = path.dim
    grid = np.unique(np.round(np.linspace(0, 1, spec["n_alpha"]) * dim).astype(int))
    k_star, grid, lam = path.threshold(grid)
    c = M / N
    common = dict(
        layer=layer, c=c, c_target=spec["c_target"], M=M, N=N, alpha_theory=critical_flip_fraction(c, layer)
    )
    E, K = lam.shape
    rows = pd.DataFrame(
        dict(
            source="sampled",
            **common,
            seed=np.repeat(seeds, K),
            k=np.tile(grid, E),
            alpha=np.tile(grid, E) / dim,
            min_eig=lam.ravel(),
        )
    )
    rows["stable"] = rows["min_eig"] > 0
    crossed = k_star <= dim
    # threshold fraction: halfway between the last stable and the first unstable flip count
    thr = pd.DataFrame(
        dict(
            source="sampled-threshold",
            **common,
            seed=seeds,
            k=k_star,
            alpha=np.where(crossed, (k_star - 0.5) / dim, 1.0),
            min_eig=np.nan,
            crossed=crossed,
        )
    )
    return _typed(pd.concat([rows, thr], ignore_index=True))


_INT_COLS = ("M", "N", "seed", "k")


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Same columns and dtypes for theory and sampled chunks, so the concatenated table keeps integer
    sizes (nullable where a theory row has none)."""
    for col in _INT_COLS:
        df[col] = df.get(col, pd.NA)
        df[col] = df[col].astype("Int64")
    for col in ("c_target", "alpha_theory", "min_eig"):
        df[col] = df[col].astype(float) if col in df else np.nan
    for col in ("stable", "crossed"):
        df[col] = df.get(col, pd.NA)
        df[col] = df[col].astype("boolean")
    return df


SRC = "stability of the solution manifold (large-N critical fractions)"


def _threshold_claims(th: pd.DataFrame, size: str) -> list[Claim]:
    """The paper's listed α* values and the readout asymptotes, beside our closed-form inversion."""
    out = []
    for layer, vals in PAPER.items():
        for c, ref in vals.items():
            row = th[(th.layer == layer) & np.isclose(th.c, c)]
            ours = float(row.alpha.iloc[0]) if len(row) else math.nan
            text = f"{layer} flips: large-N critical fraction {SYMBOL[layer]}* at c = {c:g}"
            out.append(nkc(text, SRC, ref, ours, len(row), size, Within(1e-3)))
    r = th[th.layer == "readout"].sort_values("c")
    if len(r):
        lo, hi = r.iloc[0], r.iloc[-1]
        for row, ref, what in (
            (lo, 0.5 - math.sqrt(lo.c), "½ − √c as c → 0"),
            (hi, 1 / (16 * hi.c), "1/(16c) as c → ∞"),
        ):
            text = f"readout flips: α_r* ≈ {what} (c = {row.c:g})"
            out.append(nkc(text, SRC, ref, float(row.alpha), 1, size, Within(0.01, relative=True)))
    return out


def _shape_claims(th: pd.DataFrame, size: str) -> list[Claim]:
    """Hidden: α* = 1 for c ≤ 1/4, falling to 0 by 2/3, 0 beyond; readout: 0 < α* < ½, decreasing."""
    h = th[th.layer == "hidden"].sort_values("c")
    mid = h[(h.c > 0.25) & (h.c < 2 / 3)].alpha.to_numpy()
    cells = list(h[h.c <= 0.25].alpha == 1) + list(h[h.c >= 2 / 3].alpha == 0)
    cells += list(np.diff(mid) < 0) + list((mid >= 0) & (mid <= 1))
    f_h, n_h = fraction(cells)
    r = th[th.layer == "readout"].sort_values("c")
    a = r.alpha.to_numpy()
    f_r, n_r = fraction(list((a > 0) & (a < 0.5)) + list(np.diff(a) < 0))
    hidden = "hidden flips: stable for every α_h when c ≤ 1/4, α_h* falls 1 → 0 over c ∈ (1/4, 2/3), 0 beyond"
    readout = "readout flips: 0 < α_r* < ½ for every c, decreasing in c"
    return [
        nkc(hidden, SRC, math.nan, f_h, n_h, size, AllCells("shape of α_h*(c)")),
        nkc(readout, SRC, math.nan, f_r, n_r, size, AllCells("0 < α_r* < ½ and decreasing")),
    ]


def _finite_claims(thr: pd.DataFrame, size: str) -> list[Claim]:
    """Finite N: the threshold's shift from large-N shrinks with N; c < 1/4 never loses stability."""
    out = []
    g = thr.assign(absdev=(thr.alpha - thr.alpha_theory).abs())
    for layer in sorted(g.layer.unique()):
        d = g[g.layer == layer]
        common = d.groupby("c_target").N.transform("nunique") == d.N.nunique()
        dev = d[common].groupby("N").absdev.mean().sort_index()
        ours = float(dev.iloc[-1] - dev.iloc[0]) if len(dev) >= 2 else math.nan
        text = (
            f"{layer} flips: the finite-N shift of the threshold shrinks as N grows "
            f"(mean |sampled − theory| at N = {dev.index.max()} minus at N = {dev.index.min()})"
        )
        out.append(nkc(text, SRC, math.nan, ours, int(common.sum()), size, AtMost(0.0)))
    nmax = thr.N.max()
    below = thr[(thr.layer == "hidden") & (nmax == thr.N) & (thr.c < 0.25)]
    f, n = fraction(~below.crossed.astype(bool))
    text = f"hidden flips, c < 1/4, N = {nmax}: stable even with every input flipped"
    out.append(nkc(text, SRC, math.nan, f, n, size, AllCells("never lost definiteness")))
    above = thr[(thr.layer == "hidden") & (nmax == thr.N) & (thr.c > 2 / 3)]
    k_max = float(above.k.max()) if len(above) else math.nan
    text = f"hidden flips, c > 2/3, N = {nmax}: a handful of flipped inputs destabilises (largest k*)"
    return out + [nkc(text, SRC, math.nan, k_max, len(above), size, AtMost(5))]


def theory_claims(df: pd.DataFrame, p: dict, size: str) -> list[Claim]:
    """Every curl-theory claim, computed from the run's table."""
    th, thr = df[df.source == "theory"], df[df.source == "sampled-threshold"]
    out = _threshold_claims(th, size) + _shape_claims(th, size)
    return out + (_finite_claims(thr, size) if len(thr) else [])


def _finite_tables(thr: pd.DataFrame, p: dict) -> list[Table]:
    """The sampled thresholds at the largest N beside theory, and the mean deviation per layer and N."""
    g = (
        thr.groupby(["layer", "c_target", "N"])
        .agg(
            c=("c", "first"),
            M=("M", "first"),
            sampled=("alpha", "mean"),
            sd=("alpha", "std"),
            theory=("alpha_theory", "first"),
            crossed=("crossed", "sum"),
        )
        .reset_index()
    )
    g["sampled − theory"] = g["sampled"] - g["theory"]
    Nmax = g.N.max()
    # only c values sampled at every size, so that the sizes are compared on the same points
    n_sizes = g.groupby("layer").N.transform("nunique")
    common = g[g.groupby(["layer", "c_target"]).N.transform("nunique") == n_sizes]
    dev = common.assign(absdev=common["sampled − theory"].abs()).groupby(["layer", "N"]).absdev.mean().unstack("N")
    dev.columns = [f"N = {n}" for n in dev.columns]
    return [
        Table(
            g[Nmax == g.N][["layer", "c", "M", "N", "sampled", "sd", "crossed", "theory", "sampled − theory"]],
            f"Sampled thresholds at the largest N = {Nmax} (mean and sd over {len(p['seeds'])} seeds; "
            "crossed = seeds whose A lost definiteness before every neuron was flipped, the others count "
            "as 1) vs large-N theory at the same c = M/N",
        ),
        Table(
            dev.reset_index(),
            "Mean |sampled − theory| over the c values sampled at every N, by layer (rows) and N (columns)",
        ),
    ]
