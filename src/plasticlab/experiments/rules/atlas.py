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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from plasticlab.analysis import analyse, loop_test, rule_field, warm_state
from plasticlab.networks.mlp import init_mlp
from plasticlab.rules import make_rule, parse_rule, pick_lr, rule_names
from plasticlab.simulation.train_mlp import train_mlp
from plasticlab.study import (
    MAX_STEPS,
    POSITIVE,
    SIZE,
    Experiment,
    Figure,
    Interval,
    Require,
    RunContext,
    Table,
    register,
    shared_fields,
)
from plasticlab.study.claims import BEYOND, KPZ, AllCells, AtMost, Claim, fraction
from plasticlab.tasks import teacher_regression

# Rule lists and categories are views of the rule registry, read when used: a rule registered from user
# code joins them (and the atlas's default list) with no edit here.
ATLAS = rule_names()
GRADIENT_RULES = rule_names(
    gradient=True
)  # exact gradients of a batch loss (random_nn: of the pseudo-target loss)
LEARNING_RULES = rule_names(local=False)  # rules that transport an error: they learn the task
CURL_RULES = rule_names(gradient=False)  # not gradients by construction: their fields must show clear curl


# The teacher regression every study of this family trains on (rule-identify's and rule-transfer's too).
REGRESSION = dict(lr=0.05, adam_lr=2e-3, batch_size=64, d_in=16, hidden=16, d_out=8, activation="tanh")
ACTIVATIONS = ["linear", "relu", "tanh", "sigmoid"]


class RegistryRules(Experiment):
    """For an experiment whose default ``rules`` are every registered rule: the list is read from the registry
    when params are built (never at import), so a rule registered and removed again (a test's, a plugin's)
    does not stay in it, and one registered later joins it. Subclasses declare ``base_defaults``."""

    base_defaults: ClassVar[dict[str, Any]]

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        """``base_defaults`` with ``rules`` = the rules registered now."""
        return dict(self.base_defaults, rules=list(rule_names()))


def atlas_rule(name: str, lr: float, gamma=0.0, sigma=0.0):
    """The rule as the atlas runs it: exp_grad takes the exact exponentiated step at the trainer's lr."""
    base, given = parse_rule(name)
    hyper: dict[str, Any] = {"max_lr": lr} if base == "exp_grad" and "max_lr" not in given else {}
    return make_rule(name, gamma=gamma, sigma=sigma, **hyper)


def rule_lr(name: str, p: Any) -> float:
    """The step size a rule trains with: ``adam_lr`` for the adaptive rules, ``lr`` for every other."""
    return pick_lr(name, gradient=p.lr, adaptive=p.adam_lr)


@dataclass
class RegressionSpec:
    """One rule's decay × noise × seed ensemble on the teacher regression (one chunk): the fields both
    studies of this family share."""

    gammas: list[float]
    sigmas: list[float]
    seeds: list[int]
    steps: int
    lr: float
    adam_lr: float
    batch_size: int
    d_in: int
    hidden: int
    d_out: int
    activation: str
    n_train: int
    n_val: int
    analysis_batch: int
    rule: str


@dataclass
class Spec(RegressionSpec):
    """An atlas chunk: the shared fields and how each member's field is analysed."""

    warm_steps: int
    noise_draws: int
    loop_planes: int
    converge_ratio: float


def train_ensemble(spec: RegressionSpec, ctx: RunContext, rule_of: Callable, record_every: int, observe=None):
    """Train the chunk's decay × noise × seed members as one ensemble: (conditions, data, initial net,
    result, lr, observer); ``rule_of(name, lr, gamma=, sigma=)`` builds the rule, ``observe(rule)`` the
    engine's observer (None: no observer)."""
    lr = rule_lr(spec.rule, spec)
    conds = list(itertools.product(spec.gammas, spec.sigmas, spec.seeds))
    seeds = torch.tensor([c[2] for c in conds], dtype=torch.int64)
    data = teacher_regression(
        seeds,
        d_in=spec.d_in,
        d_out=spec.d_out,
        n_train=spec.n_train,
        n_val=spec.n_val,
        teacher_hidden=(spec.hidden,),
        device=ctx.device,
    )
    net = init_mlp(seeds, [spec.d_in, spec.hidden, spec.d_out], spec.activation, device=ctx.device)
    rule = rule_of(spec.rule, lr, gamma=[c[0] for c in conds], sigma=[c[1] for c in conds])
    observer = observe(rule) if observe is not None else None
    res = train_mlp(
        net,
        rule,
        data,
        seeds,
        steps=spec.steps,
        lr=lr,
        batch_size=spec.batch_size,
        record_every=record_every,
        observe=observer,
        compile=ctx.compile,
    )
    return conds, data, net, res, lr, observer


