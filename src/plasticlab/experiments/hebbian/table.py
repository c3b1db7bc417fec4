"""hebb-table: stationary Hebbian alignment of the 2nd layer per rule and γ.

Koplow, Poggio & Ziyin 2025, Table 1, MLP rows.

One chunk per rule; its seeds × γ members advance as one ensemble (per-member decay). The regression is
the standard one (32-d Gaussian inputs, 32-d outputs of a random tanh teacher). Stationarity
needs steps ≳ a few / (lr γ): reached at the largest γ, not at γ = 5e-5 in the quick run (only the
trend in γ is expected there).
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
    summarise,
    train_regression,
)
from plasticlab.experiments.hebbian.paper import TABLE1_GAMMAS, TABLE1_MLP, TABLE1_MLP_ROW
from plasticlab.rules import parse_rule, pick_lr
from plasticlab.study import (
    MAX_STEPS,
    Experiment,
    Figure,
    Interval,
    Require,
    RunContext,
    Table,
    convention,
    register,
    shared_fields,
)
from plasticlab.study.claims import KPZ, AllCells, AtLeast, Claim, Within, fraction, measure

TABLE_RULES = ["adam", "adam_l2", "sgd", "dfa", "random_nn"]
PAPER = TABLE1_MLP
PAPER_GAMMAS = TABLE1_GAMMAS
CELL_TOL = 0.1  # |ours − paper| per Table 1 cell; the paper leaves steps and widths open (trend matters)
CONVENTION_DEFAULTS, CONVENTION_CHOICES = convention_params("loss", "layers")
RULE_NAMES = dict(adam="adam (decoupled decay, AdamW)", adam_l2="adam_l2 (coupled L2, Adam(weight_decay))")


def paper_row(rule: str) -> list[float] | None:
    """The paper's Table 1 row for a rule, by its base name: ``sgd:momentum=0.9`` is set beside the SGD row
    (the paper does not say whether its SGD used momentum; that is what the variant tests)."""
    return PAPER.get(parse_rule(rule)[0])


def paper_cell(rule: str, gamma: float) -> float:
    """The paper's Table 1 value a (rule, γ) cell is set beside; NaN where the paper has none (or '—')."""
    row = paper_row(rule)
    return row[PAPER_GAMMAS.index(gamma)] if row is not None and gamma in PAPER_GAMMAS else math.nan


@dataclass
class Spec:
    """One rule's γ × seed ensemble, every member on the same data (one chunk)."""

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
    average_from: float
    dtype: str
    loss: str = convention("half_sum")
    layers: str = convention("plain")


