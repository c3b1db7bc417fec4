"""hebb-classify: Hebbian alignment vs weight decay in classification (the paper's classification setup).

2-layer MLP (128 tanh hidden units), softmax cross-entropy, lr 0.01, batch 256. The data is scikit-learn's
bundled digits (nothing downloads), or CIFAR-10 from a local folder with ``dataset=cifar10
data_path=/path/to/cifar-10-batches-py``. One chunk per rule; γ × seeds form one ensemble.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from plasticlab.experiments.hebbian._common import (
    LAYER_INITS,
    RULES,
    convention_note,
    convention_params,
    dtype_of,
    members,
    share,
    summarise,
)
from plasticlab.networks.mlp import init_mlp
from plasticlab.rules import make_rule
from plasticlab.simulation.train_mlp import train_mlp
from plasticlab.study import (
    MAX_STEPS,
    Experiment,
    Figure,
    Interval,
    Require,
    RunContext,
    Table,
    Text,
    convention,
    register,
    shared_fields,
)
from plasticlab.study.claims import KPZ, AtLeast, Claim
from plasticlab.tasks.classification import find_cifar10

# The loss convention does not apply: cross-entropy is already a batch mean. Only the layers convention does.
CONVENTION_DEFAULTS, CONVENTION_CHOICES = convention_params("layers")
CLASSIFY_TEXT = {("layers", "plain"): "layers with zero-initialised, undecayed biases, W ~ N(0, 1/fan_in)"}


@dataclass
class Spec:
    """One rule's γ × seed ensemble on one dataset (one chunk)."""

    rule: str
    dataset: str
    data_path: str
    gammas: list[float]
    seeds: list[int]
    hidden: int
    steps: int
    lr: float
    batch_size: int
    average_from: float
    dtype: str
    layers: str = convention("plain")


