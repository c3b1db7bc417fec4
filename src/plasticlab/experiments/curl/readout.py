"""curl-readout: readout-flip simulations of Ninou, Kadmon & Cayco-Gajic 2025.

Start on the teacher (+1e-15 per weight), full batch, flip a fraction α_r = k2/N of the hidden neurons
feeding the readout. Theory: the solution manifold is stable for α_r < α_r*(c) (≈ ½ − √c at small c,
≈ 1/(16c) at large c), so a run from the teacher should stay there below the boundary and be thrown off it
— a large peak training error — above it.

One chunk = one (M, N, activation) shape; its members are α_r values × seeds. Linear full batch runs on
moment-matched rows (same trajectory, M/P of the cost; see ``simulation.curl.moment_matched``).
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
from plasticlab.simulation.curl import CurlConfig, simulate
from plasticlab.study import NONNEG, Experiment, Figure, RunContext, Table, register
from plasticlab.study.claims import AtLeast, Claim, fraction


@dataclass
class Spec(GridSpec):
    """A curl-readout chunk: the grid's fields and the start on the teacher."""

    perturbation: float
    balanced_teacher: bool


LEAVES = 1e-6  # peak training error above this: the run left the solution manifold (it starts at ~1e-30)


def finite_n_growth(cfg: CurlConfig, seeds, k2) -> np.ndarray:
    """Per run, the largest Jacobian eigenvalue −λmin(Σ̂A) at its own starting point (the finite-N
    linear prediction: > 0 means the teacher is unstable, and a perturbation grows ~ exp(η·rate·t));
    NaN if theory.curl is missing."""
    try:
        from plasticlab.theory.curl import manifold_spectrum
    except ImportError:
        return np.full(len(seeds), np.nan)
    import torch

    from plasticlab.simulation.curl import flips, initial_state

    W1, W2, X, *_ = initial_state(cfg, torch.tensor(seeds), torch.ones(len(seeds)), torch.float64)
    Sigma = (X.transpose(1, 2) @ X / cfg.P).numpy()
    spec = manifold_spectrum(W1.numpy(), W2.numpy(), np.ones((len(seeds), cfg.M)), flips(k2, cfg.N).numpy(), Sigma)
    return spec.jacobian.max(axis=-1)


def _prepared(g: pd.DataFrame, p: dict) -> tuple[pd.DataFrame, list] | None:
    """Runs of one activation with theory_stable / left (/ predicted_leave), minus c columns where even GD
    leaves the teacher; None without the theory module."""
    g = g.assign(log10_peak_train_error=np.log10(g.peak_train_error.clip(lower=1e-40)))
    a_star = theory_alpha(g.c.to_numpy(), "readout")
    if a_star is None:
        return None
    g = g.assign(theory_stable=g.alpha_r.to_numpy() < a_star, left=g.peak_train_error > LEAVES)
    # Where even GD (α_r = 0) leaves the teacher, the cause is the step size (η·λmax(W1 Σ W1ᵀ) > 2
    # once ‖W1‖² = N is spread over few inputs), not curl: those c columns cannot test the theory.
    gd_left = g[g.alpha_r == 0].groupby("c").left.mean()
    bad_c = list(gd_left[gd_left > 0].index)
    g = g[~g.c.isin(bad_c)]
    if "growth_rate" in g and g.growth_rate.notna().all():
        # e-folds of the unstable mode within the run: a 1e-15 start needs ~28 to pass LEAVES
        efolds = g.growth_rate * p["eta"] * p["epochs"]
        g = g.assign(predicted_leave=efolds > 0.5 * np.log(LEAVES / (p["perturbation"] ** 2)))
    return g, bad_c


def readout_claims(df: pd.DataFrame, p: dict, size: str) -> list[Claim]:
    """Per activation: runs leave the teacher exactly above α_r*(c) (large N), and as each start's finite-N
    spectrum predicts."""
    out = []
    src = "readout-flip simulations from the teacher (final test and peak training error over c × α_r)"
    for act in dict.fromkeys(df.activation):
        prep = _prepared(df[df.activation == act], p)
        if prep is None:
            continue
        g, _ = prep
        div = int(g.diverged.sum()) if "diverged" in g else 0
        agree, n = fraction(g.left != g.theory_stable)
        text = (
            f"{act}: runs stay on the teacher below α_r*(c) and leave it above (peak train error "
            f"> {LEAVES:g}; share of runs agreeing with large-N theory)"
        )
        out.append(nkc(text, src, math.nan, agree, n, size, AtLeast(0.8, partly=0.65), diverged=div))
        if "predicted_leave" in g:
            agree_n, n = fraction(g.left == g.predicted_leave)
            text = f"{act}: each start's finite-N linear stability predicts whether the run leaves the teacher "
            text += "(share of runs)"
            out.append(nkc(text, src, math.nan, agree_n, n, size, AtLeast(0.9, partly=0.75), diverged=div))
    return out


