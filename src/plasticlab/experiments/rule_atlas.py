"""rule-atlas: every rule of the library on the same teacher-regression task, with and without weight decay
and forward-pass noise: final loss, stationary Hebbian alignment, the non-gradient fraction of the rule's
vector field at the final weights, and whether the run converged, diverged or collapsed.

The point (SPEC A + C): a Hebbian signature (alignment > 0) does not identify the rule: gradient and
non-gradient rules, learning and non-learning ones, land at the same alignment.

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
from plasticlab.errors import PlasticlabError
from plasticlab.experiments._hebb_common import ADAM_RULES
from plasticlab.experiments.base import Experiment, register
from plasticlab.networks.mlp import init_mlp
from plasticlab.report import Report
from plasticlab.rules import make_rule, parse_rule, rule_names
from plasticlab.simulation.train_mlp import train_mlp
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

    def validate(self, p):
        for key in ("gammas", "sigmas"):
            bad = [v for v in p[key] if not (math.isfinite(v) and v >= 0)]
            if bad:
                raise PlasticlabError(f"rule-atlas parameter {key!r} must hold finite values >= 0, got {bad}")
        for key in (
            "steps",
            "batch_size",
            "d_in",
            "hidden",
            "d_out",
            "n_train",
            "n_val",
            "analysis_batch",
            "noise_draws",
        ):
            if p[key] < 1:
                raise PlasticlabError(f"rule-atlas parameter {key!r} must be >= 1, got {p[key]!r}")
        if p["analysis_batch"] > p["n_train"]:
            raise PlasticlabError(f"analysis_batch={p['analysis_batch']} exceeds n_train={p['n_train']}")

    def chunks(self, p):
        common = {k: v for k, v in p.items() if k != "rules"}
        return [dict(common, rule=r) for r in p["rules"]]

    def run_chunk(self, spec):
        return run_rule(spec)

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


def _figure(summ: pd.DataFrame):
    import matplotlib.pyplot as plt

    conds = summ[["weight_decay", "noise"]].drop_duplicates().sort_values(["weight_decay", "noise"])
    markers = dict(zip(map(tuple, conds.values), "osD^vP*X"))
    rules = list(dict.fromkeys(summ.rule))
    cmap = plt.get_cmap("tab20")
    floor = 1e-16
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5.6), gridspec_kw=dict(width_ratios=[1.25, 1]))
    for i, r in enumerate(rules):
        for _, row in summ[summ.rule == r].iterrows():
            if not np.isfinite(row.alignment):
                continue
            ax.scatter(
                row.alignment,
                max(row.nongradient_fraction, floor),
                color=cmap(i % 20),
                s=55,
                marker=markers[(row.weight_decay, row.noise)],
                edgecolor="k",
                linewidth=0.4,
            )
        ax.scatter([], [], color=cmap(i % 20), label=r)
    for (g, s), m in markers.items():
        ax.scatter([], [], color="w", edgecolor="k", marker=m, label=_condition(g, s))
    ax.set_yscale("log")
    ax.set_ylim(floor / 3, 2)
    ax.axhline(1e-6, color="grey", ls=":", lw=1)
    ax.text(-0.98, 2e-6, "gradient fields below (rounding level)", fontsize=8, color="grey")
    ax.set_xlim(-1.05, 1.05)
    ax.axvline(0, color="grey", lw=0.6)
    ax.set_xlabel("stationary Hebbian alignment (output layer, mean over seeds)")
    ax.set_ylabel("non-gradient fraction ‖J_antisym‖/‖J‖ at the final weights")
    ax.set_title("Same Hebbian signature, different rules")
    ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    # heat table of alignment, rules x conditions, annotated with the status where runs failed
    cols = [tuple(c) for c in conds.values]
    Z = np.full((len(rules), len(cols)), np.nan)
    notes = [["" for _ in cols] for _ in rules]
    for i, r in enumerate(rules):
        for j, (g, s) in enumerate(cols):
            row = summ[(summ.rule == r) & (summ.weight_decay == g) & (summ.noise == s)]
            if len(row):
                row = row.iloc[0]
                Z[i, j] = row.alignment
                if row.diverged == row.n:
                    notes[i][j] = "div"
                elif row.collapsed + row.diverged == row.n:
                    notes[i][j] = "coll"
                else:
                    notes[i][j] = f"{row.alignment:+.2f}"
    im = ax2.imshow(Z, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    for i in range(len(rules)):
        for j in range(len(cols)):
            ax2.text(j, i, notes[i][j], ha="center", va="center", fontsize=7)
    ax2.set_xticks(range(len(cols)), [_condition(g, s) for g, s in cols], rotation=25, fontsize=8)
    ax2.set_yticks(range(len(rules)), rules, fontsize=8)
    ax2.set_title("alignment (div = all diverged, coll = collapsed)")
    fig.colorbar(im, ax=ax2, fraction=0.04)
    fig.tight_layout()
    return fig


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
    rep.figure(
        _figure(summ),
        "rule_atlas",
        "Left: alignment vs non-gradient fraction (one point per rule "
        "and condition; gradient fields sit at rounding level). Right: alignment per rule and condition.",
    )
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


def _claims(rep: Report, df: pd.DataFrame, summ: pd.DataFrame, p: dict) -> None:
    fin = df[np.isfinite(df.nongradient_fraction)]
    g = fin[fin.rule.isin(GRADIENT_RULES)]
    if len(g):
        worst = g.nongradient_fraction.max()
        rep.claim(
            "sgd (and random_nn) fields are gradients at every decay and noise: non-gradient fraction ≤ 1e-6",
            worst <= 1e-6,
            f"max over {len(g)} runs: {worst:.2e}",
        )
    c = df[df.rule.isin(CURL_RULES)]
    if len(c):  # at init, where every run is defined (plain Hebb diverges at any useful lr)
        per = c.groupby("rule").nongradient_fraction_init.min()
        rep.claim(
            f"Non-gradient rules ({', '.join(per.index)}) have fields with clear curl (non-gradient fraction "
            "of the bare signal at init > 0.01)",
            bool((per > 0.01).all()),
            ", ".join(f"{r}: min {v:.3f}" for r, v in per.items()),
        )
    g0 = df[df.rule.isin(GRADIENT_RULES)].nongradient_fraction_init
    if len(g0):
        rep.text(f"At init the bare sgd/random_nn signals have non-gradient fraction ≤ {g0.max():.1e}.")
    # A Hebbian signature does not identify the rule: among rule/condition cells with clearly Hebbian
    # alignment, both gradient and non-gradient rules appear.
    heb = summ[(summ.alignment > 0.1) & np.isfinite(summ.nongradient_fraction)]
    if len(heb):
        lo, hi = heb.nongradient_fraction.min(), heb.nongradient_fraction.max()
        rules = sorted(set(heb.rule))
        rep.claim(
            "A Hebbian signature does not identify the rule: cells with alignment > 0.1 include gradient "
            "fields and strongly non-gradient ones (fraction spans < 1e-6 to > 0.1)",
            bool(lo <= 1e-6 and hi > 0.1),
            f"{len(heb)} cells from {len(rules)} rules ({', '.join(rules)}); fraction {lo:.1e} … {hi:.2f}",
        )
    gmax = max(p["gammas"])
    if gmax > 0 and 0.0 in p["gammas"] and 0.0 in p["sigmas"]:
        a0 = summ[(summ.weight_decay == 0) & (summ.noise == 0)].set_index("rule").alignment
        a1 = summ[(summ.weight_decay == gmax) & (summ.noise == 0)].set_index("rule").alignment
        both = [
            r
            for r in LEARNING_RULES
            if r in a0.index and r in a1.index and np.isfinite(a0[r]) and np.isfinite(a1[r])
        ]
        if both:
            up = [r for r in both if a1[r] > a0[r]]
            rep.claim(
                f"Weight decay raises the alignment of learning rules (SPEC A.3), γ = 0 → {gmax:g}, σ = 0",
                len(up) >= 0.75 * len(both),
                f"{len(up)}/{len(both)} rise: " + ", ".join(f"{r} {a0[r]:+.2f}→{a1[r]:+.2f}" for r in both),
            )
    smax = max(p["sigmas"])
    if smax > 0 and 0.0 in p["sigmas"]:
        s = summ[summ.rule == "sgd"].set_index(["weight_decay", "noise"]).alignment
        pairs = [(gm, s.get((gm, 0.0)), s.get((gm, smax))) for gm in p["gammas"]]
        pairs = [
            (gm, a, b)
            for gm, a, b in pairs
            if a is not None and b is not None and np.isfinite(a) and np.isfinite(b)
        ]
        if pairs:
            rep.claim(
                f"Forward-pass noise σ = {smax:g} pushes sgd towards anti-Hebbian (SPEC A.3)",
                all(b < a for _, a, b in pairs),
                ", ".join(f"γ={gm:g}: {a:+.2f}→{b:+.2f}" for gm, a, b in pairs),
            )
    bad = (
        df[df.status.isin(["converged", "not converged"])][["final_loss", "alignment", "nongradient_fraction"]]
        .isna()
        .any(axis=1)
    )
    rep.claim(
        "No NaN except in runs marked diverged or collapsed",
        not bool(bad.any()),
        f"{int(bad.sum())} unmarked rows with NaN out of {len(df)}",
    )
