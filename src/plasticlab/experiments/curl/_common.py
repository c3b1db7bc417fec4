"""Shared by the curl-descent experiments: the paper's c sweeps at fixed M + N (hidden-flip, readout, chaos),
for hidden and readout the flip-fraction × seed members of a shape's chunk and the rows they return, the
large-N boundary, and the ours-beside-the-paper table."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from plasticlab.simulation.curl import CurlConfig
from plasticlab.study import SIZE, Interval, Require, seed_blocks

if TYPE_CHECKING:
    from plasticlab.study.claims import Claim

TOTAL = 219  # M + N in the paper's c sweeps

# The (c, α) grid parameters curl-hidden and curl-readout share: their choices, constraints and relations.
GRID_CHOICES = dict(activations=["linear", "tanh", "relu"], dtype=["float32", "float64"])
GRID_CONSTRAINTS = dict(
    c_min=Interval(float, 0, None, closed="neither"),
    c_max=Interval(float, 0, None, closed="neither"),
    n_c=Interval(int, 1, 1000),
    total=Interval(int, 2, 100_000),
    P=SIZE,
    points_per_decade=Interval(int, 1, 10_000),
)
GRID_RELATIONS = (Require(("c_min", "c_max"), lambda lo, hi: lo <= hi, "c_min <= c_max"),)
_SHAPE_KEYS = ("activation", "c_nominal", "M", "N", "seeds")  # what a grid chunk sets; the rest come from p


@dataclass
class GridSpec:
    """One (activation, M, N) shape of a (c, α) grid: every flip fraction × seed of a block, one ensemble (one
    chunk); curl-hidden and curl-readout add their own fields. A chunk's hash is of its fields by name, so
    which class declares a field does not change it."""

    activation: str
    c_nominal: float
    M: int
    N: int
    alphas: list[float]
    P: int
    epochs: int
    eta: float
    norm_constraint: bool
    points_per_decade: int
    dtype: str
    seeds: list[int]


def config_of(spec: Any, **fixed: Any) -> CurlConfig:
    """The engine's configuration from a chunk spec: every CurlConfig field the spec has, then ``fixed``."""
    names = {f.name for f in dataclasses.fields(CurlConfig)} & {f.name for f in dataclasses.fields(spec)}
    return CurlConfig(**{n: getattr(spec, n) for n in names} | fixed)


def shape_for(c: float, total: int = TOTAL) -> tuple[int, int]:
    """(M, N) with M + N = total and M/N ≈ c; floor reproduces the paper's (50,169), (62,157), (73,146)."""
    M = max(1, min(total - 1, int(math.floor(total * c / (1 + c) + 1e-9))))
    return M, total - M


def log_cs(lo: float, hi: float, n: int) -> list[float]:
    """n log-spaced load values c from lo to hi."""
    return [float(c) for c in np.logspace(math.log10(lo), math.log10(hi), n)]


def shape_chunks(p: dict[str, Any], spec_type: type) -> list[Any]:
    """One ``spec_type`` chunk per (activation, c, block of seeds): each c fixes a network shape (M, N), i.e.
    one ensemble batch; seed blocks let a run extended by more seeds reuse the blocks it has. The spec's
    other fields are the params of the same name."""
    keys = [f.name for f in dataclasses.fields(spec_type) if f.name not in _SHAPE_KEYS]
    return [
        spec_type(activation=act, c_nominal=c, M=M, N=N, seeds=block, **{k: p[k] for k in keys})
        for act in p["activations"]
        for c in log_cs(p["c_min"], p["c_max"], p["n_c"])
        for M, N in [shape_for(c, p["total"])]
        for block in seed_blocks(p["seeds"])
    ]


def flip_members(spec: Any, flippable: int) -> tuple[list[tuple[float, int]], list[int]]:
    """A chunk's members, (α, seed) for every flip fraction × seed, and each one's number of flipped
    neurons round(α × flippable)."""
    members = [(a, s) for a in spec.alphas for s in spec.seeds]
    return members, [int(round(a * flippable)) for a, _ in members]


