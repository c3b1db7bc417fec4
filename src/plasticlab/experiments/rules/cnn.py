"""hebb-cnn: Table 1's question (Koplow, Poggio & Ziyin 2025) beyond MLPs — does the learning signal of each
rule align with the Hebbian direction, more so as weight decay γ grows, in a small CNN and a small transformer?

Models: a CNN (two 3x3 convolutions with ReLU, average pooling to 4x4, a linear readout) and a 2-block pre-LN
transformer (``networks.transformer.TinyTransformer``; an image's rows are its tokens). Data: scikit-learn's
digits (offline) and CIFAR-10 from ``data_path`` (skipped, with a note, when that folder holds no CIFAR-10).
Rules come from the registry by name and run through ``RuleOptimizer`` on every weight matrix; feedback rules
(dfa, fa, sign_symmetry) through per-layer backward hooks. Alignment is measured by ``HebbianProbe``.

``RuleOptimizer`` trains one torch model, so there is no ensemble-batched path: a chunk is one (model, data
set, rule, γ) and its seeds loop inside it (each seed draws its init and batches from its own key).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from plasticlab.errors import PlasticlabError
from plasticlab.experiments.hebbian._common import COLLAPSE
from plasticlab.probe import HebbianProbe
from plasticlab.rules import pick_lr, rule_names
from plasticlab.simulation.train_torch import fit, rule_setup, seeded_init
from plasticlab.study import MAX_STEPS, POSITIVE, Experiment, Figure, Interval, ListOf, RunContext, Table, register
from plasticlab.study.claims import BEYOND, AllCells, Claim, fraction
from plasticlab.tasks.classification import find_cifar10

STATIONARY = 5.0  # lr·γ·T at or above this: the decay has had e-folds enough to reach stationarity
TOL = 0.02  # a dip smaller than this between consecutive γ counts as noise in "rises with γ"
CLAIM_GROUPS = {"cnn": ("conv1", "conv2", "readout"), "transformer": ("attention", "feed-forward")}


@dataclass
class Spec:
    """One (model, data set, rule, γ); its seeds run one after another (one torch model each)."""

    model: str
    dataset: str
    data_path: str
    rule: str
    gamma: float
    seeds: list[int]
    steps: int
    batch_size: int
    lr: float
    every: int
    late: float
    n_train: int
    channels: list[int]
    d_model: int
    heads: int
    blocks: int
    d_ff: int


class SmallCNN(nn.Module):
    """Two 3x3 conv layers (ReLU) and a linear readout after average pooling to a 4x4 map."""

    def __init__(self, in_ch: int, side: int, channels: list[int], classes: int = 10):
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(in_ch, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.pool = nn.AvgPool2d(side // 4)
        self.readout = nn.Linear(c2 * 16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of images (B, C, H, W)."""
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.readout(self.pool(h).flatten(1))


def load_images(dataset: str, data_path: str, n_train: int) -> tuple[torch.Tensor, ...]:
    """Train / validation images (N, C, H, W) and class labels, float32; at most ``n_train`` training images."""
    from plasticlab.tasks import cifar10, digits

    if dataset == "digits":
        d, shape = digits(dtype=torch.float32), (1, 8, 8)
    else:
        d, shape = cifar10(data_path, n_train=n_train, n_val=2000), (3, 32, 32)
    xt, xv = d.x_train[0][:n_train].reshape(-1, *shape), d.x_val[0].reshape(-1, *shape)
    return xt, d.y_train[0][:n_train].argmax(1), xv, d.y_val[0].argmax(1)


def build(spec: Spec, shape: tuple[int, ...], seed: int) -> nn.Module:
    """The chunk's model with torch's default init, U(±1/√fan_in), every draw from the seed's own key."""
    C, H, W = shape
    if spec.model == "cnn":
        model: nn.Module = SmallCNN(C, H, spec.channels)
    else:
        from plasticlab.networks.transformer import TinyTransformer

        model = TinyTransformer(H, C * W, spec.d_model, spec.heads, spec.blocks, spec.d_ff, 10)
    return seeded_init(model, seed, ("hebb-cnn/init", spec.model))


def inputs(model: str, x: torch.Tensor) -> torch.Tensor:
    """Images as the model reads them: the CNN as they are, the transformer one token per image row."""
    return x if model == "cnn" else x.permute(0, 2, 1, 3).reshape(len(x), -1)