def member_field(
    rule, net, data, e: int, seed: int, spec: RegressionSpec, warm: int, steps=(0,)
) -> tuple[Any, torch.Tensor] | None:
    """(F, θ) of member e's ``rule`` at the weights of ``net`` on a fixed batch of its training data, the
    rule's state warmed up there first (Adam moments, BCM thresholds); None when the weights are not finite."""
    if not all(torch.isfinite(W[e]).all() for W in net.weights):
        return None
    state = warm_state(rule, net, data, seed, steps=warm, batch_size=spec.batch_size, e=e)
    B = spec.analysis_batch
    return rule_field(
        rule, net, data.x_train[:, :B], data.y_train[:, :B], data.loss, e=e, seed=seed, state=state, steps=steps
    )


@register
class RuleAtlas(RegistryRules):
    """rule-atlas: every registered rule on one regression, with its alignment and non-gradient fraction."""

    name = "rule-atlas"
    summary = "Every rule on teacher regression ± decay ± noise: loss, Hebbian alignment, non-gradient fraction"
    title = "Hebbian signatures versus non-gradient structure"
    budget_s = 300
    spec_type = Spec
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
    base_defaults = dict(  # and rules: every registered rule (RegistryRules)
        rules=[],
        gammas=[0.0, 1e-2],
        sigmas=[0.0, 0.2],
        seeds=[0, 1, 2, 3, 4],
        steps=20000,
        **REGRESSION,
        n_train=4000,
        n_val=500,
        analysis_batch=128,
        warm_steps=20,
        noise_draws=4,
        loop_planes=2,
        converge_ratio=0.1,
    )
    quick = dict(seeds=[0, 1], steps=2000, n_train=2000)
    choices = dict(rules=ATLAS, activation=ACTIVATIONS)

    constraints = dict(
        analysis_batch=SIZE,
        warm_steps=Interval(int, 0, MAX_STEPS),
        noise_draws=Interval(int, 1, 10_000),
        loop_planes=Interval(int, 0, 10_000),
        converge_ratio=POSITIVE,
    )
    relations = (Require(("analysis_batch", "n_train"), lambda a, n: a <= n, "analysis_batch <= n_train"),)

    def chunks(self, p):
        """One chunk per rule: its decay × noise × seed grid is one ensemble."""
        keep = shared_fields(Spec, p, "rule")
        return [Spec(rule=r, **keep) for r in p["rules"]]

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """Train the rule's ensemble, then analyse each member's field at its final weights."""
        return run_rule(spec, ctx)

    def claims(self, df, p):
        """Gradient vs curl fields, Hebbian signature across both, decay and noise trends."""
        return atlas_claims(df, p, self.size(p))

    def notes(self, p):
        """The setting and what alignment, non-gradient fraction and status mean."""
        return (
            f"Every rule trained on the same student–teacher regression ({p['d_in']}→{p['hidden']}→{p['d_out']} "
            f"{p['activation']} MLP, {p['steps']} steps, {len(p['seeds'])} seeds) under weight decay γ and "
            "forward-pass weight noise σ. *alignment*: stationary Hebbian alignment of the output layer's "
            "learning signal (late-window mean); *non-gradient fraction*: ‖J_A‖_F/‖J‖_F of the rule's expected "
            "update field at the final weights (0 = gradient field; `_init`: of the bare signal at the initial "
            "weights); status from the final validation loss relative to the zero predictor (converged below "
            f"{p['converge_ratio']})."
        )

    def figures(self, df, p):
        """The signature facets (alignment vs non-gradient fraction) and the alignment heat table."""
        from plasticlab.experiments.rules.figures import alignment_table, signature_facets

        summ = summary_table(df)
        return [
            Figure(
                "rule_atlas",
                signature_facets(summ),
                "Alignment vs non-gradient fraction, one panel per decay/noise condition, one point per rule "
                "(gradient fields sit at rounding level, drawn at 1e-16).",
            ),
            Figure("rule_atlas_table", alignment_table(summ), "Alignment per rule and condition."),
        ]

    def tables(self, df, p):
        """Runs by status, and the per-rule, per-condition means."""
        status = df.groupby("status").size().rename("runs").reset_index()
        return [
            Table(status, "Runs by status"),
            Table(summary_table(df), "Means over members that neither diverged nor collapsed"),
        ]


