"""hebb-transformer: Table 1's transformer rows (Koplow, Poggio & Ziyin 2025), measured by HebbianProbe only.

A small pre-LN transformer (``norm="none"`` drops the LayerNorms; attention written by hand from nn.Linear
q/k/v/o projections so the probe sees every matrix) on the teacher regression: the 32-d Gaussian input split
into tokens × features, embedded (+ a learned position embedding), mean-pooled and read out to 32 outputs.
Rules come from the registry by name (``make_rule(name, gamma=γ)`` run by ``RuleOptimizer`` on the nn.Linear
layers; rules that send the output error along fixed feedback matrices, such as dfa, need an MLP's layer chain
and are refused, see ``rules.optim.any_model_rules``). The position embedding and LayerNorm parameters (not
probed) train by the plain torch form of the rule's optimizer (Adam or SGD, same lr, no decay). A *decoupled*
decay (sgd; adam, then AdamW's form) is applied after the optimizer step, W ← W(1 − ηγ) on every weight matrix
(biases are not decayed), outside the probed ``optimizer.step()``: the probe's "actual update" is then the
rule's learning signal (−η·grad for SGD, −η·m̂/(√v̂+ε) for Adam), the ``alignment`` column; ``alignment_grad``
is the raw −∂ℓ/∂W. A decay inside the rule (adam_l2's coupled L2) stays in the step; its learning signal is
−∂ℓ/∂W, so ``alignment`` is ``alignment_grad`` there.

The probe is about ordinary nn.Modules (one model, one optimizer), so a chunk is one (rule, γ, seed) model, not
an ensemble batch. Alignment = mean over the last ``late`` of training (every ``every`` steps) per layer, then
over seeds. "2nd layer" (Table 1's): the first block's attention input projections q, k, v, averaged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import NamedTuple, cast

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from plasticlab import seeding
from plasticlab.experiments.hebbian._common import COLLAPSE, gamma_label, paper_gamma
from plasticlab.experiments.hebbian.paper import TABLE1_TRANSFORMER
from plasticlab.networks.transformer import TinyTransformer
from plasticlab.probe import HebbianProbe
from plasticlab.rules import Chain, Decay, RuleOptimizer, make_rule, parse_rule, pick_lr
from plasticlab.rules.optim import any_model_rules
from plasticlab.rules.transforms import Adam, WeightDecay
from plasticlab.study import (
    MAX_STEPS,
    POSITIVE,
    Experiment,
    Figure,
    Interval,
    Require,
    RunContext,
    Table,
    register,
    shared_fields,
)
from plasticlab.study.claims import KPZ, AllCells, AtLeast, Claim, Within, fraction, measure

CELL_TOL = 0.1  # |ours − paper| per Table 1 cell, as hebb-table
PAPER = TABLE1_TRANSFORMER
PAPER_GAMMAS = sorted({g for _, g in PAPER})
SECOND = ("blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v")
TOL = 0.02  # dips smaller than this between consecutive γ count as noise in the monotonicity verdict
SRC = "Table 1 (transformer rows)"
BEYOND = "stationarity theorem (Table 1's transformer rows at a larger γ)"


@dataclass
class Spec:
    """One (rule, γ, seed) transformer (one chunk): the model, the data and the training schedule."""

    rule: str
    gamma: float
    seed: int
    steps: int
    batch_size: int
    lr_adam: float
    lr_sgd: float
    every: int
    late: float
    n_train: int
    n_val: int
    tokens: int
    features: int
    d_model: int
    heads: int
    layers: int
    d_ff: int
    norm: str


def paper_cell(rule: str, gamma: float, factor: float = 1.0) -> float | None:
    """The paper's Table 1 transformer cell for a rule (by its base name: "sgd:momentum=0.9" sits beside the
    sgd row) at our γ (= ``factor`` × the paper's); None where the paper has no cell."""
    g = paper_gamma(gamma, factor, PAPER_GAMMAS)
    return None if g is None else PAPER.get((parse_rule(rule)[0], g))


def seeded_init(model: nn.Module, seed: int) -> None:
    """torch's default Linear init, U(±1/√fan_in), but every draw from plasticlab.seeding (per seed, per name)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            key = seeding.key_of("hebb-transformer/init", name)
            if name.endswith("pos"):
                p.copy_(0.1 * seeding.normal([seed], key, p.shape, p.dtype)[0])
            elif ".ln" in name or name.startswith("ln"):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                mod = model.get_submodule(name.rsplit(".", 1)[0])
                bound = 1.0 / math.sqrt(cast(nn.Linear, mod).in_features)
                p.copy_(bound * (2 * seeding.uniform([seed], key, p.shape, p.dtype)[0] - 1))


def make_data(seed: int, spec: Spec, device: str | None = None):
    """Train and validation tensors of the teacher regression for one seed."""
    from plasticlab.tasks import teacher_regression

    d = teacher_regression(
        [seed],
        d_in=spec.tokens * spec.features,
        d_out=32,
        n_train=spec.n_train,
        n_val=spec.n_val,
        dtype=torch.float32,
        device=device,
    )
    return d.x_train[0], d.y_train[0], d.x_val[0], d.y_val[0]


class RuleSetup(NamedTuple):
    """A registry rule set up on the transformer: the optimizer, the decoupled γ applied after each step to
    ``decayed``, and whether a decay piece sits inside the optimizer (then its probed update holds it)."""

    opt: RuleOptimizer
    tail: float
    decayed: list[torch.Tensor]
    coupled: bool
    rest: torch.optim.Optimizer | None


def rule_optimizer(model: nn.Module, rule: str, gamma: float, spec: Spec) -> RuleSetup:
    """The named registry rule, ``make_rule(rule, gamma=γ)``, as the optimizer of ``model``'s nn.Linear layers.

    A decoupled decay piece at the end of the chain (sgd; adam, which is then AdamW's form) is kept out of the
    optimizer and applied after its step, outside the probe, so the probed update is the rule's learning
    signal; a decay inside the chain (adam_l2's coupled L2) stays in it. Decay acts on the weight matrices
    (biases too only if the piece says so). lr: ``lr_adam`` for a rule of the adaptive lr group, else
    ``lr_sgd`` (``pick_lr``). The other parameters (position embedding, LayerNorm gains and biases; not
    probed) train too, by the plain torch form of the rule's optimizer (Adam or SGD at the same lr, no
    decay), so the model trains all of its parameters as the paper's did."""
    parts = list(make_rule(rule, gamma=gamma).parts)
    tail, biases = 0.0, False
    while len(parts) > 1 and isinstance(parts[-1], WeightDecay):
        wd = cast(WeightDecay, parts.pop())
        tail, biases = tail + float(wd.gamma), biases or wd.biases  # a float: one γ per chunk
    lr = pick_lr(rule, gradient=spec.lr_sgd, adaptive=spec.lr_adam)
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    owned = {id(p) for m in linear for p in m.parameters()}
    others = [p for p in model.parameters() if id(p) not in owned]
    adam = any(isinstance(p, Adam) for p in parts)
    rest = (torch.optim.Adam(others, lr=lr) if adam else torch.optim.SGD(others, lr=lr)) if others else None
    decayed = [p for m in linear for p in (m.weight, m.bias) if p is not None and (p is m.weight or biases)]
    opt = RuleOptimizer(model, Chain(*parts), lr=lr, activation="linear", seed=int(spec.seed))
    return RuleSetup(opt, tail, decayed, any(isinstance(p, Decay) for p in parts), rest)


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (out - y).pow(2).sum(1).mean()


def _fit(model: nn.Module, setup: RuleSetup, spec: Spec, xt: torch.Tensor, yt: torch.Tensor):
    """Train ``model`` for ``spec.steps``; the step it diverged at (None) and the late training losses."""
    steps, late_from = spec.steps, int(spec.steps * (1 - spec.late))
    chunk = 500  # batch indices drawn a block of steps at a time: (seed, key, step) → same as one per step
    decay = 1.0 - setup.opt.param_groups[0]["lr"] * setup.tail
    losses: list[float] = []
    for start in range(0, steps, chunk):
        key = seeding.key_of("hebb-transformer/batch", start)
        idx = seeding.randint([spec.seed], key, (chunk, spec.batch_size), len(xt))[0].to(xt.device)
        for i in range(min(chunk, steps - start)):
            step = start + i
            model.zero_grad(set_to_none=True)
            loss = _loss(model(xt[idx[i]]), yt[idx[i]])
            if not torch.isfinite(loss):
                return step, losses
            loss.backward()
            setup.opt.step()
            if setup.rest is not None:
                setup.rest.step()
            if setup.tail:
                with torch.no_grad():
                    torch._foreach_mul_(setup.decayed, decay)
            if step >= late_from and step % spec.every == 0:
                losses.append(loss.item())
    return None, losses


def train_one(spec: Spec, ctx: RunContext) -> pd.DataFrame:
    """Train one (rule, gamma, seed) transformer and return its probe's alignment rows."""
    xt, yt, xv, yv = make_data(spec.seed, spec, ctx.device)
    model = TinyTransformer(
        spec.tokens, spec.features, spec.d_model, spec.heads, spec.layers, spec.d_ff, yt.shape[1], spec.norm
    ).to(ctx.device)
    seeded_init(model, spec.seed)
    setup = rule_optimizer(model, spec.rule, float(spec.gamma), spec)
    probe = HebbianProbe(model, every=spec.every).attach_optimizer(setup.opt)
    norm0 = {n: st.module.weight.detach().norm().item() for n, st in probe.layers.items()}
    t0 = time.perf_counter()
    diverged_at, losses = _fit(model, setup, spec, xt, yt)
    probe.remove()
    setup.opt.remove_hooks()
    with torch.no_grad():
        val = _loss(model(xv), yv).item()
        val_trivial = _loss(yt.mean(0).expand_as(yv), yv).item()  # predicting the mean: "learned nothing"
    df = probe.to_frame()
    run = dict(
        diverged=diverged_at is not None,
        diverged_at=diverged_at if diverged_at else -1,
        train_loss_late=float(np.mean(losses)) if losses else math.nan,
        val_loss=val,
        val_loss_trivial=val_trivial,
        lr=setup.opt.param_groups[0]["lr"],
        steps=spec.steps,
        seconds=time.perf_counter() - t0,
    )
    windows = (df.step >= int(spec.steps * (1 - spec.late)), df.step < max(1, spec.steps // 10))
    rows = [
        dict(
            rule=spec.rule,
            gamma=float(spec.gamma),
            seed=int(spec.seed),
            **_layer_row(probe, name, norm0[name], df, windows, setup.coupled, run),
            **run,
        )
        for name in probe.layers
    ]
    return pd.DataFrame(rows)


def _layer_row(
    probe: HebbianProbe, name: str, norm0: float, df: pd.DataFrame, windows, coupled: bool, run
) -> dict:
    """One probed layer's columns: late means of the rule's signal (``alignment``; −∂ℓ/∂W when a decay sits in
    its step) and of −∂ℓ/∂W, NaN if the layer collapsed or the run diverged; the first 10 %; weight norms."""
    w = probe.layers[name].module.weight.detach().norm().item()
    collapsed = w < COLLAPSE * norm0
    late, early = windows
    lt, er = df[late & (df.layer == name)], df[early & (df.layer == name)]
    a, ag = lt.alignment_update.mean(), lt.alignment_signal.mean()
    if coupled:  # the probed update holds the coupled L2 term; the learning signal is −∂ℓ/∂W alone
        a = ag
    failed = collapsed or run["diverged"]
    return dict(
        layer=name,
        alignment=math.nan if failed else a,
        alignment_grad=math.nan if failed else ag,
        alignment_early=er.alignment_update.mean(),
        alignment_sd=lt.alignment_update.std(),
        measured=len(lt),
        weight_norm=w,
        weight_norm0=norm0,
        collapsed=collapsed,
    )


@register
class HebbTransformer(Experiment):
    """hebb-transformer: Table 1's transformer rows, measured with HebbianProbe."""

    name = "hebb-transformer"
    summary = "Table 1 transformer rows: Hebbian alignment vs weight decay for Adam/SGD, via HebbianProbe"
    title = "Hebbian alignment of a small transformer vs weight decay"
    code_version = 2  # 2: registry rules; the non-Linear parameters train by the rule's torch form
    budget_s = 120
    spec_type = Spec
    # 5e-2 is beyond Table 1: at quick sizes it is the only γ whose decay time 1/(ηγ) fits in the run
    columns = ("rule", "gamma", "seed", "layer", "alignment", "diverged", "collapsed")
    tiny = dict(
        seeds=[0], gammas=[0.0, 5e-3], steps=12, batch_size=8, every=2, n_train=64, n_val=16
    )  # seconds: the contract test
    defaults = dict(
        seeds=list(range(10)),
        rules=["adam", "sgd"],
        gammas=[0.0, 5e-5, 5e-4, 5e-3, 5e-2],
        steps=40000,
        batch_size=256,
        lr_adam=1e-2,
        lr_sgd=0.05,
        every=20,
        late=0.5,
        n_train=20000,
        n_val=2000,
        tokens=8,
        features=4,
        d_model=32,
        heads=4,
        layers=2,
        d_ff=64,
        norm="layernorm",
        # our γ = gamma_factor × the paper's γ it stands for (claims and the paper column only; the run uses γ
        # as given). 16 reads the paper as using torch's mean-reduced MSE over the 32 outputs: its gradient is
        # 1/16 of our ½‖·‖² sum, and Adam ignores the gradient's scale, so a coupled γ of theirs acts as 16 γ
        # here (hebb-adam's reading of the MLP row, tried on the transformer)
        gamma_factor=1.0,
    )
    quick = dict(seeds=[0], steps=1500, batch_size=128, every=10)
    choices = dict(rules=any_model_rules(), norm=["layernorm", "none"])

    constraints = dict(
        every=Interval(int, 1, MAX_STEPS),
        late=Interval(float, 0, 1, closed="right"),
        tokens=Interval(int, 1, 32),
        features=Interval(int, 1, 32),
        d_model=Interval(int, 1, 4096),
        heads=Interval(int, 1, 256),
        layers=Interval(int, 1, 64),
        d_ff=Interval(int, 1, 16384),
        gamma_factor=POSITIVE,
    )
    relations = (
        Require(("d_model", "heads"), lambda d, h: d % h == 0, "d_model divisible by heads"),
        Require(("tokens", "features"), lambda t, f: t * f == 32, "tokens × features = 32 (the input dims)"),
    )

    def chunks(self, p):
        """One chunk per (rule, γ, seed) model."""
        # gamma_factor only relabels γ for the claims: leaving it out keeps every chunk of an earlier run valid
        common = shared_fields(Spec, p, "rule", "gamma", "seed")
        return [
            Spec(rule=r, gamma=g, seed=s, **common) for r in p["rules"] for g in p["gammas"] for s in p["seeds"]
        ]

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """Train one (rule, γ, seed) transformer; one row per probed layer."""
        return train_one(spec, ctx)

    def claims(self, df, p):
        """Table 1's transformer cells beside the paper's, and the rise of alignment with γ per rule."""
        return transformer_claims(df, p, self.size(p))

    def notes(self, p):
        """The model, what is measured, and the steps stationarity under decay needs."""
        lrs = {r: pick_lr(r, gradient=p["lr_sgd"], adaptive=p["lr_adam"]) for r in p["rules"]}
        need = "; ".join(f"{r}, γ={g:g}: {1 / (lrs[r] * g):.3g}" for r in p["rules"] for g in p["gammas"] if g > 0)
        return (
            f"A pre-LN transformer ({p['layers']} blocks, {p['heads']} heads, {p['d_model']}-d, norm {p['norm']}) "
            f"on the teacher regression as {p['tokens']} tokens × {p['features']} features; {p['steps']} steps, "
            f"batch {p['batch_size']}, {len(p['seeds'])} seeds. Alignment: the rule's learning signal (decoupled "
            f"decay excluded; −∂ℓ/∂W where the decay is coupled) vs the Hebbian direction, mean over the last "
            f"{p['late']:.0%} of training, every {p['every']} steps, then over seeds; 2nd layer = block 0's q, k, "
            "v (mean); — = collapsed. Stationarity under decay needs roughly steps ≳ 1/(ηγ): "
            f"{need or '(no γ > 0)'}. This run: {p['steps']} steps, so γ with 1/(ηγ) above that were not "
            "stationary. See the module docstring for the model and the placement of decay."
        )

    def figures(self, df, p):
        """Late alignment vs γ per rule: all layers, the 2nd layer, the paper's cells."""
        from plasticlab.experiments.hebbian.figures import transformer_figure

        fig = transformer_figure(_mean_over(df), _mean_over(df, SECOND), _paper(p), sorted(df.gamma.unique()))
        caption = "Late-time Hebbian alignment vs γ (mean ± s.e.m. over seeds); dotted: the paper's Table 1"
        return [Figure("alignment_vs_gamma", fig, caption)]

    def tables(self, df, p):
        """Ours vs the paper (2nd layer, all layers), per layer, and the signal vs −∂ℓ/∂W per (rule, γ)."""
        per_layer = df.groupby(["layer", "rule", "gamma"]).alignment.mean().unstack(["rule", "gamma"])
        per_layer = per_layer.loc[list(dict.fromkeys(df.layer))]
        per_layer.columns = [f"{r} γ={g:g}" for r, g in per_layer.columns]
        cols = [
            "alignment",
            "alignment_grad",
            "alignment_early",
            "train_loss_late",
            "val_loss",
            "val_loss_trivial",
        ]
        grad = df.groupby(["rule", "gamma"])[[c for c in cols if c in df]].mean().reset_index()
        grad["collapsed_layers"] = df.groupby(["rule", "gamma"]).collapsed.sum().to_numpy()
        grad["diverged_runs"] = df.groupby(["rule", "gamma"]).diverged.any().to_numpy().astype(int)
        return [
            Table(
                _vs_paper(_mean_over(df, SECOND), _paper(p)),
                "Table 1 transformer rows: ours = 2nd layer (block 0 q/k/v, mean), late-time mean over seeds; "
                "paper = Koplow, Poggio & Ziyin 2025, Table 1 (10 seeds); — = collapsed (or not in the "
                "paper's table)",
            ),
            Table(_vs_paper(_mean_over(df), _paper(p)), "Same, ours = mean over all probed layers"),
            Table(
                per_layer.reset_index(),
                "Per layer: late-time alignment of the rule's learning signal, mean over seeds",
            ),
            Table(
                grad,
                "Mean over layers and seeds: rule signal (Adam direction / −grad) vs raw −∂ℓ/∂W, first 10 % of "
                "training, late train loss, final validation loss (and that of predicting the training mean: a "
                "run near it has stopped fitting the teacher)",
            ),
        ]


def _paper(p: dict) -> pd.DataFrame:
    """The paper's cells for the run's rules and γ (columns rule, gamma, alignment; empty if none)."""
    f = float(p.get("gamma_factor", 1.0))
    rows = [(r, g, v) for r in p["rules"] for g in p["gammas"] if (v := paper_cell(r, g, f)) is not None]
    return pd.DataFrame(rows, columns=["rule", "gamma", "alignment"])


def _vs_paper(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Our alignment beside the paper's per (rule, γ), with the difference."""
    paper = paper.rename(columns={"alignment": "paper"})
    if paper.empty:  # no paper cell for this run's grid: its key columns have no dtype to join on
        paper = paper.astype({k: ours[k].dtype for k in ("rule", "gamma")})
    m = ours[["rule", "gamma", "alignment"]].merge(paper, on=["rule", "gamma"], how="outer")
    m = m.rename(columns={"alignment": "ours"})
    m["ours − paper"] = m["ours"] - m["paper"]
    return m[["rule", "gamma", "ours", "paper", "ours − paper"]]


def _mean_over(df: pd.DataFrame, layers=None) -> pd.DataFrame:
    """Per (rule, γ): mean over the chosen layers per seed, then mean and s.e.m. over seeds. Diverged runs are
    excluded (ARCHITECTURE convention); NaN ("—") if any remaining seed collapsed, since a mean over the
    survivors would hide it."""
    d = df[~df.diverged] if layers is None else df[~df.diverged & df.layer.isin(layers)]
    per_seed = d.groupby(["rule", "gamma", "seed"]).alignment.agg(
        lambda a: a.mean() if a.notna().all() else math.nan
    )
    g = per_seed.groupby(["rule", "gamma"])
    out = pd.DataFrame(
        {
            "alignment": g.agg(lambda a: a.mean() if a.notna().all() else math.nan),
            "err": g.agg(lambda a: a.std() / math.sqrt(len(a)) if len(a) > 1 else math.nan),
        }
    )
    return out.reset_index()


def common_layers(d: pd.DataFrame) -> list[str]:
    """The layers measured (not collapsed) in every (γ, seed) run that measured any layer. The rise with γ is a
    mean over these, so one layer collapsing at the largest γ leaves that γ measured on the others instead of
    blanking it (a run whose every layer collapsed is the paper's "—" and is left out of the rise)."""
    ok = d.assign(ok=d.alignment.notna()).groupby(["gamma", "seed", "layer"]).ok.all().unstack("layer")
    if ok.empty:
        return []
    keep = ok[ok.any(axis=1)].all(axis=0)
    return [name for name in dict.fromkeys(d.layer) if bool(keep.get(name, False))]


def _per_seed(df: pd.DataFrame, rule: str, gamma: float, layers=None) -> tuple[pd.Series, int, int]:
    """Per-seed mean alignment over the chosen layers (seeds with a collapsed layer left out), collapsed and
    diverged seed counts."""
    d = df[(df.rule == rule) & (df.gamma == gamma)]
    d = d if layers is None else d[d.layer.isin(layers)]
    div = int(d.groupby("seed").diverged.any().sum())
    d = d[~d.diverged]
    per = d.groupby("seed").alignment.agg(lambda a: a.mean() if a.notna().all() else math.nan)
    return per, int(per.isna().sum()), div


def _cell_claims(df: pd.DataFrame, rule: str, f: float, size: str) -> list[Claim]:
    """One claim per Table 1 cell the run measured (2nd layer); the paper's "—" as a collapse claim."""
    out = []
    for g in sorted(df[df.rule == rule].gamma.unique()):
        pv = paper_cell(rule, g, f)
        if pv is None:
            continue
        at = gamma_label(cast(float, paper_gamma(g, f, PAPER_GAMMAS)), g, f)
        per, n_col, div = _per_seed(df, rule, g, SECOND)
        if math.isnan(pv):
            frac, n = fraction(per.isna())
            title = f"transformer / {rule}, γ = {at}: weights collapse (the paper's '—')"
            out.append(Claim(title, KPZ, SRC, math.nan, frac, math.nan, n, size, AllCells("run collapsed"), div))
            continue
        m, sem, n = measure(per)
        note = f"{n_col} collapsed" if n_col else ""
        title = f"transformer / {rule}, γ = {at}: 2nd-layer Hebbian alignment"
        out.append(Claim(title, KPZ, SRC, pv, m, sem, n, size, Within(CELL_TOL), diverged=div, note=note))
    return out


def _beyond_claims(df: pd.DataFrame, rule: str, f: float, size: str) -> list[Claim]:
    """Beyond Table 1's γ (where 5/(ηγ) steps fit): the stationarity theorem predicts a Hebbian signal."""
    out = []
    for g in sorted(df[(df.rule == rule) & (df.gamma > 0)].gamma.unique()):
        if paper_cell(rule, g, f) is not None:
            continue
        per, n_col, div = _per_seed(df, rule, g, SECOND)
        m, sem, n = measure(per)
        note = f"{n_col} collapsed" if n_col else ""
        title = f"transformer / {rule}, γ = {g:g} (beyond Table 1): 2nd-layer alignment is Hebbian"
        out.append(Claim(title, KPZ, BEYOND, math.nan, m, sem, n, size, AtLeast(2 * TOL), div, note=note))
    return out


def _rise_claim(df: pd.DataFrame, rule: str, size: str) -> Claim:
    """Alignment rises with γ: largest minus smallest γ of the mean over the layers never collapsed."""
    d = df[(df.rule == rule) & ~df.diverged]
    layers = common_layers(d)
    curve = _mean_over(d, layers).dropna(subset=["alignment"]).sort_values("gamma")
    rise, sem, n = math.nan, math.nan, 0
    if len(curve) >= 2:
        rise = float(curve.alignment.iloc[-1] - curve.alignment.iloc[0])
        sem = float(np.hypot(*np.nan_to_num(curve["err"].iloc[[0, -1]].to_numpy())))
        n = int(d.seed.nunique())
    left_out = d.layer.nunique() - len(layers)
    div = int(df[df.rule == rule].groupby(["gamma", "seed"]).diverged.any().sum())
    note = f"{left_out} layers collapsed at some γ left out of the mean" if left_out else ""
    title = f"transformer / {rule}: alignment rises with weight decay (mean over layers)"
    return Claim(title, KPZ, SRC, math.nan, rise, sem, n, size, AtLeast(2 * TOL), div, note=note)


def transformer_claims(df: pd.DataFrame, p: dict, size: str) -> list[Claim]:
    """Table 1's transformer cells (2nd layer = block 0 q/k/v) and the rise with γ (mean over layers)."""
    f = float(p.get("gamma_factor", 1.0))  # a hand-built p (tests, notebooks) may leave it out
    out = []
    for rule in p["rules"]:
        out += _cell_claims(df, rule, f, size) + _beyond_claims(df, rule, f, size)
        out.append(_rise_claim(df, rule, size))
    return out