@register
class CurlReadout(Experiment):
    """curl-readout: runs from the teacher with flipped readout inputs over (c, alpha_r)."""

    name = "curl-readout"
    title = "readout flips from the teacher vs the stability boundary"
    spec_type = Spec
    summary = "runs from the teacher with flipped readout inputs: final test / peak train error over (c, α_r)"
    budget_s = 180
    columns = ("c", "alpha_r", "activation", "seed", "test_error", "peak_train_error", "diverged")
    tiny = dict(
        c_min=4.0, c_max=4.0, n_c=1, alphas=[0.0, 0.5], seeds=[0], total=30, epochs=100, perturbation=1e-6
    )  # seconds: the contract test
    defaults = dict(
        c_min=0.01,
        c_max=20.0,
        n_c=20,
        alphas=[round(0.05 * i, 2) for i in range(21)],
        activations=["linear"],
        seeds=list(range(20)),
        total=219,
        P=250,
        epochs=100000,
        eta=0.1,
        perturbation=1e-15,
        balanced_teacher=True,
        norm_constraint=True,
        points_per_decade=10,
        dtype="float64",
    )
    # quick: 5 c values, 6 flip fractions, 3 seeds, 10^4 full-batch epochs (clearly unstable runs leave
    # the teacher within a few hundred epochs; marginal ones near the boundary need the full 10^5).
    quick = dict(
        c_min=0.03, c_max=10.0, n_c=5, alphas=[0.0, 0.05, 0.1, 0.2, 0.3, 0.5], seeds=[0, 1, 2], epochs=10000
    )
    choices = GRID_CHOICES
    constraints = dict(GRID_CONSTRAINTS, perturbation=NONNEG)
    relations = GRID_RELATIONS

    def chunks(self, p):
        """One chunk per (activation, c, block of seeds)."""
        return shape_chunks(p, Spec)

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """Run every α_r × seed member of the shape from its teacher, full batch."""
        cfg = config_of(spec, B=spec.P, init="teacher")
        members, k2 = flip_members(spec, spec.N)
        seeds = [s for _, s in members]
        res = simulate(cfg, seeds, k2=k2, rule="gd_flip", device=ctx.device, compile=ctx.compile)
        flips: dict[str, list] = dict(alpha_r=[a for a, _ in members], k2=k2)
        return flip_table(spec, cfg, res.table(), flips, growth_rate=finite_n_growth(cfg, seeds, k2))

    def claims(self, df, p):
        """Per activation: leaving the teacher vs the large-N boundary and vs each start's finite-N spectrum."""
        return readout_claims(df, p, self.size(p))

    def notes(self, p):
        """The start, and which c columns cannot test the theory."""
        return (
            f"Runs start on the {'balanced ' if p['balanced_teacher'] else ''}teacher plus "
            f"{p['perturbation']:g} per weight, full batch, M + N = {p['total']}, median over seeds. Dashed: "
            "the large-N theory boundary α_r*(c). Where plain GD (α_r = 0) already leaves the teacher, "
            "full-batch η is above the step-size stability limit (a discrete-time effect, not curl): those "
            "c columns are left out of the verdicts (listed in the tables)."
        )

    def figures(self, df, p):
        """Per activation: final test and peak training error over (c, α_r) with the theory boundary."""
        from plasticlab.experiments.curl.figures import readout_heatmaps

        df = df.assign(
            log10_test_error=np.log10(df.test_error.clip(lower=1e-40)),
            log10_peak_train_error=np.log10(df.peak_train_error.clip(lower=1e-40)),
        )
        return [
            Figure(
                f"readout_heatmaps_{act}",
                readout_heatmaps(df[df.activation == act], act, lambda c: theory_alpha(c, "readout")),
                f"{act}: log10 final test error and peak training error over (c, α_r)",
            )
            for act in dict.fromkeys(df.activation)
        ]

    def tables(self, df, p):
        """Per activation: prediction vs outcome, leaving by theory side, empirical boundary vs theory."""
        return [t for act in dict.fromkeys(df.activation) for t in _tables(df[df.activation == act], act, p)]


def _tables(g: pd.DataFrame, act: str, p: dict) -> list[Table]:
    prep = _prepared(g, p)
    if prep is None:
        return []
    g, bad_c = prep
    skipped = f" (c = {', '.join(f'{c:.3g}' for c in bad_c)} left out: GD leaves there)" if bad_c else ""
    out = []
    if "predicted_leave" in g:
        pred = g.predicted_leave
        frame = pd.DataFrame(
            dict(
                prediction=["leaves", "stays"],
                runs=[int(pred.sum()), int((~pred).sum())],
                left_teacher=[g.left[pred].mean(), g.left[~pred].mean()],
            )
        )
        out.append(
            Table(
                frame,
                f"{act}: finite-N prediction at each run's own start (largest Jacobian eigenvalue of Σ̂A, "
                f"grown over {p['epochs']} epochs) vs what the run did{skipped}",
            )
        )
    side = g.groupby("theory_stable").agg(
        runs=("left", "size"),
        left_teacher=("left", "mean"),
        median_log10_peak=("log10_peak_train_error", "median"),
    )
    out.append(Table(side.reset_index(), f"{act}: fraction of runs whose peak train error exceeds {LEAVES:g}"))
    cell = (
        g.groupby(["c", "alpha_r", "theory_stable"])
        .agg(log10_peak=("log10_peak_train_error", "median"), left=("left", "mean"))
        .reset_index()
    )
    emp = empirical_boundary(cell, "alpha_r", "log10_peak", "readout")
    caption = (
        f"{act}: empirical α_r where the peak error jumps vs the paper's large-N theory α_r*(c) (our grid "
        "is coarse: the difference is bounded by its step)"
    )
    return out + [Table(boundary_table(emp), caption)]
