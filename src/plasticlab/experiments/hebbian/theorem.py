"""hebb-theorem: the stationarity identity ⟨E g, E[h_b h_aᵀ]⟩ = γ E‖h_b‖², rule by rule.

The identity is the stationarity theorem of Koplow, Poggio & Ziyin 2025: at stationarity E[ΔW] = 0, i.e.
E g = γ E W, whatever produced g; then ⟨E g, E[h_b h_aᵀ]⟩ = γ ⟨E W, E[W h_a h_aᵀ]⟩ ≈ γ E‖h_b‖² (exact up to
the weights' own fluctuations). Both sides are time averages over the late window of one run.

Claims are scored only where the paper makes them: its theorem is about non-local learners (registry tag
``local`` false), each on the identity its own stationarity implies. Local rules (plain Hebb, which has no
stationary point under weak decay; Oja) and decoupled Adam measured on its raw gradient are run and shown
as measurements, without a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from plasticlab.experiments.hebbian._common import (
    ACTIVATIONS,
    RULES,
    convention_note,
    convention_params,
    dtype_of,
    train_regression,
)
from plasticlab.metrics.hebbian import cosine
from plasticlab.rules import parse_rule, pick_lr
from plasticlab.rules.registry import get as get_rule
from plasticlab.study import (
    MAX_STEPS,
    POSITIVE,
    Experiment,
    Figure,
    Interval,
    RunContext,
    Table,
    convention,
    register,
    shared_fields,
)
from plasticlab.study.claims import KPZ, AtMost, Claim, measure

CONVENTION_DEFAULTS, CONVENTION_CHOICES = convention_params("loss", "layers")
RAW = "grad"  # a preconditioned rule measured once more on its raw gradient −∂ℓ/∂W


@dataclass
class Spec:
    """One rule's γ × seed ensemble (one chunk); ``measure`` only on the raw-gradient rerun."""

    rule: str
    lr: float
    gammas: list[float]
    seeds: list[int]
    widths: list[int]
    activation: str
    steps: int
    batch_size: int
    n_train: int
    n_val: int
    dtype: str
    measure: str | None = None
    loss: str = convention("half_sum")
    layers: str = convention("plain")


def preconditioned(rule: str) -> bool:
    """A rule whose reported signal is its preconditioned update and that can report the raw gradient."""
    return "measure" in get_rule(parse_rule(rule)[0]).hyperparameters()


def scored(rule: str, measured: str) -> bool:
    """The paper's theorem covers this (rule, measured signal): a non-local learner on its own signal."""
    return not get_rule(parse_rule(rule)[0]).local and measured != RAW


