"""hebb-valopt: where is the lowest validation loss on the noise σ × decay γ map, and how Hebbian is it there?

Koplow, Poggio & Ziyin (2025) state that the lowest validation loss lies near the transition band
(alignment ≈ 0), so strong Hebbian alignment does not mean better generalisation. One chunk per setting;
its σ × γ × seed members run as one ensemble (per-member forward-pass noise σ and decoupled decay γ, SGD):

- ``mlp``         the standard student–teacher regression, 2-layer tanh MLP, noiseless labels;
- ``mlp_noise``   the same with label noise;
- ``mlp_small``   label noise and few training samples;
- ``linreg``      linear regression with label noise and n_train ≈ 2d (the ridge optimum is at γ > 0);
- ``digits``      scikit-learn's digits, 2-layer tanh MLP, cross-entropy (the classification case).

Per setting: a validation-loss map beside the alignment map (alignment of the last weight matrix — the 2nd
layer of the 2-layer MLPs, the only one of linear regression — averaged over the second half of training),
the validation-optimal (σ, γ), and the alignment there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from plasticlab.experiments.hebbian._common import (
    LAYER_INITS,
    convention_note,
    convention_params,
    members,
    train_sgd_grid,
    unique_seeds,
)
from plasticlab.study import Experiment, Figure, RunContext, Table, convention, register, shared_fields
from plasticlab.study.claims import KPZ, Claim, Within, measure

SETTINGS: dict[str, dict[str, Any]] = {
    "mlp": dict(kind="teacher", label_noise=0.0, n_train=20000),
    "mlp_noise": dict(kind="teacher", label_noise=1.0, n_train=20000),
    "mlp_small": dict(kind="teacher", label_noise=1.0, n_train=128),
    "linreg": dict(kind="linreg", label_noise=1.0, n_train=64),
    "digits": dict(kind="digits"),
}
CONVENTION_DEFAULTS, CONVENTION_CHOICES = convention_params("loss", "layers", "noise_at")
NOISE_WHERE = dict(weights="forward-pass weight", signal="learning-signal")
SOURCE = "Sec. on validation loss (phase diagram): lowest validation loss near the transition band"


def _data(setting: str, seeds, d: int, n_val: int, device=None, init: str = "normal"):
    from plasticlab.tasks import digits, teacher_regression

    s = SETTINGS[setting]
    if s["kind"] == "digits":
        return digits(dtype=torch.float64, device=device), "tanh"
    if s["kind"] == "linreg":
        data = teacher_regression(
            seeds,
            d_in=d,
            d_out=1,
            n_train=s["n_train"],
            n_val=n_val,
            teacher_hidden=(),
            teacher_activation="linear",
            teacher_scale=math.sqrt(d),
            label_noise=s["label_noise"],
            init=init,
            device=device,
        )
        return data, "linear"
    data = teacher_regression(
        seeds,
        d_in=d,
        d_out=d,
        n_train=s["n_train"],
        n_val=n_val,
        label_noise=s["label_noise"],
        init=init,
        device=device,
    )
    return data, "tanh"


@dataclass
class Spec:
    """One setting's σ × γ × seed grid, trained as one ensemble (one chunk)."""

    setting: str
    sigmas: list[float]
    gammas: list[float]
    seeds: list[int]
    d: int
    hidden: int
    n_val: int
    steps: int
    lr: float
    batch_size: int
    loss: str = convention("half_sum")
    layers: str = convention("plain")
    noise_at: str = convention("weights")


@register
class HebbValopt(Experiment):
    """σ × γ maps of validation loss and alignment per setting, and the alignment at the optimum."""

    name = "hebb-valopt"
    summary = "validation-loss optimum on the σ × γ map beside the alignment map, per setting"
    title = "is the validation optimum near the alignment ≈ 0 band?"
    budget_s = 120
    code_version = 1
    spec_type = Spec
    defaults = dict(
        settings=list(SETTINGS),
        sigmas=[0.0, 0.03, 0.1, 0.3],
        gammas=[0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1],
        seeds=[0, 1, 2],
        d=32,
        hidden=32,
        n_val=1000,
        steps=5000,
        lr=0.05,
        batch_size=64,
        **CONVENTION_DEFAULTS,
    )
    quick = dict(
        settings=["linreg", "mlp_small"],
        sigmas=[0.0, 0.3],
        gammas=[0.0, 1e-2, 1e-1],
        seeds=[0, 1],
        steps=300,
        n_val=200,
    )
    choices = dict(settings=list(SETTINGS), **CONVENTION_CHOICES)

    def chunks(self, p):
        """One chunk per setting."""
        keep = shared_fields(Spec, p, "setting")
        return [Spec(setting=s, **keep) for s in p["settings"]]

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """Train the setting's σ × γ × seed members; one row per member (last layer's alignment)."""
        return run_valopt_chunk(spec, ctx)

    def claims(self, df, p):
        """Per setting: the alignment at the validation-optimal cell is ≈ 0."""
        return valopt_claims(df)

    def notes(self, p):
        """The question, the test, and how far each γ is from stationary."""
        stat = ", ".join(f"{g:g} → {p['lr'] * g * p['steps']:.3g}" for g in p["gammas"])
        sets = "; ".join(f"{k}: {v}" for k, v in SETTINGS.items() if k in p["settings"])
        return (
            "Koplow, Poggio & Ziyin (2025): the lowest validation loss lies near the transition band between "
            "Hebbian and anti-Hebbian (alignment ≈ 0). The paper gives no number; our test bounds |alignment| "
            f"at the validation-optimal cell. SGD lr {p['lr']}, batch {p['batch_size']}, {p['steps']} steps, "
            f"{len(p['seeds'])} seeds; σ = {NOISE_WHERE[p['noise_at']]} noise, γ = decoupled decay; lr·γ·steps "
            f"at each γ: {stat} (≳ 3 is stationary). Settings: {sets}. "
            + convention_note(
                p, " (the loss convention does not apply to digits: cross-entropy is a batch mean already)"
            )
        )

    def figures(self, df, p):
        """Validation loss beside alignment over σ × γ per setting."""
        from plasticlab.experiments.hebbian.figures import valopt_figure

        settings = [s for s in p["settings"] if (df.setting == s).any()]
        grids = {s: grid(df, s) for s in settings}
        best = {s: (o["sigma"], o["gamma"]) for s in settings if (o := optimum(df, s))}
        return [
            Figure(
                "valopt_maps",
                valopt_figure(grids, best),
                "Validation loss (left) beside alignment (right) per setting; ★ = validation optimum.",
            )
        ]

    def tables(self, df, p):
        """The validation-optimal cell per setting, and every cell."""
        cells = df.groupby(["setting", "sigma", "gamma"])[["val_loss", "alignment"]].mean().reset_index()
        return [
            Table(pd.DataFrame([optimum(df, s) for s in p["settings"]]), "Validation-optimal (σ, γ) per setting"),
            Table(cells, "Every cell (means over seeds)"),
        ]