@register
class HebbClassify(Experiment):
    """hebb-classify: Hebbian alignment versus weight decay for an MLP classifier."""

    name = "hebb-classify"
    summary = "alignment vs weight decay for a 128-tanh MLP classifier (digits, or local CIFAR-10)"
    title = "weight decay and Hebbian alignment in a classifier"
    budget_s = 60
    code_version = 1  # bump when run_chunk changes its numbers, so saved chunks are not reused
    spec_type = Spec
    columns = ("dataset", "rule", "gamma", "seed", "layer", "alignment", "val_acc", "diverged", "collapsed")
    tiny = dict(gammas=[0.0, 0.1], seeds=[0], hidden=8, steps=30, batch_size=32)  # seconds: the contract test
    defaults = dict(
        dataset="digits",
        data_path="",
        rules=["sgd"],
        gammas=[0.0, 1e-3, 1e-2, 3e-2, 1e-1],
        seeds=[0, 1, 2, 3, 4],
        hidden=128,
        steps=10000,
        lr=0.01,
        batch_size=256,
        average_from=0.5,
        dtype="float64",
        **CONVENTION_DEFAULTS,
    )
    quick = dict(gammas=[0.0, 1e-3, 1e-2, 1e-1], seeds=[0, 1], steps=2500, dtype="float32")
    choices = dict(dataset=["digits", "cifar10"], rules=RULES, dtype=["float64", "float32"], **CONVENTION_CHOICES)

    constraints = dict(
        steps=Interval(int, 4, MAX_STEPS), average_from=Interval(float, 0, 1, closed="left"), data_path=Text()
    )
    relations = (
        Require(
            ("dataset", "data_path"),
            lambda dataset, path: dataset != "cifar10" or find_cifar10(path) is not None,
            "dataset=cifar10 needs data_path = a local folder with the CIFAR-10 python batches "
            "(data_batch_1..5, test_batch; nothing downloads)",
        ),
    )

    def chunks(self, p):
        """One chunk per rule; its γ × seed members share the data."""
        keep = shared_fields(Spec, p, "rule")
        return [Spec(rule=r, **keep) for r in p["rules"]]

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """Train the rule's members; late alignment per layer and validation accuracy per run."""
        from plasticlab.tasks import cifar10, digits

        dt, dev = dtype_of(spec.dtype), ctx.device
        data = (
            digits(dtype=dt, device=dev)
            if spec.dataset == "digits"
            else cifar10(spec.data_path, dtype=dt, device=dev)
        )
        m = members(spec.seeds, gamma=spec.gammas)
        data = share(data, m.seed_index.values)
        seeds = m.seed.tolist()
        widths, init = [data.d_in, spec.hidden, data.d_out], LAYER_INITS[spec.layers]
        net = init_mlp(seeds, widths, "tanh", bias=True, init=init, dtype=dt, device=dev)
        steps = spec.steps
        res = train_mlp(
            net,
            make_rule(spec.rule, gamma=m.gamma.values, decay_biases=spec.layers == "torch"),
            data,
            seeds,
            steps=steps,
            lr=spec.lr,
            batch_size=spec.batch_size,
            record_every=max(steps // 40, 1),
            average_from=int(spec.average_from * steps),
            late_every=4,
            compile=ctx.compile,
        )
        logits = res.net.forward(data.x_val).out
        acc = (logits.argmax(-1) == data.y_val.argmax(-1)).double().mean(-1)
        rows = []
        for l in range(2):
            rows.append(
                m.drop(columns="seed_index").assign(
                    dataset=spec.dataset,
                    rule=spec.rule,
                    layer=l,
                    alignment=res.alignment_late[l].double().cpu().numpy(),
                    val_loss=res.val_loss_final.double().cpu().numpy(),
                    val_acc=acc.cpu().numpy(),
                    diverged=res.diverged.cpu().numpy(),
                    collapsed=res.collapsed[l].cpu().numpy(),
                )
            )
        return pd.concat(rows, ignore_index=True)

    def claims(self, df, p):
        """Per rule and layer: alignment rises with γ; best accuracy is not at the most Hebbian γ."""
        return classify_claims(df, p, self.size(p))

    def notes(self, p):
        """The classifier, the data, and how far from stationary the largest γ is."""
        return (
            f"{p['dataset']}: 2-layer MLP, {p['hidden']} tanh hidden units (biases; h_b excludes them), "
            f"cross-entropy, lr {p['lr']}, batch {p['batch_size']}, {p['steps']} steps, {len(p['seeds'])} "
            f"seeds; alignment averaged over the last {1 - p['average_from']:.0%} of steps. lr·γ·steps at the "
            f"largest γ: {p['lr'] * max(p['gammas']) * p['steps']:.3g} (≳ 3 means stationary). The paper's "
            "setting is CIFAR-10 (50 epochs); digits is the offline stand-in. "
            + convention_note(
                p, " (the loss convention does not apply: cross-entropy is a batch mean already)", CLASSIFY_TEXT
            )
        )

    def figures(self, df, p):
        """Alignment and validation accuracy vs γ."""
        from plasticlab.experiments.hebbian.figures import classify_figure

        s, acc = _summaries(df)
        return [
            Figure(
                "classify_alignment",
                classify_figure(s, acc, sorted(set(df.gamma))),
                "Alignment vs weight decay (left) and validation accuracy (right).",
            )
        ]

    def tables(self, df, p):
        """Alignment per rule, layer and γ beside the validation accuracy."""
        s, acc = _summaries(df)
        frame = s.merge(acc, on=["rule", "gamma"], how="left")
        return [Table(frame, "Alignment (mean ± sem over seeds) and validation accuracy")]


def _summaries(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Alignment per (rule, layer, γ) and validation accuracy per (rule, γ), mean ± sem over seeds."""
    s = summarise(df, ["rule", "layer", "gamma"])
    acc = summarise(df[df.layer == 0], ["rule", "gamma"], "val_acc").rename(
        columns={"mean": "val_acc", "sem": "val_acc_sem"}
    )[["rule", "gamma", "val_acc", "val_acc_sem"]]
    return s, acc


def classify_claims(df: pd.DataFrame, p: dict, size: str) -> list[Claim]:
    """Alignment rise from the smallest to the largest γ (per rule, layer); accuracy lost at the largest γ."""
    src = f"classification experiment (CIFAR-10 in the paper; {p['dataset']} here)"
    out = []
    s = summarise(df, ["rule", "layer", "gamma"])
    for (rule, l), g in s.groupby(["rule", "layer"]):
        g = g.dropna(subset=["mean"]).sort_values("gamma")
        rise, sem, n = math.nan, math.nan, 0
        if len(g) >= 2:
            rise = float(g["mean"].iloc[-1] - g["mean"].iloc[0])
            sem = float(np.hypot(*np.nan_to_num(g["sem"].iloc[[0, -1]].to_numpy())))
            n = int(g["n"].iloc[[0, -1]].min())
        r = df[(df.rule == rule) & (df.layer == l)]
        out.append(
            Claim(
                f"{rule}, layer {l} ({'1st' if l == 0 else '2nd'} weight matrix): alignment rises with decay",
                KPZ,
                src,
                math.nan,
                rise,
                sem,
                n,
                size,
                AtLeast(0.05),
                diverged=int(r.diverged.sum()),
            )
        )
    acc = summarise(df[df.layer == 0], ["rule", "gamma"], "val_acc").dropna(subset=["mean"])
    for rule, a in acc.groupby("rule"):
        top = a.loc[a["mean"].idxmax()]
        last = a.sort_values("gamma").iloc[-1]
        out.append(
            Claim(
                f"{rule}: the most Hebbian (largest) γ is not the most accurate (best − accuracy at largest γ)",
                KPZ,
                src,
                math.nan,
                float(top["mean"] - last["mean"]),
                float(last["sem"]),
                int(last["n"]),
                size,
                AtLeast(0.01),
                note=f"best accuracy {top['mean']:.3f} at γ = {top.gamma:g}",
            )
        )
    return out