@register
class HebbTable(Experiment):
    """hebb-table: Table 1's MLP rows, 2nd-layer Hebbian alignment per rule and weight decay."""

    name = "hebb-table"
    summary = "Table 1 (MLP rows): 2nd-layer Hebbian alignment per rule × weight decay γ"
    title = "weight decay makes every rule's signal Hebbian (Table 1, MLP rows)"
    budget_s = 60
    code_version = 2  # bump when run_chunk changes its numbers, so saved chunks are not reused
    spec_type = Spec
    columns = ("rule", "gamma", "seed", "layer", "alignment", "diverged", "collapsed")
    tiny = dict(
        seeds=[0],
        gammas=[0.0, 5e-3],
        widths=[6, 5, 5, 3],
        steps=40,
        n_train=256,
        n_val=20,
        rules=["sgd", "adam_l2"],
    )  # seconds: the contract test
    defaults = dict(
        rules=TABLE_RULES,
        gammas=PAPER_GAMMAS,
        seeds=list(range(10)),
        widths=[32, 64, 64, 32],
        activation="tanh",
        steps=100000,
        lr=0.1,
        adam_lr=0.01,
        batch_size=256,
        n_train=20000,
        n_val=2000,
        layer=1,
        average_from=0.75,
        dtype="float64",
        **CONVENTION_DEFAULTS,
    )
    quick = dict(
        seeds=[0, 1],
        widths=[32, 32, 32, 32],
        steps=5000,
        lr=0.2,
        adam_lr=0.03,
        n_train=10000,
        n_val=500,
        dtype="float32",
        average_from=0.8,
    )
    choices = dict(rules=RULES, activation=ACTIVATIONS, dtype=["float64", "float32"], **CONVENTION_CHOICES)

    constraints = dict(
        steps=Interval(int, 4, MAX_STEPS),
        layer=Interval(int, 0, None),
        average_from=Interval(float, 0, 1, closed="left"),
    )
    relations = (Require(("layer", "widths"), lambda i, w: i < len(w) - 1, "layer < len(widths) - 1"),)

    def chunks(self, p):
        """One chunk per rule, at its group's step size (adaptive rules: ``adam_lr``)."""
        keep = shared_fields(Spec, p, "rule", "lr")
        return [Spec(rule=r, lr=pick_lr(r, gradient=p["lr"], adaptive=p["adam_lr"]), **keep) for r in p["rules"]]

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """Train the rule's members; late alignment, loss and weight norm per run and layer."""
        steps = spec.steps
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
            average_from=int(spec.average_from * steps),
            record_every=max(steps // 40, 1),
            late_every=4,
            dtype=dtype_of(spec.dtype),
            loss=spec.loss,
            layers=spec.layers,
            ctx=ctx,
        )
        rows = []
        for l in range(len(spec.widths) - 1):
            rows.append(
                m.assign(
                    rule=spec.rule,
                    layer=l,
                    lr=spec.lr,
                    alignment=res.alignment_late[l].double().cpu().numpy(),
                    val_loss=res.val_loss_final.double().cpu().numpy(),
                    diverged=res.diverged.cpu().numpy(),
                    collapsed=res.collapsed[l].cpu().numpy(),
                    w_norm=res.W_mean[l].double().flatten(1).norm(dim=1).cpu().numpy(),
                )
            )
        return pd.concat(rows, ignore_index=True)

    def claims(self, df, p):
        """Table 1 cells (rule × γ) against the paper's values, and per rule: alignment rises with γ."""
        return table_claims(df, p, self.size(p))

    def notes(self, p):
        """The setting, what alignment is, and how far from stationary the run is."""
        g_min = sorted(set(p["gammas"]) - {0} or [0])[0]
        return (
            f"Student MLP widths {p['widths']} ({p['activation']}) on the standard student–teacher regression; "
            f"{p['steps']} steps, batch {p['batch_size']}, lr {p['lr']} (adaptive rules {p['adam_lr']}); "
            "alignment = cosine of batch-mean learning signal and batch-mean Hebbian matrix of layer "
            f"{p['layer'] + 1}, averaged over the last {1 - p['average_from']:.0%} of training and over "
            f"{len(p['seeds'])} seeds. '—' = collapsed or diverged. Stationarity takes ≳ a few/(lr·γ) steps: "
            f"lr·γ·(steps) = {p['lr'] * max(p['gammas']) * p['steps']:.3g} at the largest γ, "
            f"{p['lr'] * g_min * p['steps']:.3g} at the smallest γ > 0. Verdicts only for rules with a row "
            "in the paper's Table 1 (by base name); other rules are measurements in the tables and figure. "
            + convention_note(p)
        )

    def figures(self, df, p):
        """Alignment vs γ per rule beside the paper's rows (each drawn once), and every seed."""
        from plasticlab.experiments.hebbian.figures import table_figure

        sel = df[df.layer == p["layer"]]
        rows = {r: TABLE1_MLP_ROW[b] for r in p["rules"] if (b := parse_rule(r)[0]) in TABLE1_MLP_ROW}
        fig = table_figure(ours_summary(df, p), sel, paper_rows(), rows, p["rules"], p["layer"])
        return [
            Figure(
                "table_alignment",
                fig,
                "Hebbian alignment vs weight decay, ours (solid) beside the paper's (dashed).",
            )
        ]

    def tables(self, df, p):
        """Ours beside the paper per cell, ours in the paper's layout, and every layer."""
        s = ours_summary(df, p)
        m = s.rename(columns={"mean": "ours"})[["rule", "gamma", "ours"]]
        m["paper"] = [paper_cell(r, g) for r, g in zip(m.rule, m.gamma)]
        m["ours − paper"] = m.ours - m.paper
        m["T (steps)"] = p["steps"]
        m["lr·γ·T"] = [stationarity(r, g, p) for r, g in zip(m.rule, m.gamma)]
        wide = s.pivot(index="rule", columns="gamma", values="mean").reindex(p["rules"]).reset_index()
        wide.columns = ["rule"] + [f"γ={g:g}" for g in wide.columns[1:]]
        layer = p["layer"] + 1
        return [
            Table(
                m,
                f"Layer {layer} alignment: ours vs the paper's Table 1 (— = collapsed, or no paper row); T = "
                "training steps, lr·γ·T = how many times the decay has acted (stationary from about 5; lr of "
                "the rule's group)",
            ),
            Table(wide, "Ours, in the paper's layout"),
            Table(summarise(df, ["rule", "layer", "gamma"]), "Every layer (mean ± sem over seeds)"),
        ]