def run_valopt_chunk(spec: Spec, ctx: RunContext | None = None) -> pd.DataFrame:
    """One setting: σ × γ × seed members; one row per member (last layer's alignment)."""
    m = members(spec.seeds, sigma=spec.sigmas, gamma=spec.gammas)
    dev = None if ctx is None else ctx.device
    data, act = _data(spec.setting, unique_seeds(spec.seeds), spec.d, spec.n_val, dev, LAYER_INITS[spec.layers])
    widths = [data.d_in, data.d_out] if act == "linear" else [data.d_in, spec.hidden, data.d_out]
    steps = spec.steps
    res = train_sgd_grid(
        m,
        data,
        widths,
        act,
        m.sigma.values,
        steps=steps,
        lr=spec.lr,
        batch_size=spec.batch_size,
        record_every=max(steps // 10, 1),
        loss=spec.loss,
        layers=spec.layers,
        noise_at=spec.noise_at,
        ctx=ctx,
    )
    last = len(widths) - 2
    return m.drop(columns="seed_index").assign(
        setting=spec.setting,
        layer=last,
        alignment=res.alignment_late[last].cpu().numpy(),
        val_loss=res.val_loss_final.cpu().numpy(),
        diverged=res.diverged.cpu().numpy(),
        lr_gamma_steps=spec.lr * m.gamma.to_numpy() * steps,
    )


def grid(df: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Per (σ, γ) of one setting: mean validation loss and alignment over non-diverged seeds."""
    d = df[(df.setting == setting) & ~df.diverged]
    return (
        d.groupby(["sigma", "gamma"])
        .agg(val_loss=("val_loss", "mean"), alignment=("alignment", "mean"), n=("seed", "count"))
        .reset_index()
    )


def optimum(df: pd.DataFrame, setting: str) -> dict:
    """The validation-optimal (σ, γ) of a setting and the alignment there (mean ± sem over seeds)."""
    g = grid(df, setting).dropna(subset=["val_loss"])
    if g.empty:
        return dict(
            setting=setting, sigma=np.nan, gamma=np.nan, val_loss=np.nan, alignment=np.nan, sem=np.nan, n=0
        )
    best = g.loc[g.val_loss.idxmin()]
    cell = df[(df.setting == setting) & ~df.diverged & (df.sigma == best.sigma) & (df.gamma == best.gamma)]
    mean, sem, n = measure(cell.alignment)
    return dict(
        setting=setting,
        sigma=best.sigma,
        gamma=best.gamma,
        val_loss=best.val_loss,
        val_loss_at_0=float(g[(g.sigma == 0) & (g.gamma == 0)].val_loss.mean()),
        alignment=mean,
        sem=sem,
        n=n,
        alignment_max=float(g.alignment.max()),
        alignment_min=float(g.alignment.min()),
    )


def valopt_claims(df: pd.DataFrame) -> list[Claim]:
    """Per setting: the alignment at the validation optimum is near 0 (|·| ≤ 0.15; the paper gives no number)."""
    out = []
    for setting in dict.fromkeys(df.setting):
        o = optimum(df, setting)
        out.append(
            Claim(
                f"{setting}: alignment at the validation-optimal (σ = {o['sigma']:g}, γ = {o['gamma']:g}) is ≈ 0",
                KPZ,
                SOURCE,
                0.0,
                o["alignment"],
                o["sem"],
                int(o["n"]),
                "grid of the report",
                Within(0.15),
                int(df[(df.setting == setting)].diverged.sum()),
            )
        )
    return out