@register
class HebbTheorem(Experiment):
    """hebb-theorem: the stationarity identity E g = gamma E W checked rule by rule."""

    name = "hebb-theorem"
    summary = "stationarity identity ⟨E g, E h_b h_aᵀ⟩ = γ E‖h_b‖² checked for every rule"
    title = "at stationarity every rule's signal is Hebbian on average"
    budget_s = 60
    code_version = 3  # bump when run_chunk changes its numbers, so saved chunks are not reused
    spec_type = Spec
    columns = ("rule", "gamma", "seed", "layer", "lhs", "rhs", "rel_error", "identity", "diverged")
    tiny = dict(
        rules=["sgd", "hebbian"], gammas=[0.02], seeds=[0], widths=[6, 5, 3], steps=40, n_train=256, n_val=20
    )  # seconds: the contract test
    defaults = dict(
        rules=["sgd", "adam", "adam_l2", "dfa", "random_nn", "hebbian", "oja"],
        gammas=[5e-3, 2e-2],
        seeds=[0, 1, 2, 3, 4],
        widths=[32, 32, 32, 32],
        activation="tanh",
        steps=40000,
        lr=0.1,
        adam_lr=0.03,
        local_lr=0.01,
        batch_size=256,
        n_train=20000,
        n_val=2000,
        tolerance=0.1,
        dtype="float64",
        **CONVENTION_DEFAULTS,
    )
    quick = dict(gammas=[2e-2], seeds=[0, 1], steps=2000, n_train=5000, n_val=500, dtype="float32", adam_lr=0.03)
    choices = dict(rules=RULES, activation=ACTIVATIONS, dtype=["float64", "float32"], **CONVENTION_CHOICES)

    constraints = dict(steps=Interval(int, 4, MAX_STEPS), tolerance=POSITIVE)

    def chunks(self, p):
        """One chunk per rule (local rules at ``local_lr``: Oja's −y²W term is Euler-unstable once lr·y² > 2),
        plus each preconditioned rule once more measured on its raw gradient."""
        keep = shared_fields(Spec, p, "rule", "lr")
        lrs = dict(gradient=p["lr"], adaptive=p["adam_lr"], local=p["local_lr"])
        out = [Spec(rule=r, lr=pick_lr(r, **lrs), **keep) for r in p["rules"]]
        return out + [Spec(**{**vars(s), "measure": RAW}) for s in out if preconditioned(s.rule)]

    def spec_dict(self, spec):
        """The spec as the dict the sweep layer hashes: ``measure`` only where set (the chunk hashes of
        runs made before the typed spec stay valid)."""
        d = super().spec_dict(spec)
        return d if d.get("measure") is not None else {k: v for k, v in d.items() if k != "measure"}

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """Train the rule's members; both sides of the identity and its error terms per run and layer."""
        steps = spec.steps
        measured = spec.measure or "signal"
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
            average_from=steps // 2,
            record_every=steps // 10,
            dtype=dtype_of(spec.dtype),
            measure=measured,
            loss=spec.loss,
            layers=spec.layers,
            ctx=ctx,
        )
        rows = []
        gam = torch.tensor(m.gamma.to_numpy(dtype=np.float64, copy=True), device=res.diverged.device)
        for l, (G, H, P, W) in enumerate(zip(res.G_mean, res.H_mean, res.post_sq_mean, res.W_mean)):
            G, H, W = G.double(), H.double(), W.double()
            lhs = (G * H).flatten(1).sum(1)
            rhs = gam * P.double()
            gW = gam[:, None, None] * W
            rows.append(
                m.assign(
                    rule=spec.rule,
                    identity=identity_of(spec.rule, measured),
                    lr=spec.lr,
                    steps=steps,
                    layer=l,
                    lhs=lhs.cpu().numpy(),
                    rhs=rhs.cpu().numpy(),
                    rel_error=((lhs - rhs).abs() / rhs.abs()).cpu().numpy(),
                    # lhs − rhs = ⟨Ḡ − γW̄, H̄⟩ + γ(⟨W̄, H̄⟩ − E‖h_b‖²), both from the same late-window steps:
                    # net drift of W over the window (Ḡ − γW̄ = ΔW/(lr·T) for decoupled decay) + weight jitter
                    rel_drift_term=(((G - gW) * H).flatten(1).sum(1) / rhs.abs()).cpu().numpy(),
                    rel_jitter_term=((gam * (W * H).flatten(1).sum(1) - rhs) / rhs.abs()).cpu().numpy(),
                    stationarity_residual=((G - gW).flatten(1).norm(dim=1) / gW.flatten(1).norm(dim=1))
                    .cpu()
                    .numpy(),
                    alignment=res.alignment_late[l].double().cpu().numpy(),
                    alignment_timeavg=cosine(G.double(), H.double()).cpu().numpy(),
                    diverged=res.diverged.cpu().numpy(),
                    collapsed=res.collapsed[l].cpu().numpy(),
                )
            )
        return pd.concat(rows, ignore_index=True)

    def claims(self, df, p):
        """Per non-local rule: the identity its stationarity implies holds to ``tolerance``."""
        return theorem_claims(df, p, self.size(p))

    def notes(self, p):
        """What the two sides are, and which rows are scored."""
        return (
            "Koplow, Poggio & Ziyin 2025 (stationarity theorem): if E[ΔW] = 0 with ΔW = η(g − γW), then "
            "E g = γ E W for any rule g, so ⟨E g, E[h_b h_aᵀ]⟩ = γ E‖h_b‖² ≥ 0. Left side: time-mean signal · "
            f"time-mean Hebbian matrix over the second half of {p['steps']} steps; right side: γ × time-mean "
            "‖h_b‖² per sample; relative error |lhs − rhs| / rhs over runs that did not diverge. "
            f"Widths {p['widths']}, {p['activation']}, lr {p['lr']} (adaptive rules {p['adam_lr']}, local rules "
            f"{p['local_lr']}). Verdicts only for the paper's non-local learners, each on the identity its "
            "stationarity implies (decoupled Adam: E[P⁻¹g] = γW on its preconditioned update); local rules and "
            "decoupled Adam on its raw gradient are measurements in the table. The error splits into "
            "drift_term (net drift of the weights over the window: not yet stationary) and jitter_term "
            "(−γ·tr(Cov_t(W) E[h_a h_aᵀ]), the weights' own fluctuation); residual = ‖Ḡ − γW̄‖/‖γW̄‖. "
            + convention_note(p)
        )

    def figures(self, df, p):
        """Both sides of the identity, every run × layer."""
        from plasticlab.experiments.hebbian.figures import theorem_figure

        return [
            Figure(
                "theorem_identity",
                theorem_figure(df[~df.diverged], p["rules"]),
                "Each point is one run and layer; on the dashed line the identity holds.",
            )
        ]

    def tables(self, df, p):
        """Both sides of the identity per rule, measured signal, γ and layer."""
        return [
            Table(
                theorem_table(df, p["rules"]),
                "Both sides of the identity per rule, γ and layer (means "
                "over seeds that did not diverge; scored: a verdict above)",
            )
        ]


