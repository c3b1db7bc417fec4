"""rule-identify: can the learning rule be told from what an experimenter can record?

Every rule of the library trains the same student–teacher regression under weight decay × forward-pass
noise × seeds (one ensemble per rule). At a fixed schedule of checkpoints the engine's ``observe`` hook
records per-layer observables (:mod:`plasticlab.metrics.observables`): Hebbian alignment of the learning
signal and its response to a small weight perturbation, activity statistics and weight statistics, for
several numbers of recorded units. At the end, where an experimenter would know the weights, the
non-gradient fraction of each run's rule field. The results table holds these trajectories (one row per
run × units × checkpoint); the report trains logistic-regression and random-forest classifiers on their
summaries (:mod:`plasticlab.identification`) with cross-validation grouped by seed, for four feature sets
and three observation budgets, and writes the accuracy table to ``accuracy.csv``.
"""

from __future__ import annotations

import hashlib
import itertools
import math

import pandas as pd
import torch

from plasticlab import identification as ident
from plasticlab.analysis import member, nongradient_fraction_hutchinson, rule_field, warm_state
from plasticlab.errors import PlasticlabError
from plasticlab.experiments.hebbian._common import ADAM_RULES
from plasticlab.metrics.observables import ObservableRecorder
from plasticlab.networks.mlp import init_mlp
from plasticlab.rules import make_rule, parse_rule, rule_names
from plasticlab.simulation.train_mlp import train_mlp
from plasticlab.study import Experiment, register
from plasticlab.tasks import teacher_regression
from plasticlab.tasks.base import Dataset


@register
class RuleIdentify(Experiment):
    """rule-identify: record observables of every rule, then classify the rule from their trajectories."""

    name = "rule-identify"
    summary = "Identify the learning rule from recorded observables (alignment, activity, weights) by classifier"
    budget_s = 240
    code_version = 1
    defaults = dict(
        rules=list(rule_names()),
        gammas=[0.0, 1e-2, 5e-2],
        sigmas=[0.0, 0.1],
        seeds=list(range(8)),
        steps=3000,
        checkpoints=40,
        lr=0.05,
        adam_lr=2e-3,
        batch_size=64,
        d_in=16,
        hidden=16,
        d_out=8,
        activation="tanh",
        n_train=2000,
        n_val=200,
        units=[16, 4, 2],
        probe_sigma=0.05,
        nongradient_probes=8,
        analysis_batch=128,
        fractions=[0.1, 0.25, 0.5],
        noises=[0.5, 1.0, 2.0],
        folds=5,
        trees=100,
    )
    quick = dict(
        gammas=[0.0, 1e-2],
        seeds=[0, 1, 2, 3],
        steps=800,
        checkpoints=20,
        units=[16, 2],
        fractions=[0.25],
        noises=[1.0],
        folds=4,
    )
    choices = dict(rules=rule_names(), activation=["linear", "relu", "tanh", "sigmoid"])

    def validate(self, p):
        for key in ("gammas", "sigmas"):
            if any(not (math.isfinite(v) and v >= 0) for v in p[key]):
                raise PlasticlabError(
                    f"rule-identify parameter {key!r} must hold finite values >= 0, got {p[key]}"
                )
        for key in ("steps", "checkpoints", "batch_size", "d_in", "hidden", "d_out", "n_train", "folds"):
            if p[key] < 1:
                raise PlasticlabError(f"rule-identify parameter {key!r} must be >= 1, got {p[key]!r}")
        if len(set(p["seeds"])) < 2:
            raise PlasticlabError("rule-identify needs at least 2 seeds (cross-validation is grouped by seed)")
        if len(set(p["rules"])) < 2:
            raise PlasticlabError("rule-identify needs at least 2 rules to tell apart")
        if any(u < 1 for u in p["units"]) or max(p["units"]) < max(p["d_in"], p["hidden"], p["d_out"]):
            raise PlasticlabError(
                f"rule-identify units={p['units']}: each >= 1 and the largest must cover every layer "
                f"(>= {max(p['d_in'], p['hidden'], p['d_out'])})"
            )
        if any(not 0 < f <= 1 for f in p["fractions"]):
            raise PlasticlabError(f"rule-identify fractions must be in (0, 1], got {p['fractions']}")

    def chunks(self, p):
        common = {k: v for k, v in p.items() if k not in ("rules", "fractions", "noises", "folds", "trees")}
        return [dict(common, rule=r) for r in p["rules"]]

    def run_chunk(self, spec):
        return run_rule(spec)

    def report(self, df, p, out):
        from plasticlab.experiments.rules._identify_report import write_report

        write_report(df, p, out)

    def claims(self, df, p):
        """The 'beyond the papers' claims of this experiment (see ``_rule_identify_report``)."""
        from plasticlab.experiments.rules._identify_report import claims

        return claims(df, p)