def run_rule(spec: Spec, ctx: RunContext | None = None) -> pd.DataFrame:
    """One rule's chunk: its decay x noise x seed grid trained as one ensemble, then analysed per member."""
    conds, data, net, res, lr, _ = train_ensemble(spec, ctx or RunContext(), atlas_rule, max(1, spec.steps // 20))
    zero_loss = 0.5 * (data.y_val**2).sum(-1).mean(-1)
    # the bare signal (no decay, no noise) at each seed's initial weights: defined even when runs diverge
    init: dict[int, float] = {}
    for e, (_g, _s, seed) in enumerate(conds):
        if seed not in init:
            init[seed] = _field_stats(lr, 0.0, 0.0, seed, net, data, e, spec, loop=False)["nongradient_fraction"]
    rows = []
    for e, (g, s, seed) in enumerate(conds):
        row = dict(
            rule=spec.rule,
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
        row.update(_field_stats(lr, g, s, seed, res.net, data, e, spec))
        row["nongradient_fraction_init"] = init[seed]
        row["status"] = _status(row, spec.converge_ratio)
        row["converged"] = row["status"] == "converged"
        rows.append(row)
    return pd.DataFrame(rows)


NAN_FIELD = dict.fromkeys(("nongradient_fraction", "max_real_eig", "max_imag_eig", "loop_ratio"), math.nan)


def _field_stats(lr, gamma, sigma, seed, net, data, e, spec: Spec, loop=True) -> dict:
    """Non-gradient analysis of member e's rule (scalar γ, σ) at the weights of ``net``."""
    rule = atlas_rule(spec.rule, lr, gamma=gamma, sigma=sigma)
    draws = tuple(range(spec.noise_draws)) if sigma else (0,)
    field = member_field(rule, net, data, e, int(seed), spec, spec.warm_steps, draws)
    if field is None:
        return dict(NAN_FIELD)
    F, theta = field
    a = analyse(F, theta)
    if not (math.isfinite(a.nongradient_fraction) and math.isfinite(a.max_real)):
        return dict(NAN_FIELD)
    out = dict(NAN_FIELD, nongradient_fraction=a.nongradient_fraction, max_real_eig=a.max_real)
    out["max_imag_eig"] = a.max_imag
    if loop and spec.loop_planes:
        radius = 1e-4 * max(1.0, theta.norm().item())
        out["loop_ratio"] = loop_test(
            F, theta, planes=spec.loop_planes, points=8, seed=seed, radius=radius
        ).mean_abs
    return out


def _status(row: dict, converge_ratio: float) -> str:
    finite = all(math.isfinite(row[k]) for k in ("final_loss", "nongradient_fraction"))
    if row["diverged"] or not finite or row["loss_ratio"] > 1e3:
        return "diverged"
    if row["collapsed"] or not math.isfinite(row["alignment"]):
        return "collapsed"
    return "converged" if row["loss_ratio"] < converge_ratio else "not converged"


# -- tables and claims ---------------------------------------------------------------------------------
def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (rule, γ, σ): means over members that neither diverged nor collapsed, plus status counts."""
    keys = ["rule", "weight_decay", "noise"]
    ok = df[df.status.isin(["converged", "not converged"])]
    cols = ["final_loss", "loss_ratio", "alignment", "alignment_hidden", "nongradient_fraction", "loop_ratio"]
    means = ok.groupby(keys)[cols + ["max_real_eig"]].mean()
    init = df.groupby(keys).nongradient_fraction_init.mean()
    counts = df.groupby(keys).status.agg(
        n=len,
        converged=lambda s: int((s == "converged").sum()),
        diverged=lambda s: int((s == "diverged").sum()),
        collapsed=lambda s: int((s == "collapsed").sum()),
    )
    out = counts.join(means).join(init).reset_index()
    order = {r: i for i, r in enumerate(ATLAS)}
    return out.sort_values(keys, key=lambda c: c.map(order) if c.name == "rule" else c).reset_index(drop=True)


SRC = "rule atlas (every rule, decay × noise)"


def _claim(text: str, ours: float, n: int, size: str, test: Any, paper: str = BEYOND, src: str = SRC, **kw):
    """A claim of this study: no paper value, no standard error."""
    return Claim(text, paper, src, math.nan, ours, math.nan, n, size, test, **kw)


def _field_claims(df: pd.DataFrame, summ: pd.DataFrame, size: str) -> list[Claim]:
    """Gradient rules have no curl; DFA / FA / curl / Hebbian do; a Hebbian signature spans both kinds."""
    fin = df[np.isfinite(df.nongradient_fraction)]
    g = fin[fin.rule.map(GRADIENT_RULES.__contains__).astype(bool)]  # "sgd:…" spellings count too
    c = df[df.rule.map(CURL_RULES.__contains__).astype(bool)]
    per = c.groupby("rule").nongradient_fraction_init.min()
    f, n = fraction(per > 0.01)
    heb = summ[(summ.alignment > 0.1) & np.isfinite(summ.nongradient_fraction)]
    spans = [bool(heb.nongradient_fraction.min() <= 1e-6), bool(heb.nongradient_fraction.max() > 0.1)]
    f_heb, _ = fraction(spans) if len(heb) else (math.nan, 0)
    return [
        _claim(
            f"gradient rules ({', '.join(sorted(set(g.rule)))}) have gradient fields at every decay and noise "
            "(largest non-gradient fraction)",
            float(g.nongradient_fraction.max()) if len(g) else math.nan,
            len(g),
            size,
            AtMost(1e-6),
        ),
        _claim(
            f"non-gradient rules ({', '.join(per.index)}) have fields with clear curl (non-gradient fraction "
            "of the bare signal at init > 0.01, per rule)",
            f,
            n,
            size,
            AllCells("> 0.01"),
        ),
        _claim(
            "a Hebbian signature does not identify the rule: cells with alignment > 0.1 include gradient "
            "fields (< 1e-6) and strongly non-gradient ones (> 0.1)",
            f_heb,
            2,
            size,
            AllCells("both kinds present"),
            paper=KPZ,
            src="main claim; " + SRC,
            note=f"{len(heb)} cells from {heb.rule.nunique()} rules" if len(heb) else "",
        ),
    ]


def _decay_noise_claims(summ: pd.DataFrame, p: dict, size: str) -> list[Claim]:
    """Decay raises every learning rule's alignment; noise lowers sgd's."""
    out = []
    gmax, smax = max(p["gammas"]), max(p["sigmas"])
    if gmax > 0 and 0.0 in p["gammas"] and 0.0 in p["sigmas"]:
        a0 = summ[(summ.weight_decay == 0) & (summ.noise == 0)].set_index("rule").alignment
        a1 = summ[(summ.weight_decay == gmax) & (summ.noise == 0)].set_index("rule").alignment
        both = [r for r in LEARNING_RULES if r in a0.index and r in a1.index]
        f, n = fraction([a1[r] > a0[r] for r in both if np.isfinite(a0[r]) and np.isfinite(a1[r])])
        text = (
            f"weight decay raises the alignment of every learning rule (γ = 0 → {gmax:g}, σ = 0; share of rules)"
        )
        src = "stationarity theorem; " + SRC
        out.append(_claim(text, f, n, size, AllCells("alignment rises", partly=0.75), paper=KPZ, src=src))
    if smax > 0 and 0.0 in p["sigmas"]:
        s = summ[summ.rule == "sgd"].set_index(["weight_decay", "noise"]).alignment
        pairs = [(s.get((gm, 0.0)), s.get((gm, smax))) for gm in p["gammas"]]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None and np.isfinite(a) and np.isfinite(b)]
        f, n = fraction([b < a for a, b in pairs])
        text = f"forward-pass noise σ = {smax:g} pushes sgd towards anti-Hebbian (share of γ)"
        out.append(_claim(text, f, n, size, AllCells("alignment falls"), paper=KPZ, src="noise theory; " + SRC))
    return out


def atlas_claims(df: pd.DataFrame, p: dict, size: str) -> list[Claim]:
    """Every rule-atlas claim, from the run's table."""
    summ = summary_table(df)
    ok = df[df.status.isin(["converged", "not converged"])]
    f, n = fraction(~ok[["final_loss", "alignment", "nongradient_fraction"]].isna().any(axis=1))
    text = "no NaN except in runs marked diverged or collapsed (share of other runs)"
    return [
        *_field_claims(df, summ, size),
        *_decay_noise_claims(summ, p, size),
        _claim(text, f, n, size, AllCells("no NaN")),
    ]
