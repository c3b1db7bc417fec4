"""hebb-transient: Hebbian alignment over training time (the early bump) and single neurons flipping
between Hebbian and anti-Hebbian updates near stationarity (Koplow, Poggio & Ziyin 2025, transients).

One chunk per rule; seeds × γ members form one ensemble. The table has two kinds of rows:
``kind="trace"`` (one per member, layer and checkpoint: step, alignment, val_loss) and ``kind="neuron"``
(one per member, layer and postsynaptic neuron over the late window: the fraction of checkpoints its
row-wise alignment was positive, and whether it took both signs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from plasticlab.experiments.hebbian._common import (
    ACTIVATIONS,
    RULES,
    convention_note,
    convention_params,
    dtype_of,
    train_regression,
)
from plasticlab.study import (
    MAX_STEPS,
    SIZE,
    Experiment,
    Figure,
    Interval,
    ListOf,
    RunContext,
    Table,
    convention,
    register,
    shared_fields,
)
from plasticlab.study.claims import KPZ, AtLeast, Claim

CONVENTION_DEFAULTS, CONVENTION_CHOICES = convention_params("loss", "layers")


@dataclass
class Spec:
    """One rule's γ × seed ensemble, every member on the same data (one chunk)."""

    rule: str
    gammas: list[float]
    seeds: list[int]
    widths: list[int]
    activation: str
    steps: int
    lr: float
    batch_size: int
    n_train: int
    n_val: int
    checkpoints: int
    late_from: float
    dtype: str
    loss: str = convention("half_sum")
    layers: str = convention("plain")


