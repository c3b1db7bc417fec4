"""rule-atlas: every rule of the library on the same teacher-regression task, with and without weight decay
and forward-pass noise: final loss, stationary Hebbian alignment, the non-gradient fraction of the rule's
vector field at the final weights, and whether the run converged, diverged or collapsed.

The point (Koplow, Poggio & Ziyin 2025, carried over to the classic local rules): a Hebbian signature
(alignment > 0) does not identify the rule: gradient and non-gradient rules, learning and non-learning
ones, land at the same alignment.

One chunk per rule: its decay × noise × seed grid is one ensemble (per-member γ and σ). The non-gradient
fraction uses ``plasticlab.analysis`` at each member's final weights on a fixed batch of its training data,
with the rule's state warmed up there (Adam moments, BCM thresholds, baselines) and noise averaged over a
few fixed draws.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import torch

from plasticlab.analysis import analyse, loop_test, member, rule_field, warm_state
from plasticlab.experiments.hebbian._common import ADAM_RULES
from plasticlab.networks.mlp import init_mlp
from plasticlab.rules import make_rule, parse_rule, rule_names
from plasticlab.simulation.train_mlp import train_mlp
from plasticlab.study import MAX_STEPS, POSITIVE, SIZE, Experiment, Interval, Require, register
from plasticlab.study.claims import BEYOND, KPZ, AllCells, AtMost, Claim, fraction
from plasticlab.study.report import Report
from plasticlab.tasks import teacher_regression

# Rule lists and categories are views of the rule registry, read when used: a rule registered from user
# code joins them (and the atlas's default list) with no edit here.
ATLAS = rule_names()
GRADIENT_RULES = rule_names(
    gradient=True
)  # exact gradients of a batch loss (random_nn: of the pseudo-target loss)
LEARNING_RULES = rule_names(local=False)  # rules that transport an error: they learn the task
CURL_RULES = rule_names(gradient=False)  # not gradients by construction: their fields must show clear curl


def atlas_rule(name: str, lr: float, gamma=0.0, sigma=0.0):
    """The rule as the atlas runs it: exp_grad takes the exact exponentiated step at the trainer's lr."""
    hyper = {"max_lr": lr} if parse_rule(name)[0] == "exp_grad" and "max_lr" not in parse_rule(name)[1] else {}
    return make_rule(name, gamma=gamma, sigma=sigma, **hyper)


def rule_lr(name: str, p: dict) -> float:
    """The step size a rule trains with: ``adam_lr`` for the Adam rules, ``lr`` otherwise."""
    return p["adam_lr"] if parse_rule(name)[0] in ADAM_RULES else p["lr"]


@register
class RuleAtlas(Experiment):
    """rule-atlas: every registered rule on one regression, with its alignment and non-gradient fraction."""

    name = "rule-atlas"
    summary = "Every rule on teacher regression ± decay ± noise: loss, Hebbian alignment, non-gradient fraction"
    budget_s = 300
    columns = (
        "rule",
        "weight_decay",
        "noise",
        "seed",
        "final_loss",
        "alignment",
        "nongradient_fraction",
        "status",
    )
    tiny = dict(
        rules=["sgd", "curl"],
        seeds=[0],
        steps=20,
        n_train=100,
        n_val=20,
        d_in=4,
        hidden=4,
        d_out=2,
        analysis_batch=16,
        warm_steps=2,
        noise_draws=2,
        batch_size=16,
    )  # seconds: the contract test
    defaults = dict(
        rules=list(ATLAS),  # the built-in rules; a user rule joins by name (choices below are live)
        gammas=[0.0, 1e-2],
        sigmas=[0.0, 0.2],
        seeds=[0, 1, 2, 3, 4],
        steps=20000,
        lr=0.05,
        adam_lr=2e-3,
        batch_size=64,
        d_in=16,
        hidden=16,
        d_out=8,
        activation="tanh",
        n_train=4000,
        n_val=500,
        analysis_batch=128,
        warm_steps=20,
        noise_draws=4,
        loop_planes=2,
        converge_ratio=0.1,
    )
    quick = dict(seeds=[0, 1], steps=2000, n_train=2000)
    choices = dict(rules=ATLAS, activation=["linear", "relu", "tanh", "sigmoid"])

    constraints = dict(
        analysis_batch=SIZE,
        warm_steps=Interval(int, 0, MAX_STEPS),
        noise_draws=Interval(int, 1, 10_000),
        loop_planes=Interval(int, 0, 10_000),
        converge_ratio=POSITIVE,
    )
    relations = (Require(("analysis_batch", "n_train"), lambda a, n: a <= n, "analysis_batch <= n_train"),)

    def chunks(self, p):
        common = {k: v for k, v in p.items() if k != "rules"}
        return [dict(common, rule=r) for r in p["rules"]]

    def run_chunk(self, spec):
        return run_rule(spec)

    def claims(self, df, p):
        """Gradient vs curl fields, Hebbian signature across both, decay and noise trends."""
        return atlas_claims(df, p, self.size(p))

    def report(self, df, p, out):
        _report(df, p, out)


