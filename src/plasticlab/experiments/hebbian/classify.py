"""hebb-classify: Hebbian alignment vs weight decay in classification (the paper's classification setup).

2-layer MLP (128 tanh hidden units), softmax cross-entropy, lr 0.01, batch 256. The data is scikit-learn's
bundled digits (nothing downloads), or CIFAR-10 from a local folder with ``dataset=cifar10
data_path=/path/to/cifar-10-batches-py``. One chunk per rule; γ × seeds form one ensemble.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from plasticlab.experiments.hebbian._common import (
    RULES,
    dtype_of,
    members,
    share,
    summarise,
)
from plasticlab.networks.mlp import init_mlp
from plasticlab.rules import make_rule
from plasticlab.simulation.train_mlp import train_mlp
from plasticlab.study import MAX_STEPS, Experiment, Interval, Require, Text, register
from plasticlab.study.claims import KPZ, AtLeast, Claim
from plasticlab.study.report import Report
from plasticlab.tasks.classification import find_cifar10


@register
class HebbClassify(Experiment):
    """hebb-classify: Hebbian alignment versus weight decay for an MLP classifier."""

    name = "hebb-classify"
    summary = "alignment vs weight decay for a 128-tanh MLP classifier (digits, or local CIFAR-10)"
    budget_s = 60
    code_version = 1  # bump when run_chunk changes its numbers, so saved chunks are not reused
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
    )
    quick = dict(gammas=[0.0, 1e-3, 1e-2, 1e-1], seeds=[0, 1], steps=2500, dtype="float32")
    choices = dict(dataset=["digits", "cifar10"], rules=RULES, dtype=["float64", "float32"])

    constraints = dict(
        steps=Interval(int, 4, MAX_STEPS),
        average_from=Interval(float, 0, 1, closed="left"),
        data_path=Text(),
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
        keep = (
            "dataset",
            "data_path",
            "gammas",
            "seeds",
            "hidden",
            "steps",
            "lr",
            "batch_size",
            "average_from",
            "dtype",
        )
        return [dict(rule=r, **{k: p[k] for k in keep}) for r in p["rules"]]

    def run_chunk(self, spec):
        from plasticlab.tasks import cifar10, digits

        dt = dtype_of(spec["dtype"])
        data = digits(dtype=dt) if spec["dataset"] == "digits" else cifar10(spec["data_path"], dtype=dt)
        m = members(spec["seeds"], gamma=spec["gammas"])
        data = share(data, m.seed_index.values)
        seeds = m.seed.tolist()
        net = init_mlp(seeds, [data.d_in, spec["hidden"], data.d_out], "tanh", bias=True, dtype=dt)
        steps = spec["steps"]
        res = train_mlp(
            net,
            make_rule(spec["rule"], gamma=m.gamma.values),
            data,
            seeds,
            steps=steps,
            lr=spec["lr"],
            batch_size=spec["batch_size"],
            record_every=max(steps // 40, 1),
            average_from=int(spec["average_from"] * steps),
            late_every=4,
        )
        logits = res.net.forward(data.x_val).out
        acc = (logits.argmax(-1) == data.y_val.argmax(-1)).double().mean(-1)
        rows = []
        for l in range(2):
            rows.append(
                m.drop(columns="seed_index").assign(
                    dataset=spec["dataset"],
                    rule=spec["rule"],
                    layer=l,
                    alignment=res.alignment_late[l].double().cpu().numpy(),
                    val_loss=res.val_loss_final.double().cpu().numpy(),
                    val_acc=acc.cpu().numpy(),
                    diverged=res.diverged.cpu().numpy(),
                    collapsed=res.collapsed[l].cpu().numpy(),
                )
            )
        return pd.concat(rows, ignore_index=True)

    def report(self, df, p, out):
        _report(df, p, Path(out))

    def claims(self, df, p):
        """Per rule and layer: alignment rises with γ; best accuracy is not at the most Hebbian γ."""
        return classify_claims(df, p, self.size(p))


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


def _report(df, p, out):
    from plasticlab.experiments.hebbian.figures import classify_figure

    rep = Report(out, f"hebb-classify — weight decay and Hebbian alignment in a {p['dataset']} classifier", p)
    rep.text(
        f"{p['dataset']}: 2-layer MLP, {p['hidden']} tanh hidden units (biases; h_b excludes them), "
        f"cross-entropy, lr {p['lr']}, batch {p['batch_size']}, {p['steps']} steps, {len(p['seeds'])} seeds; "
        f"alignment averaged over the last {1 - p['average_from']:.0%} of steps. lr·γ·steps at the largest γ: "
        f"{p['lr'] * max(p['gammas']) * p['steps']:.3g} (≳ 3 means stationary). The paper's setting is "
        "CIFAR-10 (50 epochs); digits is the offline stand-in."
    )
    s = summarise(df, ["rule", "layer", "gamma"])
    acc = summarise(df[df.layer == 0], ["rule", "gamma"], "val_acc").rename(
        columns={"mean": "val_acc", "sem": "val_acc_sem"}
    )[["rule", "gamma", "val_acc", "val_acc_sem"]]
    rep.table(
        s.merge(acc, on=["rule", "gamma"], how="left"), "Alignment (mean ± sem over seeds) and validation accuracy"
    )
    fig = classify_figure(s, acc, sorted(set(df.gamma)))
    rep.figure(fig, "classify_alignment", "Alignment vs weight decay (left) and validation accuracy (right).")
    rep.add_claims(classify_claims(df, p, HebbClassify().size(p)))
    rep.write()