def theorem_table(df: pd.DataFrame, rules: list[str]) -> pd.DataFrame:
    """Per (rule, identity, γ, layer): the means of both sides, the error terms and the diverged count."""
    agg = (
        df[~df.diverged]
        .groupby(["rule", "identity", "gamma", "layer"])
        .agg(
            lhs=("lhs", "mean"),
            rhs=("rhs", "mean"),
            rel_error_mean=("rel_error", "mean"),
            rel_error_max=("rel_error", "max"),
            drift_term=("rel_drift_term", "mean"),
            jitter_term=("rel_jitter_term", "mean"),
            residual=("stationarity_residual", "mean"),
            alignment=("alignment", "mean"),
            alignment_timeavg=("alignment_timeavg", "mean"),
            n=("seed", "count"),
        )
        .reset_index()
    )
    keys = ["rule", "identity", "gamma", "layer"]
    div = df.groupby(keys).diverged.sum().rename("diverged").reset_index()
    agg = div.merge(agg, on=keys, how="left")
    agg.insert(2, "scored", [scored(r, measured_of(r, i)) for r, i in zip(agg.rule, agg.identity)])
    order = {r: i for i, r in enumerate(rules)}
    return agg.sort_values(keys, key=lambda c: c.map(order) if c.name == "rule" else c).reset_index(drop=True)


def theorem_claims(df: pd.DataFrame, p: dict, size: str) -> list[Claim]:
    """The identity each non-local rule's stationarity implies holds to ``tolerance`` (mean relative error over
    runs × layers, the drift and jitter terms in the note). A rule whose runs all diverged is a measured
    failure with n = 0, never a missing row."""
    out = []
    for (rule, ident), all_runs in df.groupby(["rule", "identity"], sort=False):
        if not scored(rule, measured_of(rule, ident)):
            continue
        s = all_runs[~all_runs.diverged]
        mean, sem, n = measure(s.rel_error)
        note = (
            f"drift term {s.rel_drift_term.mean():+.1%}, jitter term {s.rel_jitter_term.mean():+.1%}"
            if len(s)
            else "no stationary state"
        )
        out.append(
            Claim(
                f"{rule}: stationarity identity {ident} (relative error of ⟨E g, E h_b h_aᵀ⟩ = γE‖h_b‖²)",
                KPZ,
                "stationarity theorem",
                np.nan,
                mean,
                sem,
                n,
                size,
                AtMost(p["tolerance"]),
                int(all_runs.diverged.sum()),
                note=note,
            )
        )
    return out


def identity_of(rule: str, measured: str) -> str:
    """Which stationarity identity a run's measured signal tests: E[g] = γW on the rule's own signal (for
    coupled forms and the raw gradient: g = −∂ℓ/∂W), or E[P⁻¹g] = γW on a preconditioned update."""
    if preconditioned(rule) and measured != RAW:
        return "E[P⁻¹g] = γW"
    return "E[g] = γW"


def measured_of(rule: str, ident: str) -> str:
    """The signal a run of ``rule`` testing identity ``ident`` was measured on (the inverse of identity_of)."""
    return "signal" if ident == identity_of(rule, "signal") else RAW
