"""rule-transfer: does rule identification transfer to networks it was not trained on?

The identifier of ``plasticlab.identification`` (a random forest on per-run summaries of recorded
observables, as in rule-identify) is trained on rule-identify's networks: a one-hidden-layer MLP on the
student–teacher regression, every rule under weight decay × forward-noise × seeds. It is then tested on runs
of held-out seeds of that same family (in distribution) and on held-out families: a wider hidden layer, a
deeper network (more hidden layers) and another activation. The task (teacher) is the same everywhere;
only the student changes.

Features are layer-agnostic so that a deeper network can be read at all: the first layer is recorded as
``l0`` and the last as ``l1`` (hidden layers in between are not used); every unit is recorded. One chunk
per (family, rule): its γ × σ × seed members train as one ensemble batch (``train_mlp``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from plasticlab import identification as ident
from plasticlab.errors import PlasticlabError
from plasticlab.experiments.rules.atlas import ACTIVATIONS, REGRESSION, RegistryRules
from plasticlab.metrics.observables import ObservableRecorder
from plasticlab.networks.mlp import init_mlp
from plasticlab.rules import make_rule, pick_lr, rule_names
from plasticlab.simulation.train_mlp import train_mlp
from plasticlab.study import MAX_STEPS, SEEDS, SIZE, Interval, ListOf, RunContext, Table, register
from plasticlab.study.claims import BEYOND, AtLeast, Claim
from plasticlab.tasks import teacher_regression

FAMILIES = ("train", "width", "depth", "activation", "cnn")
HELD_OUT = FAMILIES[1:]
SOURCE = "rule identification on held-out architectures"


@dataclass
class Spec:
    """One (family, rule): its γ × σ × seed members as one ensemble."""

    family: str
    rule: str
    widths: list[int]
    activation: str
    gammas: list[float]
    sigmas: list[float]
    seeds: list[int]
    steps: int
    checkpoints: int
    lr: float
    batch_size: int
    n_train: int
    n_val: int
    probe_sigma: float


@register
class RuleTransfer(RegistryRules):
    """rule-transfer: an identifier trained on rule-identify's MLPs, tested on held-out architectures."""

    name = "rule-transfer"
    summary = "Rule identification tested on held-out widths, depths and activations (vs in-distribution)"
    title = "does rule identification transfer to other architectures?"
    budget_s = 600
    code_version = 1
    spec_type = Spec
    columns = ("family", "rule", "weight_decay", "noise", "seed", "run", "units", "step", "align_l0", "align_l1")
    base_defaults = dict(  # and rules: every registered rule (RegistryRules)
        rules=[],
        gammas=[0.0, 1e-2, 5e-2],
        sigmas=[0.0, 0.1],
        train_seeds=[0, 1, 2, 3, 4, 5],
        test_seeds=[6, 7],
        steps=3000,
        checkpoints=40,
        **REGRESSION,
        wide=64,
        deep=3,
        other_activation="relu",
        cnn_channels=[8, 16],
        held_out=list(HELD_OUT),
        n_train=2000,
        n_val=200,
        probe_sigma=0.05,
        trees=100,
    )
    quick = dict(gammas=[0.0, 1e-2], train_seeds=[0, 1, 2, 3], test_seeds=[4, 5], steps=800, checkpoints=20)
    tiny = dict(
        rules=["sgd", "hebbian", "dfa"], gammas=[0.0], sigmas=[0.0], train_seeds=[0, 1], test_seeds=[2],
        steps=20, checkpoints=4, n_train=64, n_val=16, trees=10,
    )  # fmt: skip
    choices = dict(
        rules=rule_names(),
        activation=ACTIVATIONS,
        other_activation=ACTIVATIONS,
        held_out=HELD_OUT,
    )
    constraints = dict(
        train_seeds=SEEDS,
        test_seeds=SEEDS,
        steps=Interval(int, 10, MAX_STEPS),
        checkpoints=Interval(int, 2, 100_000),
        wide=SIZE,
        deep=Interval(int, 2, 64),
        probe_sigma=Interval(float, 0, 10),
        trees=Interval(int, 1, 10_000),
        cnn_channels=ListOf(Interval(int, 1, 4096), min_len=2, max_len=2, unique=False),
    )

    def chunks(self, p):
        """One chunk per (family, rule); the training family runs train and test seeds, the others test seeds."""
        nets = dict(
            train=([p["d_in"], p["hidden"], p["d_out"]], p["activation"]),
            width=([p["d_in"], p["wide"], p["d_out"]], p["activation"]),
            depth=([p["d_in"], *[p["hidden"]] * p["deep"], p["d_out"]], p["activation"]),
            activation=([p["d_in"], p["hidden"], p["d_out"]], p["other_activation"]),
            cnn=([p["d_in"], *p["cnn_channels"], p["d_out"]], "relu"),
        )
        keep = {k: p[k] for k in ("gammas", "sigmas", "steps", "checkpoints", "batch_size", "n_train", "n_val")}
        return [
            Spec(
                family=f,
                rule=r,
                widths=nets[f][0],
                activation=nets[f][1],
                seeds=(p["train_seeds"] + p["test_seeds"]) if f == "train" else p["test_seeds"],
                lr=pick_lr(r, gradient=p["lr"], adaptive=p["adam_lr"]),
                probe_sigma=p["probe_sigma"],
                **(keep | (dict(sigmas=[0.0]) if f == "cnn" else {})),  # RuleOptimizer refuses forward noise
            )
            for f in ["train", *p["held_out"]]
            for r in p["rules"]
        ]

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """Train the chunk's ensemble, recording observables of its first and last layers at checkpoints."""
        if spec.family == "cnn":
            return run_cnn(spec)
        conds = list(itertools.product(spec.gammas, spec.sigmas, spec.seeds))
        seeds = torch.tensor([c[2] for c in conds], dtype=torch.int64)
        d_in, d_out = spec.widths[0], spec.widths[-1]
        data = teacher_regression(
            seeds, d_in=d_in, d_out=d_out, n_train=spec.n_train, n_val=spec.n_val, teacher_hidden=(16,),
            device=ctx.device,
        )  # fmt: skip
        net = init_mlp(seeds, spec.widths, spec.activation, device=ctx.device)
        rule = make_rule(spec.rule, gamma=[c[0] for c in conds], sigma=[c[1] for c in conds])
        rec = ObservableRecorder(rule, units=[None], probe_sigma=spec.probe_sigma)
        res = train_mlp(
            net, rule, data, seeds, steps=spec.steps, lr=spec.lr, batch_size=spec.batch_size,
            record_every=max(1, spec.steps // spec.checkpoints), observe=rec, compile=ctx.compile,
        )  # fmt: skip
        last = len(spec.widths) - 2
        traj = {(o, 0 if l == 0 else 1): v for (o, l, _), v in rec.trajectories().items() if l in (0, last)}
        rows = []
        for e, (g, s, seed) in enumerate(conds):
            base = dict(
                family=spec.family,
                rule=spec.rule,
                weight_decay=g,
                noise=s,
                seed=int(seed),
                run=f"{spec.family}|{spec.rule}|{g:g}|{s:g}|{seed}",
                diverged=bool(res.diverged[e]),
                final_loss=float(res.val_loss_final[e]),
                units=0,
            )
            for t, step in enumerate(rec.steps):
                rows.append(dict(base, step=step, **{f"{o}_l{l}": float(v[t, e]) for (o, l), v in traj.items()}))
        return pd.DataFrame(rows)

    def claims(self, df, p):
        """Per held-out family: accuracy above chance, and kept relative to the in-distribution accuracy."""
        return transfer_claims(accuracies(df, p), p, self.size(p))

    def tables(self, df, p):
        """Identification accuracy per test set, with chance."""
        return [
            Table(
                accuracies(df, p),
                "Accuracy of the identifier (random forest, all observables) per test set; diverged: runs whose "
                "loss stopped being finite (classified from their observables up to then)",
            )
        ]

    def notes(self, p):
        """The setting and what is held out."""
        return (
            f"Training family: MLP {p['d_in']}-{p['hidden']}-{p['d_out']}, {p['activation']}, seeds "
            f"{p['train_seeds']}; test seeds {p['test_seeds']} of every family. Held out: hidden width "
            f"{p['wide']}; {p['deep']} hidden layers of {p['hidden']}; activation {p['other_activation']}. "
            f"γ ∈ {p['gammas']}, σ ∈ {p['sigmas']}, {p['steps']} steps, {p['checkpoints']} checkpoints. "
            "Features: mean, last value and slope of every observable of the first and the last layer (all "
            "units); the non-gradient fraction is not used (a user of the identifier does not have it). Chance "
            "= 1 / number of rules. The CNN family: hebb-cnn's CNN (conv 3x3 "
            f"{p['cnn_channels'][0]} → conv 3x3 {p['cnn_channels'][1]}, ReLU, linear readout) on the same "
            "teacher task, its 16 inputs as a 4x4 image, trained by RuleOptimizer one model per (γ, seed) with "
            "σ = 0 (forward noise is refused there); conv1 is its first layer, the readout its last; the noise "
            "response of alignment is not recorded there (imputed by the classifier); rules that cannot run "
            "on a CNN have no runs."
        )


def accuracies(df: pd.DataFrame, p: dict) -> pd.DataFrame:
    """Accuracy of an identifier trained on the training family's train seeds, on each test set."""
    train = df[(df.family == "train") & df.seed.isin(p["train_seeds"])]
    if train.empty or train.rule.nunique() < 2:
        return pd.DataFrame(columns=["test set", "runs", "diverged", "accuracy", "sem", "chance"])
    model = ident.train_identifier(train, "all", "forest", None, trees=p["trees"])
    chance = 1.0 / train.rule.nunique()
    rows = []
    for fam in FAMILIES:
        test = df[(df.family == fam) & df.seed.isin(p["test_seeds"])]
        if test.empty:
            continue
        P = model.predict_proba(test)
        truth = test.groupby("run").rule.first().reindex(P.index)
        hit = (P.idxmax(axis=1) == truth).to_numpy(dtype=float)
        acc = float(hit.mean())
        sem = math.sqrt(acc * (1 - acc) / len(hit)) if len(hit) > 1 else math.nan
        diverged = int(test.groupby("run").diverged.first().sum())
        rows.append({"test set": "in distribution" if fam == "train" else fam, "runs": len(hit),
                     "diverged": diverged, "accuracy": acc, "sem": sem, "chance": chance})  # fmt: skip
    return pd.DataFrame(rows)


def transfer_claims(acc: pd.DataFrame, p: dict, size: str) -> list[Claim]:
    """Two BEYOND claims per held-out family: ≥ 2 × chance (partly: above chance), and ≥ 80 % of the
    in-distribution accuracy (partly: ≥ 50 %)."""
    held = {"width": f"hidden width {p['wide']}", "depth": f"{p['deep']} hidden layers",
            "activation": f"activation {p['other_activation']}", "cnn": "a CNN"}  # fmt: skip
    rows = {r["test set"]: r for _, r in acc.iterrows()}
    base = rows.get("in distribution")
    out = []
    for fam in p["held_out"]:
        what, r = held[fam], rows.get(fam)
        chance = float(r["chance"]) if r is not None else math.nan
        ours = float(r["accuracy"]) if r is not None else math.nan
        n = int(r["runs"]) if r is not None else 0
        sem = float(r["sem"]) if r is not None else math.nan
        kept = ours / float(base["accuracy"]) if base is not None and base["accuracy"] > 0 else math.nan
        out += [
            Claim(f"identification transfers to {what}: accuracy ≥ 2 × chance", BEYOND, SOURCE, math.nan,
                  ours, sem, n, size, AtLeast(2 * chance if np.isfinite(chance) else 1.0, partly=chance),
                  note=f"chance {chance:.3g}"),
            Claim(f"identification on {what} keeps ≥ 80 % of its in-distribution accuracy", BEYOND, SOURCE,
                  math.nan, kept, math.nan, n if np.isfinite(kept) else 0, size, AtLeast(0.8, partly=0.5),
                  note="" if base is None else f"in distribution {float(base['accuracy']):.3g}"),
        ]  # fmt: skip
    return out


def run_cnn(spec: Spec) -> pd.DataFrame:
    """The CNN family: one model per (γ, seed) by RuleOptimizer (no batched path); rules that cannot run on a
    CNN give no rows. Same teacher task and checkpoints as the MLP families."""
    from plasticlab.experiments.rules.cnn import SmallCNN
    from plasticlab.simulation.train_torch import cnn_observables, seeded_init

    d_in, c1, c2, d_out = spec.widths
    side = math.isqrt(d_in)
    frames = []
    for g, seed in itertools.product(spec.gammas, spec.seeds):
        data = teacher_regression(
            [seed], d_in=d_in, d_out=d_out, n_train=spec.n_train, n_val=spec.n_val, teacher_hidden=(16,),
            dtype=torch.float32,
        )  # fmt: skip
        model = seeded_init(SmallCNN(1, side, [c1, c2], d_out), seed, ("rule-transfer/cnn",))
        x = data.x_train[0].reshape(-1, 1, side, side)
        try:
            rows, diverged = cnn_observables(model, spec, g, seed, x, data.y_train[0])
        except PlasticlabError:
            return pd.DataFrame()
        run = f"cnn|{spec.rule}|{g:g}|0|{seed}"
        base = dict(family="cnn", rule=spec.rule, weight_decay=g, noise=0.0, seed=seed, run=run, units=0)
        frames.append(pd.DataFrame(rows).assign(**base, diverged=diverged))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