def group_of(layer: str) -> str:
    """The layer's kind for the tables: conv1, conv2, readout, embed, attention or feed-forward."""
    if ".attn." in layer:
        return "attention"
    return "feed-forward" if ".ff." in layer else layer


def train_seed(spec: Spec, data: tuple[torch.Tensor, ...], seed: int) -> pd.DataFrame:
    """Train one seed's model; its probe's per-layer late and early alignment, accuracy and flags."""
    xt, yt, xv, yv = data
    model = build(spec, tuple(xt.shape[1:]), seed)
    xt, xv = inputs(spec.model, xt), inputs(spec.model, xv)
    opt, tail, coupled = rule_setup(model, spec.rule, spec.gamma, spec.lr, seed)
    probe = HebbianProbe(model, every=spec.every).attach_optimizer(opt)
    norm0 = {n: st.module.weight.detach().norm().item() for n, st in probe.layers.items()}
    t0 = time.perf_counter()
    try:
        losses, diverged = fit(spec, model, opt, tail, xt, yt, seed)
    finally:
        probe.remove()
        opt.remove_hooks()
    with torch.no_grad():
        acc = (model(xv).argmax(1) == yv).double().mean().item()
    df = probe.to_frame()
    col = "alignment_signal" if coupled else "alignment_update"
    late_from = int(spec.steps * (1 - spec.late))
    rows = []
    for name, st in probe.layers.items():
        d = df[df.layer == name]
        collapsed = st.module.weight.detach().norm().item() < COLLAPSE * norm0[name]
        late = d[d.step >= late_from][col]
        rows.append(
            dict(
                layer=name,
                group=group_of(name),
                alignment=math.nan if diverged or collapsed else late.mean(),
                alignment_early=d[d.step < max(1, spec.steps // 10)][col].mean(),
                measured=len(late),
                collapsed=bool(collapsed),
            )
        )
    run = dict(seed=seed, val_acc=acc, train_loss_late=float(np.mean(losses)) if losses else math.nan)
    return pd.DataFrame(rows).assign(**run, diverged=diverged, seconds=time.perf_counter() - t0)


@register
class HebbCNN(Experiment):
    """hebb-cnn: Hebbian alignment per layer of a CNN and a transformer, per rule and weight decay γ."""

    name = "hebb-cnn"
    summary = "Table 1's question on a CNN and a transformer: alignment per layer for 6 rules × γ (digits, CIFAR)"
    title = "Hebbian alignment in a CNN and a transformer, per rule and γ"
    budget_s = 900
    code_version = 1
    spec_type = Spec
    columns = (
        "model",
        "dataset",
        "rule",
        "gamma",
        "seed",
        "layer",
        "group",
        "alignment",
        "runnable",
        "stationary",
    )
    defaults = dict(
        models=["cnn", "transformer"],
        datasets=["digits", "cifar10"],
        data_path="",
        rules=["sgd", "adam_l2", "dfa", "fa", "sign_symmetry", "random_nn"],
        gammas=[0.0, 5e-5, 5e-4, 5e-3],
        seeds=[0, 1, 2],
        steps=20000,
        batch_size=64,
        lr_gradient=0.05,
        lr_adaptive=1e-3,
        every=20,
        late=0.25,
        n_train=50000,
        channels=[8, 16],
        d_model=32,
        heads=4,
        blocks=2,
        d_ff=64,
    )
    quick = dict(seeds=[0, 1], steps=500, every=10)
    tiny = dict(datasets=["digits"], rules=["dfa", "random_nn"], gammas=[0.0, 5e-3], seeds=[0], steps=10, every=2)
    choices = dict(models=["cnn", "transformer"], datasets=["digits", "cifar10"], rules=rule_names())
    constraints = dict(
        steps=Interval(int, 10, MAX_STEPS),
        lr_gradient=POSITIVE,
        lr_adaptive=POSITIVE,
        every=Interval(int, 1, MAX_STEPS),
        late=Interval(float, 0, 1, closed="right"),
        channels=ListOf(Interval(int, 1, 4096), min_len=2, max_len=2, unique=False),
        d_model=Interval(int, 1, 4096),
        heads=Interval(int, 1, 64),
        blocks=Interval(int, 1, 64),
        d_ff=Interval(int, 1, 65536),
    )

    def validate(self, p):
        """d_model must split evenly into heads."""
        if p["d_model"] % p["heads"]:
            raise PlasticlabError(f"hebb-cnn: d_model {p['d_model']} is not a multiple of heads {p['heads']}")

    def chunks(self, p):
        """One chunk per (model, data set, rule, γ); CIFAR-10 only when data_path holds it."""
        keep = {k: p[k] for k in ("data_path", "seeds", "steps", "batch_size", "every", "late", "n_train")}
        keep |= {k: p[k] for k in ("channels", "d_model", "heads", "blocks", "d_ff")}
        lrs = dict(gradient=p["lr_gradient"], adaptive=p["lr_adaptive"])
        return [
            Spec(model=m, dataset=d, rule=r, gamma=g, lr=pick_lr(r, **lrs), **keep)
            for m in p["models"]
            for d in available(p)
            for r in p["rules"]
            for g in p["gammas"]
        ]

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """Train the chunk's seeds one after another; per seed and layer, the late alignment."""
        data = load_images(spec.dataset, spec.data_path, spec.n_train)
        frames = []
        for seed in spec.seeds:
            try:
                frames.append(train_seed(spec, data, seed).assign(runnable=True, why=""))
            except PlasticlabError as e:  # e.g. random_nn needs an MLP chain: a cell that cannot run
                frames.append(pd.DataFrame([dict(seed=seed, layer="—", group="—", runnable=False, why=str(e))]))
        df = pd.concat(frames, ignore_index=True)
        stationary = spec.lr * spec.gamma * spec.steps >= STATIONARY
        ids = dict(model=spec.model, dataset=spec.dataset, rule=spec.rule, gamma=spec.gamma, lr=spec.lr)
        return df.assign(**ids, stationary=stationary, alignment=df.get("alignment", math.nan))

    def claims(self, df, p):
        """Per model and data set: alignment rises with γ, and is positive at the largest γ, in every cell."""
        return [
            c
            for (m, d), g in df.groupby(["model", "dataset"], sort=False)
            for c in cnn_claims(g, m, d, self.size(p))
        ]

    def tables(self, df, p):
        """Alignment per rule × layer × γ for each model and data set (stationary cells marked), accuracies."""
        groups = df.groupby(["model", "dataset"], sort=False)
        acc = [
            Table(accuracy_table(g), f"{m} on {d}: validation accuracy after training (seed mean)")
            for (m, d), g in groups
        ]
        return [
            Table(
                alignment_table(g),
                f"{m} on {d}: late alignment (seed mean) per rule and layer; columns γ; "
                f"† = stationary cell (lr·γ·T ≥ {STATIONARY:g}); n/a = the rule cannot run on this model; "
                "— = diverged or collapsed",
            )
            for (m, d), g in groups
        ] + acc

    def figures(self, df, p):
        """Alignment vs γ per layer group, one line per rule, for each model and data set."""
        from plasticlab.experiments.rules.cnn_figures import alignment_vs_gamma

        return [
            Figure(f"alignment_{m}_{d}", alignment_vs_gamma(summary(g)), f"{m} on {d}: late alignment vs γ")
            for (m, d), g in df.groupby(["model", "dataset"], sort=False)
        ]

    def notes(self, p):
        """The setting, how alignment is read, and which data sets were skipped."""
        skipped = (
            ""
            if "cifar10" not in p["datasets"] or find_cifar10(p["data_path"])
            else (f"\n\nCIFAR-10 skipped: no CIFAR-10 python batches in data_path = {p['data_path']!r}.")
        )
        return (
            f"CNN: conv 3x3 {p['channels'][0]} → conv 3x3 {p['channels'][1]} (ReLU) → average pool to 4x4 → "
            f"linear readout. Transformer: {p['blocks']} pre-LN blocks, d = {p['d_model']}, {p['heads']} heads, "
            f"feed-forward {p['d_ff']}, one token per image row (position embedding, LayerNorms fixed at init). "
            f"Cross-entropy, batch {p['batch_size']}, {p['steps']} steps, lr {p['lr_gradient']} (adaptive rules "
            f"{p['lr_adaptive']}), seeds {p['seeds']}. Alignment = cos(learning signal, Hebbian update "
            f"<h_b h_aᵀ>) per weight matrix (conv: over patches), measured by HebbianProbe every {p['every']} "
            f"steps, mean over the last {p['late']:.0%} of training, then over seeds. Decoupled decay is applied "
            "after the probed step, so the probed update is the rule's signal; adam_l2's coupled L2 stays in "
            "its step and its signal, the gradient, is read. Claims count cells (rule × layer; the transformer's "
            f"attention and feed-forward groups) of rules that run; a dip below {TOL} between consecutive γ is "
            f"noise. Seeds loop inside a chunk: RuleOptimizer trains one torch model (no batched path).{skipped}"
        )


def available(p: dict[str, Any]) -> list[str]:
    """The requested data sets that are here: CIFAR-10 only when ``data_path`` holds its batches."""
    return [d for d in p["datasets"] if d != "cifar10" or find_cifar10(p["data_path"]) is not None]


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Seed-mean alignment per (rule, group, γ) of the runnable cells (layers of one group averaged)."""
    ok = df[df.runnable.astype(bool)]
    per_seed = ok.groupby(["rule", "group", "gamma", "seed"], sort=False).alignment.mean().reset_index()
    out = per_seed.groupby(["rule", "group", "gamma"], sort=False).alignment.agg(["mean", "count"])
    return out.rename(columns={"mean": "alignment", "count": "n"}).reset_index()


def alignment_table(df: pd.DataFrame) -> pd.DataFrame:
    """Rows rule × layer, columns γ: the seed-mean late alignment as text († stationary, n/a, —)."""
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for (rule, layer, gamma), g in df.groupby(["rule", "layer", "gamma"], sort=False):
        v = g.alignment.astype(float).mean()
        text = "n/a" if not g.runnable.astype(bool).any() else ("—" if math.isnan(v) else f"{v:.3f}")
        cells.setdefault((rule, layer), {})[f"γ={gamma:g}"] = text + (
            "†" if g.stationary.any() and text[0] not in "n—" else ""
        )
    rows = [dict(rule=r, layer=l, **v) for (r, l), v in cells.items()]
    return pd.DataFrame(rows)


def cnn_claims(df: pd.DataFrame, model: str, dataset: str, size: str) -> list[Claim]:
    """Two BEYOND claims for one model and data set, over the cells (rule × layer group) of rules that run."""
    s = summary(df)
    s = s[s.group.isin(CLAIM_GROUPS.get(model, ()))]
    rises, positive = [], []
    for _, c in s.groupby(["rule", "group"], sort=False):
        a = c.sort_values("gamma").alignment.to_numpy(dtype=float)
        if len(a) < 2 or np.isnan(a).any():
            continue
        rises.append(bool(np.all(np.diff(a) >= -TOL)))
        positive.append(bool(a[-1] > 0))
    skipped = sorted(set(df.rule[~df.runnable.astype(bool)]))
    top = df[df.runnable.astype(bool) & (df.gamma == df.gamma.max())]
    notes = [f"cannot run here: {', '.join(skipped)}"] if skipped else []
    notes.append(
        f"largest γ stationary for {top.groupby('rule').stationary.any().sum()} of {top.rule.nunique()} rules"
    )
    where = f"{model} on {dataset}"
    cell = "rule × layer" if model == "cnn" else "rule × attention / feed-forward"
    src = "Table 1's question on other architectures"
    out = []
    for text, passes, test in (
        (
            f"{where}: alignment rises with γ for every rule (cells: {cell})",
            rises,
            f"non-decreasing in γ (± {TOL})",
        ),
        (f"{where}: alignment is positive at the largest γ for every rule (cells: {cell})", positive, "> 0"),
    ):
        frac, n = fraction(passes)
        out.append(
            Claim(text, BEYOND, src, math.nan, frac, math.nan, n, size, AllCells(test), note="; ".join(notes))
        )
    return out


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Validation accuracy at the end of training (seed mean) per rule, columns γ."""
    ok = df[df.runnable.astype(bool)].groupby(["rule", "gamma", "seed"], sort=False).val_acc.first().reset_index()
    t = ok.groupby(["rule", "gamma"], sort=False).val_acc.mean().unstack("gamma")
    t.columns = [f"γ={g:g}" for g in t.columns]
    return t.reset_index()
