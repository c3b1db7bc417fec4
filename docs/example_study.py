"""example-study: a whole experiment in one file, run as a plugin with no edit anywhere else.

    plasticlab run example-study --plugin docs/example_study.py --quick --out runs/example

The final validation loss of SGD on the student–teacher regression over learning rate × weight decay γ.
One chunk per learning rate; its γ × seed members train together as one ensemble batch (per-member γ).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pandas as pd
import torch

from plasticlab.networks.mlp import init_mlp
from plasticlab.rules import make_rule
from plasticlab.simulation.train_mlp import train_mlp
from plasticlab.study import POSITIVE, Experiment, Figure, ListOf, RunContext, Table, register
from plasticlab.study.claims import BEYOND, AllCells, Claim, fraction
from plasticlab.tasks import teacher_regression


@dataclass
class Spec:
    """One learning rate's γ × seed ensemble (one chunk): plain fields, so it hashes and ships as JSON."""

    lr: float
    gammas: list[float]
    seeds: list[int]
    steps: int
    hidden: int
    n_train: int


@register
class ExampleStudy(Experiment):
    """example-study: SGD's final loss over learning rate × weight decay."""

    name = "example-study"
    summary = "SGD's final loss on teacher regression over learning rate × weight decay (an example plugin)"
    budget_s = 30
    paper = False  # a study beside the papers: not part of `plasticlab reproduce`
    spec_type = Spec
    columns = ("lr", "gamma", "seed", "final_loss")
    defaults = dict(
        lrs=[0.01, 0.03, 0.1], gammas=[0.0, 0.01, 0.1], seeds=[0, 1, 2], steps=2000, hidden=16, n_train=1000
    )
    quick = dict(steps=300, n_train=256)
    tiny = dict(lrs=[0.05, 0.1], gammas=[0.0, 0.1], seeds=[0], steps=30, hidden=4, n_train=64)
    constraints = dict(lrs=ListOf(POSITIVE))  # common keys (gammas, seeds, steps, ...) are checked already

    def chunks(self, p):
        """One chunk per learning rate."""
        return [Spec(lr, p["gammas"], p["seeds"], p["steps"], p["hidden"], p["n_train"]) for lr in p["lrs"]]

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """Train every γ × seed member of the chunk at once; one row per member."""
        conds = list(itertools.product(spec.gammas, spec.seeds))
        seeds = torch.tensor([s for _, s in conds])
        data = teacher_regression(seeds, d_in=8, d_out=4, n_train=spec.n_train, n_val=200, device=ctx.device)
        net = init_mlp(seeds, [8, spec.hidden, 4], "tanh", device=ctx.device)
        rule = make_rule("sgd", gamma=[g for g, _ in conds])
        res = train_mlp(net, rule, data, seeds, steps=spec.steps, lr=spec.lr, batch_size=32, compile=ctx.compile)
        return pd.DataFrame(
            dict(
                lr=spec.lr,
                gamma=[g for g, _ in conds],
                seed=[s for _, s in conds],
                final_loss=res.val_loss_final.double().cpu().numpy(),
                diverged=res.diverged.cpu().numpy(),
            )
        )

    def claims(self, df, p):
        """In a fixed step budget a larger learning rate gets further: at the smallest γ, loss falls with lr."""
        at = _mean_loss(df)[min(p["gammas"])]  # mean final loss per lr (sorted)
        f, n = fraction([b < a for a, b in zip(at.values, at.values[1:])])
        g = min(p["gammas"])
        text = f"after {p['steps']} steps, each larger lr ends at a lower loss (γ = {g:g}; share of lr pairs)"
        src = "example study"
        return [Claim(text, BEYOND, src, math.nan, f, math.nan, n, self.size(p), AllCells("loss falls"))]

    def figures(self, df, p):
        """Final loss against γ, one line per learning rate."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for lr, row in _mean_loss(df).iterrows():
            ax.plot(row.index, row.values, marker="o", label=f"lr {lr:g}")
        ax.set(xlabel="weight decay γ", ylabel="final validation loss (mean over seeds)", yscale="log")
        ax.legend()
        return [Figure("loss_vs_gamma", fig, "Final loss against weight decay, one line per learning rate.")]

    def tables(self, df, p):
        """The mean final loss per learning rate (rows) and γ (columns)."""
        return [Table(_mean_loss(df).reset_index(), "Final validation loss, mean over seeds (columns: γ)")]

    def notes(self, p):
        """The setting."""
        return f"8→{p['hidden']}→4 tanh MLP, SGD with batch 32 for {p['steps']} steps, {len(p['seeds'])} seeds."


def _mean_loss(df: pd.DataFrame) -> pd.DataFrame:
    """Mean final loss over seeds that did not diverge: rows lr, columns γ."""
    return df[~df.diverged].pivot_table(index="lr", columns="gamma", values="final_loss", aggfunc="mean")