def run_rule(spec: dict) -> pd.DataFrame:
    """One rule's chunk: its decay x noise x seed grid trained as one ensemble, then analysed per member."""
    name, lr = spec["rule"], rule_lr(spec["rule"], spec)
    conds = list(itertools.product(spec["gammas"], spec["sigmas"], spec["seeds"]))
    gammas = [c[0] for c in conds]
    sigmas = [c[1] for c in conds]
    seeds = torch.tensor([c[2] for c in conds], dtype=torch.int64)
    widths = [spec["d_in"], spec["hidden"], spec["d_out"]]
    data = teacher_regression(
        seeds,
        d_in=spec["d_in"],
        d_out=spec["d_out"],
        n_train=spec["n_train"],
        n_val=spec["n_val"],
        teacher_hidden=(spec["hidden"],),
    )
    net = init_mlp(seeds, widths, spec["activation"])
    rule = atlas_rule(name, lr, gamma=gammas, sigma=sigmas)
    res = train_mlp(
        net,
        rule,
        data,
        seeds,
        steps=spec["steps"],
        lr=lr,
        batch_size=spec["batch_size"],
        record_every=max(1, spec["steps"] // 20),
    )
    zero_loss = 0.5 * (data.y_val**2).sum(-1).mean(-1)
    # the bare signal (no decay, no noise) at each seed's initial weights: defined even when runs diverge
    init = {}
    for e, (_g, _s, seed) in enumerate(conds):
        if seed not in init:
            init[seed] = _field_stats(name, lr, 0.0, 0.0, int(seed), net, data, e, spec, loop=False)[
                "nongradient_fraction"
            ]
    rows = []
    for e, (g, s, seed) in enumerate(conds):
        row = dict(
            rule=name,
            weight_decay=g,
            noise=s,
            seed=seed,
            lr=lr,
            final_loss=res.val_loss_final[e].item(),
            loss_ratio=(res.val_loss_final[e] / zero_loss[e]).item(),
            alignment=res.alignment_late[-1, e].item(),
            alignment_hidden=res.alignment_late[0, e].item(),
            diverged=bool(res.diverged[e]),
            collapsed=bool(res.collapsed[:, e].any()),
            weight_norm=math.sqrt(sum(W[e].pow(2).sum().item() for W in res.net.weights)),
        )
        row.update(_field_stats(name, lr, g, s, int(seed), res.net, data, e, spec))
        row["nongradient_fraction_init"] = init[seed]
        row["status"] = _status(row, spec["converge_ratio"])
        row["converged"] = row["status"] == "converged"
        rows.append(row)
    return pd.DataFrame(rows)


NAN_FIELD = dict(
    nongradient_fraction=float("nan"),
    max_real_eig=float("nan"),
    max_imag_eig=float("nan"),
    loop_ratio=float("nan"),
)


def _field_stats(name, lr, gamma, sigma, seed, net, data, e, spec, loop=True) -> dict:
    """Non-gradient analysis of member e's rule (scalar γ, σ) at the weights of ``net``."""
    if not all(torch.isfinite(W[e]).all() for W in net.weights):
        return dict(NAN_FIELD)
    rule = atlas_rule(name, lr, gamma=gamma, sigma=sigma)
    one = member(net, e)
    state = warm_state(
        rule, one, _member_data(data, e), seed, steps=spec["warm_steps"], batch_size=spec["batch_size"]
    )
    B = spec["analysis_batch"]
    steps = tuple(range(spec["noise_draws"])) if sigma else (0,)
    F, theta = rule_field(
        rule,
        one,
        data.x_train[e : e + 1, :B],
        data.y_train[e : e + 1, :B],
        data.loss,
        seed=seed,
        state=state,
        steps=steps,
    )
    a = analyse(F, theta)
    if not (math.isfinite(a.nongradient_fraction) and math.isfinite(a.max_real)):
        return dict(NAN_FIELD)
    out = dict(
        nongradient_fraction=a.nongradient_fraction,
        max_real_eig=a.max_real,
        max_imag_eig=a.max_imag,
        loop_ratio=float("nan"),
    )
    if loop and spec["loop_planes"]:
        out["loop_ratio"] = loop_test(
            F, theta, planes=spec["loop_planes"], points=8, seed=seed, radius=1e-4 * max(1.0, theta.norm().item())
        ).mean_abs
    return out


def _member_data(data, e):
    from plasticlab.tasks.base import Dataset

    return Dataset(
        data.x_train[e : e + 1],
        data.y_train[e : e + 1],
        data.x_val[e : e + 1],
        data.y_val[e : e + 1],
        data.loss,
        data.name,
    )


def _status(row: dict, converge_ratio: float) -> str:
    finite = all(math.isfinite(row[k]) for k in ("final_loss", "nongradient_fraction"))
    if row["diverged"] or not finite or row["loss_ratio"] > 1e3:
        return "diverged"
    if row["collapsed"] or not math.isfinite(row["alignment"]):
        return "collapsed"
    return "converged" if row["loss_ratio"] < converge_ratio else "not converged"


# -- report -------------------------------------------------------------------------------------------------
def _condition(g: float, s: float) -> str:
    return f"γ={g:g}, σ={s:g}"


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (rule, γ, σ): means over members that neither diverged nor collapsed, plus status counts."""
    keys = ["rule", "weight_decay", "noise"]
    ok = df[df.status.isin(["converged", "not converged"])]
    means = ok.groupby(keys)[
        [
            "final_loss",
            "loss_ratio",
            "alignment",
            "alignment_hidden",
            "nongradient_fraction",
            "loop_ratio",
            "max_real_eig",
        ]
    ].mean()
    init = df.groupby(keys).nongradient_fraction_init.mean()
    counts = df.groupby(keys).status.agg(
        n=len,
        converged=lambda s: int((s == "converged").sum()),
        diverged=lambda s: int((s == "diverged").sum()),
        collapsed=lambda s: int((s == "collapsed").sum()),
    )
    out = counts.join(means).join(init).reset_index()
    order = {r: i for i, r in enumerate(ATLAS)}
    return out.sort_values(
        ["rule", "weight_decay", "noise"], key=lambda c: c.map(order) if c.name == "rule" else c
    ).reset_index(drop=True)


def _report(df: pd.DataFrame, p: dict, out) -> None:
    rep = Report(out, "Rule atlas: Hebbian signatures versus non-gradient structure", p)
    summ = summary_table(df)
    rep.text(
        "Every rule of the library trained on the same student–teacher regression "
        f"({p['d_in']}→{p['hidden']}→{p['d_out']} {p['activation']} MLP, {p['steps']} steps, "
        f"{len(p['seeds'])} seeds) with weight decay γ ∈ {p['gammas']} and forward-pass weight noise "
        f"σ ∈ {p['sigmas']}. *alignment*: stationary Hebbian alignment of the output layer's learning "
        "signal (late-window mean); *non-gradient fraction*: ‖J_A‖_F/‖J‖_F of the rule's expected "
        "update field at the final weights (0 = gradient field); status from the final validation loss "
        f"relative to the zero predictor (converged < {p['converge_ratio']})."
    )
    status = df.groupby("status").size()
    rep.text("Runs by status: " + ", ".join(f"{k}: {v}" for k, v in status.items()) + ".")
    from plasticlab.experiments.rules.figures import alignment_table, signature_facets

    rep.figure(
        signature_facets(summ),
        "rule_atlas",
        "Alignment vs non-gradient fraction, one panel per decay/noise condition, one point per rule "
        "(gradient fields sit at rounding level, drawn at 1e-16).",
    )
    rep.figure(alignment_table(summ), "rule_atlas_table", "Alignment per rule and condition.")
    rep.table(
        summ[
            [
                "rule",
                "weight_decay",
                "noise",
                "n",
                "converged",
                "diverged",
                "collapsed",
                "final_loss",
                "loss_ratio",
                "alignment",
                "alignment_hidden",
                "nongradient_fraction",
                "loop_ratio",
                "max_real_eig",
                "nongradient_fraction_init",
            ]
        ],
        "Means over members that neither diverged nor collapsed",
    )
    _claims(rep, df, summ, p)
    rep.write()


SRC = "rule atlas (every rule, decay × noise)"


def _field_claims(df: pd.DataFrame, summ: pd.DataFrame, size: str) -> list[Claim]:
    """Gradient rules have no curl; DFA / FA / curl / Hebbian do; a Hebbian signature spans both kinds."""
    out = []
    fin = df[np.isfinite(df.nongradient_fraction)]
    g = fin[fin.rule.map(GRADIENT_RULES.__contains__).astype(bool)]  # "sgd:…" spellings count too
    out.append(
        Claim(
            f"gradient rules ({', '.join(sorted(set(g.rule)))}) have gradient fields at every decay and noise "
            "(largest non-gradient fraction)",
            BEYOND,
            SRC,
            math.nan,
            float(g.nongradient_fraction.max()) if len(g) else math.nan,
            math.nan,
            len(g),
            size,
            AtMost(1e-6),
        )
    )
    c = df[df.rule.map(CURL_RULES.__contains__).astype(bool)]
    per = c.groupby("rule").nongradient_fraction_init.min()
    f, n = fraction(per > 0.01)
    out.append(
        Claim(
            f"non-gradient rules ({', '.join(per.index)}) have fields with clear curl (non-gradient fraction "
            "of the bare signal at init > 0.01, per rule)",
            BEYOND,
            SRC,
            math.nan,
            f,
            math.nan,
            n,
            size,
            AllCells("> 0.01"),
        )
    )
    heb = summ[(summ.alignment > 0.1) & np.isfinite(summ.nongradient_fraction)]
    spans = [bool(heb.nongradient_fraction.min() <= 1e-6), bool(heb.nongradient_fraction.max() > 0.1)]
    f, _ = fraction(spans) if len(heb) else (math.nan, 0)
    out.append(
        Claim(
            "a Hebbian signature does not identify the rule: cells with alignment > 0.1 include gradient "
            "fields (< 1e-6) and strongly non-gradient ones (> 0.1)",
            KPZ,
            "main claim; " + SRC,
            math.nan,
            f,
            math.nan,
            2,
            size,
            AllCells("both kinds present"),
            note=f"{len(heb)} cells from {heb.rule.nunique()} rules" if len(heb) else "",
        )
    )
    return out


def _decay_noise_claims(summ: pd.DataFrame, p: dict, size: str) -> list[Claim]:
    """Decay raises every learning rule's alignment; noise lowers sgd's."""
    out = []
    gmax, smax = max(p["gammas"]), max(p["sigmas"])
    if gmax > 0 and 0.0 in p["gammas"] and 0.0 in p["sigmas"]:
        a0 = summ[(summ.weight_decay == 0) & (summ.noise == 0)].set_index("rule").alignment
        a1 = summ[(summ.weight_decay == gmax) & (summ.noise == 0)].set_index("rule").alignment
        both = [
            r
            for r in LEARNING_RULES
            if r in a0.index and r in a1.index and np.isfinite(a0[r]) and np.isfinite(a1[r])
        ]
        f, n = fraction([a1[r] > a0[r] for r in both])
        out.append(
            Claim(
                f"weight decay raises the alignment of every learning rule (γ = 0 → {gmax:g}, σ = 0; "
                "share of rules)",
                KPZ,
                "stationarity theorem; " + SRC,
                math.nan,
                f,
                math.nan,
                n,
                size,
                AllCells("alignment rises", partly=0.75),
            )
        )
    if smax > 0 and 0.0 in p["sigmas"]:
        s = summ[summ.rule == "sgd"].set_index(["weight_decay", "noise"]).alignment
        pairs = [(s.get((gm, 0.0)), s.get((gm, smax))) for gm in p["gammas"]]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None and np.isfinite(a) and np.isfinite(b)]
        f, n = fraction([b < a for a, b in pairs])
        out.append(
            Claim(
                f"forward-pass noise σ = {smax:g} pushes sgd towards anti-Hebbian (share of γ)",
                KPZ,
                "noise theory; " + SRC,
                math.nan,
                f,
                math.nan,
                n,
                size,
                AllCells("alignment falls"),
            )
        )
    return out


def atlas_claims(df: pd.DataFrame, p: dict, size: str) -> list[Claim]:
    """Every rule-atlas claim, from the run's table."""
    summ = summary_table(df)
    out = _field_claims(df, summ, size) + _decay_noise_claims(summ, p, size)
    ok = df[df.status.isin(["converged", "not converged"])]
    bad = ok[["final_loss", "alignment", "nongradient_fraction"]].isna().any(axis=1)
    f, n = fraction(~bad)
    out.append(
        Claim(
            "no NaN except in runs marked diverged or collapsed (share of other runs)",
            BEYOND,
            SRC,
            math.nan,
            f,
            math.nan,
            n,
            size,
            AllCells("no NaN"),
        )
    )
    return out


def _claims(rep: Report, df: pd.DataFrame, summ: pd.DataFrame, p: dict) -> None:
    rep.add_claims(atlas_claims(df, p, RuleAtlas().size(p)))
    g0 = df[df.rule.map(GRADIENT_RULES.__contains__).astype(bool)].nongradient_fraction_init
    if len(g0):
        rep.text(f"At init the bare sgd/random_nn signals have non-gradient fraction ≤ {g0.max():.1e}.")