def flip_table(
    spec: Any, cfg: CurlConfig, t: pd.DataFrame, flips: dict[str, list[Any]], **extra: Any
) -> pd.DataFrame:
    """One shape's rows: c, c_nominal, M, N, the flip fraction and count (``flips``, e.g. {"alpha_h": …,
    "k1": …}), activation, seed, errors, diverged, epochs, then the ``extra`` columns. Committed
    results.parquet files and the scoreboard rely on this column order. ``t``: the simulation's table()."""
    return pd.DataFrame(
        dict(
            c=spec.M / spec.N,
            c_nominal=spec.c_nominal,
            M=spec.M,
            N=spec.N,
            **flips,
            activation=cfg.activation,
            seed=t.seed,
            test_error=t.test_error,
            train_error=t.train_error,
            peak_train_error=t.peak_train_error,
            diverged=t.diverged,
            epochs=cfg.epochs,
            **extra,
        )
    )


def theory_alpha(c: Any, layer: str) -> Any:
    """The large-N boundary α*(c) of ``layer`` from the theory module; None if it is not importable."""
    try:
        from plasticlab.theory.curl import critical_flip_fraction
    except ImportError:
        return None
    return critical_flip_fraction(np.asarray(c, float), layer)


def empirical_boundary(grid: pd.DataFrame, acol: str, value: str, layer: str) -> pd.DataFrame:
    """Per c: the smallest α whose log10 error lies closer to the column's worst than to its α=0 value
    (NaN if none) — a threshold-free estimate of where learning breaks down — beside ``layer``'s large-N
    theory α*(c)."""
    rows = []
    for x, g in grid.groupby("c"):
        g = g.sort_values(acol)
        v = g[value].to_numpy()
        good, bad = v[0], np.nanmax(v)
        if not np.isfinite(good) or bad - good < 1.0:  # < 1 decade apart: no breakdown visible
            rows.append((x, np.nan))
            continue
        over = np.flatnonzero(v > (good + bad) / 2)
        rows.append((x, float(g[acol].to_numpy()[over[0]]) if len(over) else np.nan))
    emp = pd.DataFrame(rows, columns=["c", "alpha_breakdown"])
    return emp.assign(theory=theory_alpha(emp.c.to_numpy(), layer))


def boundary_table(emp: pd.DataFrame) -> pd.DataFrame:
    """``empirical_boundary``'s breakdown α beside the theory's, per c (``compare``'s columns)."""
    ours, theory = (emp[["c", k]].rename(columns={k: "alpha"}) for k in ("alpha_breakdown", "theory"))
    return compare(ours, theory, ["c"], "alpha")


def compare(ours: pd.DataFrame, paper: pd.DataFrame, on: list[str], value: str) -> pd.DataFrame:
    """``value`` of ours beside the paper's (outer join on ``on``) with the difference ours − paper."""
    paper = paper.rename(columns={value: "paper"})
    if paper.empty:  # no paper cell for this run's grid: its key columns have no dtype to join on
        paper = paper.astype({k: ours[k].dtype for k in on})
    m = ours.merge(paper, on=on, how="outer").rename(columns={value: "ours"})
    m["ours − paper"] = m["ours"] - m["paper"]
    return m[on + ["ours", "paper", "ours − paper"]]


def nkc(text: str, source: str, paper: float, ours: float, n: int, size: str, test: Any, **kw: Any) -> Claim:
    """A claim of Ninou, Kadmon & Cayco-Gajic 2025 beside ours (no standard error: the curl experiments
    claim medians, ratios and fractions of runs)."""
    from plasticlab.study.claims import NKC, Claim

    return Claim(text, NKC, source, paper, ours, math.nan, n, size, test, **kw)