def stationarity(rule: str, gamma: float, p: dict) -> float:
    """lr·γ·T of a (rule, γ) cell: the decay's e-folds over training, at the step size of the rule's group."""
    return pick_lr(rule, gradient=p["lr"], adaptive=p["adam_lr"]) * gamma * p["steps"]


def ours_summary(df: pd.DataFrame, p: dict) -> pd.DataFrame:
    """Mean ± sem over seeds of the table's layer per (rule, γ), rules in the params' order."""
    s = summarise(df[df.layer == p["layer"]], ["rule", "gamma"])
    order = {r: i for i, r in enumerate(p["rules"])}
    return s.sort_values(["rule", "gamma"], key=lambda c: c.map(order) if c.name == "rule" else c)


def paper_rows() -> pd.DataFrame:
    """Table 1's MLP rows as the paper prints them, one per row name: (row, gamma, alignment)."""
    first = {row: r for r, row in reversed(TABLE1_MLP_ROW.items())}
    return pd.DataFrame(
        [dict(row=row, gamma=g, alignment=v) for row, r in first.items() for g, v in zip(PAPER_GAMMAS, PAPER[r])]
    )


def _cell_claim(rule: str, g: float, c: pd.DataFrame, pv: float, size: str) -> Claim:
    name = RULE_NAMES.get(rule, rule)
    div = int(c.diverged.sum())
    if g in PAPER_GAMMAS and paper_row(rule) is not None and math.isnan(pv):
        frac, n = fraction(c.collapsed[~c.diverged])
        return Claim(
            f"{name}, γ = {g:g}: weights collapse to 0 (the paper's '—')",
            KPZ,
            "Table 1 (MLP rows)",
            math.nan,
            frac,
            math.nan,
            n,
            size,
            AllCells("run collapsed"),
            diverged=div,
        )
    ok = c[~c.diverged & ~c.collapsed]
    m, sem, n = measure(ok.alignment)
    n_col = int((c.collapsed & ~c.diverged).sum())
    return Claim(
        f"{name}, γ = {g:g}: 2nd-layer Hebbian alignment",
        KPZ,
        "Table 1 (MLP rows)",
        pv,
        m,
        sem,
        n,
        size,
        Within(CELL_TOL),
        diverged=div,
        note=f"{n_col} collapsed" if n_col else "",
    )


def _trend_claim(rule: str, r: pd.DataFrame, size: str) -> Claim:
    s = summarise(r, ["gamma"]).dropna(subset=["mean"]).sort_values("gamma")
    rise, sem, n = math.nan, math.nan, 0
    if len(s) >= 2:
        rise = float(s["mean"].iloc[-1] - s["mean"].iloc[0])
        sem = float(np.hypot(*np.nan_to_num(s["sem"].iloc[[0, -1]].to_numpy())))
        n = int(s["n"].iloc[[0, -1]].min())
    gs = f"γ = {s.gamma.iloc[0]:g} → {s.gamma.iloc[-1]:g}" if len(s) >= 2 else "over γ"
    return Claim(
        f"{RULE_NAMES.get(rule, rule)}: alignment rises with weight decay ({gs})",
        KPZ,
        "Table 1 (MLP rows), stationarity theorem",
        math.nan,
        rise,
        sem,
        n,
        size,
        AtLeast(0.05),
        diverged=int(r.diverged.sum()),
    )


def table_claims(df: pd.DataFrame, p: dict, size: str) -> list[Claim]:
    """One claim per Table 1 cell of a rule the paper reports, then that rule's trend claim (layer
    p["layer"]). A rule without a row in the paper has no claim: it is a measurement in the tables only."""
    sel = df[df.layer == p["layer"]]
    out = []
    for rule in p["rules"]:
        r = sel[sel.rule == rule]
        row = paper_row(rule)
        if row is None:
            continue
        for g in sorted(r.gamma.unique()):
            if g in PAPER_GAMMAS:
                out.append(_cell_claim(rule, float(g), r[r.gamma == g], row[PAPER_GAMMAS.index(g)], size))
        out.append(_trend_claim(rule, r, size))
    return out