def run_rule(spec: dict) -> pd.DataFrame:
    """Train one rule's decay × noise × seed ensemble, recording observables; one row per run × units ×
    checkpoint."""
    name = spec["rule"]
    lr = spec["adam_lr"] if parse_rule(name)[0] in ADAM_RULES else spec["lr"]
    conds = list(itertools.product(spec["gammas"], spec["sigmas"], spec["seeds"]))
    seeds = torch.tensor([c[2] for c in conds], dtype=torch.int64)
    data = teacher_regression(
        seeds,
        d_in=spec["d_in"],
        d_out=spec["d_out"],
        n_train=spec["n_train"],
        n_val=spec["n_val"],
        teacher_hidden=(spec["hidden"],),
    )
    net = init_mlp(seeds, [spec["d_in"], spec["hidden"], spec["d_out"]], spec["activation"])
    rule = make_rule(name, gamma=[c[0] for c in conds], sigma=[c[1] for c in conds])
    rec = ObservableRecorder(rule, units=spec["units"], probe_sigma=spec["probe_sigma"])
    res = train_mlp(
        net,
        rule,
        data,
        seeds,
        steps=spec["steps"],
        lr=lr,
        batch_size=spec["batch_size"],
        record_every=max(1, spec["steps"] // spec["checkpoints"]),
        observe=rec,
    )
    traj = rec.trajectories()
    rows = []
    for e, (g, s, seed) in enumerate(conds):
        ng = _nongradient(name, g, s, int(seed), res.net, data, e, spec) if not res.diverged[e] else math.nan
        base = dict(
            rule=name,
            weight_decay=g,
            noise=s,
            seed=int(seed),
            run=f"{name}|{g:g}|{s:g}|{seed}",
            lr=lr,
            diverged=bool(res.diverged[e]),
            diverged_at=float(res.diverged_at[e]),
            final_loss=float(res.val_loss_final[e]),
            nongradient_fraction=ng,
        )
        for u in spec["units"]:
            for t, step in enumerate(rec.steps):
                row = dict(base, units=int(u), step=step)
                for (obs, layer, uu), v in traj.items():
                    if uu == u:
                        row[f"{obs}_l{layer}"] = float(v[t, e])
                rows.append(row)
    return pd.DataFrame(rows)


def _nongradient(name, gamma, sigma, seed, net, data, e, spec) -> float:
    """Non-gradient fraction ‖J_A‖/‖J‖ of member e's rule field (its γ, σ) at its final weights, by
    Hutchinson probes on a fixed batch of its training data (stateful rules warmed up there first)."""
    probes = spec["nongradient_probes"]
    if not probes or not all(torch.isfinite(W[e]).all() for W in net.weights):
        return math.nan
    rule = make_rule(name, gamma=gamma, sigma=sigma)
    one = member(net, e)
    mdata = Dataset(
        data.x_train[e : e + 1],
        data.y_train[e : e + 1],
        data.x_val[e : e + 1],
        data.y_val[e : e + 1],
        data.loss,
        data.name,
    )
    state = warm_state(rule, one, mdata, seed, steps=10, batch_size=spec["batch_size"])
    B = spec["analysis_batch"]
    F, theta = rule_field(
        rule,
        one,
        data.x_train[e : e + 1, :B],
        data.y_train[e : e + 1, :B],
        data.loss,
        seed=seed,
        state=state,
        steps=(0, 1) if sigma else (0,),
    )
    v = nongradient_fraction_hutchinson(F, theta, probes=probes, seed=seed)
    return v if math.isfinite(v) else math.nan


# -- evaluation, shared by the report and the claims (computed once per table) ------------------------------
def table_key(df: pd.DataFrame, p: dict) -> str:
    """A content hash of the table and the evaluation parameters (the cache key of ``evaluation``)."""
    h = hashlib.sha256(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    h.update(repr([p["fractions"], p["units"], p["noises"], p["folds"], p["trees"]]).encode())
    return h.hexdigest()


def budget_list(p: dict) -> list[ident.Budget]:
    """The observation budgets this run's parameters ask the classifiers to be evaluated at."""
    return ident.budgets(p["fractions"], p["units"], p["noises"], int(max(p["units"])))


_CACHE: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}


def evaluation(df: pd.DataFrame, p: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accuracy table, out-of-fold predictions at the full budget) for this run's table."""
    key = table_key(df, p)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = ident.evaluate(df, budget_list(p), n_splits=p["folds"], trees=p["trees"])
    return _CACHE[key]


__all__ = ["RuleIdentify", "budget_list", "evaluation", "run_rule", "table_key"]