@register
class HebbTransient(Experiment):
    """hebb-transient: alignment over training steps and neurons that switch sign."""

    name = "hebb-transient"
    summary = "alignment vs training step (early bump) and neurons flipping Hebbian ↔ anti-Hebbian"
    title = "the early Hebbian bump and neurons that keep flipping sign"
    budget_s = 60
    code_version = 1  # bump when run_chunk changes its numbers, so saved chunks are not reused
    spec_type = Spec
    columns = ("kind", "rule", "gamma", "seed", "layer", "step", "alignment", "frac_hebbian", "diverged")
    tiny = dict(
        gammas=[0.0, 0.05], seeds=[0], widths=[6, 5, 3], steps=60, n_train=256, n_val=20, checkpoints=10
    )  # seconds: the contract test
    defaults = dict(
        rules=["sgd"],
        gammas=[0.0, 5e-4, 5e-3],
        seeds=[0, 1, 2, 3, 4],
        widths=[32, 64, 64, 32],
        activation="relu",
        steps=40000,
        lr=0.01,
        batch_size=256,
        n_train=20000,
        n_val=2000,
        checkpoints=400,
        late_from=0.75,
        dtype="float64",
        **CONVENTION_DEFAULTS,
    )
    quick = dict(
        gammas=[0.0, 5e-3, 5e-2],
        seeds=[0, 1, 2],
        widths=[32, 32, 32, 32],
        steps=3000,
        lr=0.02,
        n_train=5000,
        n_val=500,
        checkpoints=150,
        dtype="float32",
    )
    choices = dict(rules=RULES, activation=ACTIVATIONS, dtype=["float64", "float32"], **CONVENTION_CHOICES)

    constraints = dict(
        steps=Interval(int, 10, MAX_STEPS),
        widths=ListOf(SIZE, min_len=3, unique=False),
        checkpoints=Interval(int, 4, 100_000),
        late_from=Interval(float, 0, 1, closed="neither"),
    )

    def chunks(self, p):
        """One chunk per rule: its γ × seed members share the data and the batch order."""
        keep = shared_fields(Spec, p, "rule")
        return [Spec(rule=r, **keep) for r in p["rules"]]

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """Train the chunk's members, recording alignment traces and late per-neuron signs."""
        steps = spec.steps
        every = max(steps // spec.checkpoints, 1)
        late = int(spec.late_from * steps)
        m, res = train_regression(
            spec.rule,
            spec.gammas,
            spec.seeds,
            widths=spec.widths,
            activation=spec.activation,
            steps=steps,
            lr=spec.lr,
            batch_size=spec.batch_size,
            n_train=spec.n_train,
            n_val=spec.n_val,
            average_from=late,
            record_every=every,
            late_every=8,
            neurons=True,
            dtype=dtype_of(spec.dtype),
            record_at=np.unique(np.geomspace(1, steps, 60).astype(int)).tolist(),
            loss=spec.loss,
            layers=spec.layers,
            ctx=ctx,
        )
        steps_rec = np.asarray(res.steps_recorded)
        frames = []
        for l in range(res.alignment.shape[1]):
            frames.append(_trace_rows(spec.rule, m, res, l, steps_rec))
            frames.append(_neuron_rows(spec.rule, m, res.neuron_alignment[l], l, steps_rec >= late))
        df = pd.concat(frames, ignore_index=True)
        flags = pd.DataFrame(dict(gamma=m.gamma.values, seed=m.seed.values, diverged=res.diverged.cpu().numpy()))
        return df.merge(flags, on=["gamma", "seed"], how="left")

    def claims(self, df, p):
        """The early bump and the late sign-switching neurons, from the run's own table."""
        return transient_claims(df, p, self.size(p))

    def notes(self, p):
        """The setting and how alignment is sampled."""
        late_step = p["late_from"] * p["steps"]
        return (
            f"{p['activation']} MLP {p['widths']}, lr {p['lr']}, batch {p['batch_size']}, {p['steps']} steps, "
            f"{len(p['seeds'])} seeds. Alignment is recorded every {max(p['steps'] // p['checkpoints'], 1)} "
            "steps and at 60 log-spaced steps; per-neuron alignment (cosine of each postsynaptic neuron's row "
            f"of G and H) is examined over the last {1 - p['late_from']:.0%} of training "
            f"(steps ≥ {late_step:g}). " + convention_note(p)
        )

    def figures(self, df, p):
        """Alignment over training (log steps) and the late per-neuron sign statistics."""
        from plasticlab.experiments.hebbian.figures import neuron_figure, transient_figure

        tr, nr = df[df.kind == "trace"], df[df.kind == "neuron"]
        layers = sorted(tr.layer.unique())
        late_step = p["late_from"] * p["steps"]
        return [
            Figure(
                "transient_alignment",
                transient_figure(tr, layers, late_step, p["steps"]),
                "Alignment vs step (log axis); shaded: late window for the neuron statistics.",
            ),
            Figure(
                "transient_neurons", neuron_figure(nr, layers), "Per-neuron sign statistics in the late window."
            ),
        ]

    def tables(self, df, p):
        """Early peak vs late level, and the late neuron sign statistics, per rule × γ × layer."""
        return [
            Table(
                transient_summary(df, p),
                "Early peak (before half the late-window start) vs late mean of the seed-mean curve; "
                "fraction of neurons whose alignment took both signs in the late window; 'mixed': "
                "Hebbian in 20–80 % of late checkpoints (a real oscillation, not a rare excursion); "
                "fraction Hebbian less than half the time",
            )
        ]


def _trace_rows(rule: str, m: pd.DataFrame, res, layer: int, steps_rec: np.ndarray) -> pd.DataFrame:
    """One row per member and checkpoint: the layer's alignment and the validation loss."""
    T, _, E = res.alignment.shape
    return pd.DataFrame(
        dict(
            kind="trace",
            rule=rule,
            gamma=np.tile(m.gamma.values, T),
            seed=np.tile(m.seed.values, T),
            layer=layer,
            step=np.repeat(steps_rec, E),
            alignment=res.alignment[:, layer].double().cpu().numpy().ravel(),
            val_loss=res.val_loss.double().cpu().numpy().ravel(),
        )
    )


def _neuron_rows(rule: str, m: pd.DataFrame, neuron_alignment, layer: int, late: np.ndarray) -> pd.DataFrame:
    """One row per member and postsynaptic neuron: how often its row-wise alignment was positive over the late
    checkpoints, and whether it took both signs."""
    na = neuron_alignment.double().cpu().numpy()[late]  # (T_late, E, out)
    pos = np.nanmean(na > 0, axis=0)  # (E, out): fraction of late checkpoints Hebbian
    valid = np.isfinite(na).any(axis=0)
    both = (np.nanmax(na, axis=0) > 0) & (np.nanmin(na, axis=0) < 0)
    E, out = na.shape[1], na.shape[2]
    return pd.DataFrame(
        dict(
            kind="neuron",
            rule=rule,
            gamma=np.repeat(m.gamma.values, out),
            seed=np.repeat(m.seed.values, out),
            layer=layer,
            neuron=np.tile(np.arange(out), E),
            frac_hebbian=np.where(valid, pos, np.nan).ravel(),
            flips=np.where(valid, both, False).ravel(),
            mean_neuron_alignment=np.nanmean(na, axis=0).ravel(),
        )
    )


def _bump(trace: pd.DataFrame, late_step: float):
    """Early peak vs late level of the seed-mean alignment curve."""
    c = trace.groupby("step").alignment.mean().sort_index()
    early = c[(c.index > 0) & (c.index < late_step / 2)]
    late = c[c.index >= late_step]
    if early.empty or late.empty:
        return np.nan, np.nan, np.nan
    return float(early.max()), float(early.idxmax()), float(late.mean())


def transient_summary(df: pd.DataFrame, p: dict) -> pd.DataFrame:
    """Per (rule, γ, layer): early peak vs late level of the seed-mean curve, and late neuron sign statistics."""
    tr, nr = df[df.kind == "trace"], df[df.kind == "neuron"]
    late_step = p["late_from"] * p["steps"]
    rows = []
    for (rule, gamma, l), g in tr.groupby(["rule", "gamma", "layer"]):
        peak, at, late = _bump(g, late_step)
        n = nr[(nr.rule == rule) & (nr.gamma == gamma) & (nr.layer == l) & nr.frac_hebbian.notna()]
        rows.append(
            dict(
                rule=rule,
                gamma=gamma,
                layer=l,
                early_peak=peak,
                peak_step=at,
                late_mean=late,
                bump=peak - late,
                neurons=len(n),
                neurons_flipping=float(n.flips.mean()) if len(n) else np.nan,
                neurons_mixed=float(n.frac_hebbian.between(0.2, 0.8).mean()) if len(n) else np.nan,
                neurons_mostly_anti=float((n.frac_hebbian < 0.5).mean()) if len(n) else np.nan,
            )
        )
    return pd.DataFrame(rows)


def transient_claims(df: pd.DataFrame, p: dict, size: str) -> list[Claim]:
    """The early bump (largest over rule × γ) and the share of late neurons switching sign (2nd layer)."""
    summ = transient_summary(df, p)
    if summ.empty:
        return []
    layer = 1 if summ.layer.nunique() > 1 else 0
    sel = summ[(summ.layer == layer) & summ.bump.notna()]
    seeds = df[df.kind == "trace"].groupby(["gamma", "seed"]).diverged.first()
    div = int(seeds.sum())
    n_seeds = int((~seeds).groupby("gamma").sum().max()) if len(seeds) else 0
    best = sel.loc[sel.bump.idxmax()] if len(sel) else None
    mixed = summ[(summ.layer == layer) & summ.neurons_mixed.notna()]
    top = mixed.loc[mixed.neurons_mixed.idxmax()] if len(mixed) else None
    src = "transients (alignment over training)"
    return [
        Claim(
            "an early bump: the early peak of alignment exceeds its late level (largest over rule × γ, 2nd layer)",
            KPZ,
            src,
            math.nan,
            math.nan if best is None else float(best.bump),
            math.nan,
            0 if best is None else n_seeds,
            size,
            AtLeast(0.05),
            diverged=div,
            note="" if best is None else f"{best.rule}, γ = {best.gamma:g}, peak at step {best.peak_step:g}",
        ),
        Claim(
            "near stationarity single neurons switch between Hebbian and anti-Hebbian updates "
            "(share Hebbian in 20–80 % of late checkpoints, 2nd layer)",
            KPZ,
            src,
            math.nan,
            math.nan if top is None else float(top.neurons_mixed),
            math.nan,
            0 if top is None else int(top.neurons),
            size,
            AtLeast(0.1),
            diverged=div,
            note="" if top is None else f"{top.rule}, γ = {top.gamma:g}",
        ),
    ]
