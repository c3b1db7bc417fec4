"""Shared by the curl-descent experiments: the paper's c sweeps at fixed M + N (hidden-flip, readout, chaos),
and for hidden and readout the flip-fraction × seed members of a shape's chunk and the rows they return."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from plasticlab.study import SIZE, Interval, Require

if TYPE_CHECKING:
    from plasticlab.simulation.curl import CurlConfig

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


def shape_for(c: float, total: int = TOTAL) -> tuple[int, int]:
    """(M, N) with M + N = total and M/N ≈ c; floor reproduces the paper's (50,169), (62,157), (73,146)."""
    M = max(1, min(total - 1, int(math.floor(total * c / (1 + c) + 1e-9))))
    return M, total - M


def flip_members(spec: dict[str, Any], flippable: int) -> tuple[list[tuple[float, int]], list[int]]:
    """A chunk's members, (α, seed) for every flip fraction × seed, and each one's number of flipped
    neurons round(α × flippable)."""
    members = [(a, s) for a in spec["alphas"] for s in spec["seeds"]]
    return members, [int(round(a * flippable)) for a, _ in members]


def flip_table(
    spec: dict[str, Any],
    cfg: CurlConfig,
    t: pd.DataFrame,
    flips: dict[str, list[Any]],
    **extra: Any,
) -> pd.DataFrame:
    """One shape's rows: c, c_nominal, M, N, the flip fraction and count (``flips``, e.g. {"alpha_h": …,
    "k1": …}), activation, seed, errors, diverged, epochs, then the ``extra`` columns. Committed
    results.parquet files and the scoreboard rely on this column order. ``t``: the simulation's table()."""
    M, N = spec["M"], spec["N"]
    return pd.DataFrame(
        dict(
            c=M / N,
            c_nominal=spec["c_nominal"],
            M=M,
            N=N,
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
