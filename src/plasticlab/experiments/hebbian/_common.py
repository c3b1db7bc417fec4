"""Shared pieces of the Part-A (emergent Hebbian) experiments.

Conditions that only change numbers, not shapes (decay γ, noise σ, seeds), are folded into ONE ensemble:
every member carries its own γ and σ, so a whole γ × σ × seed grid advances as one batched program.
``make_rule``'s γ and σ take one value per member (same random keys as a float σ, so a member equals
its scalar-σ run).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any

import pandas as pd
import torch

from plasticlab.rules import Chain, make_rule, rule_names
from plasticlab.rules.registry import get as get_rule
from plasticlab.rules.registry import parse_rule
from plasticlab.study.context import RunContext
from plasticlab.tasks.shared import share

RULES = rule_names()  # live: includes rules registered after import

# Modelling conventions the paper leaves unstated (each changes its numbers); the first choice of each is the
# one every saved run used. The experiment word -> the engine's word, in this one place:
LOSS_KINDS = {"half_sum": "mse", "mean": "mse_mean"}  # plasticlab.losses kinds
LAYER_INITS = {"plain": "normal", "torch": "torch"}  # networks.mlp.init_mlp(init=...)
NOISE_AT = ["weights", "signal"]  # rules.make_rule(noise_at=...)
CONVENTIONS: dict[str, list[str]] = dict(loss=list(LOSS_KINDS), layers=list(LAYER_INITS), noise_at=NOISE_AT)
_CONVENTION_TEXT = {
    ("loss", "half_sum"): "loss ½‖ŷ − y‖² summed over outputs, batch mean",
    ("loss", "mean"): "loss mean over outputs and batch of (ŷ − y)² (torch's nn.MSELoss)",
    ("layers", "plain"): "layers without biases, W ~ N(0, 1/fan_in)",
    ("layers", "torch"): (
        "layers as torch's nn.Linear (W and b ~ U(±1/√fan_in)) for student, teacher and random_nn target, "
        "weight decay on biases too; forward-pass noise and alignment on W only"
    ),
    ("noise_at", "weights"): "noise σ on the forward pass's weights",
    ("noise_at", "signal"): "noise σ added to the learning signal every step (injected gradient noise)",
}


def convention_params(*keys: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(defaults, choices) of the convention params ``keys`` (from "loss", "layers", "noise_at"), for an
    experiment's ``defaults`` and ``choices``."""
    return {k: CONVENTIONS[k][0] for k in keys}, {k: CONVENTIONS[k] for k in keys}


def convention_note(p: dict[str, Any], extra: str = "", text: dict[tuple[str, str], str] | None = None) -> str:
    """One sentence naming the conventions in force (those of ``CONVENTIONS`` found in ``p``), then ``extra``;
    ``text`` replaces the wording of a (key, value) where an experiment's setting differs (e.g. a classifier
    whose plain layers have zero biases)."""
    wording = {**_CONVENTION_TEXT, **(text or {})}
    parts = [wording[(k, p[k])] for k in CONVENTIONS if k in p]
    return f"Conventions: {'; '.join(parts)}{extra}." if parts else ""


def with_loss(data, loss: str):
    """``data`` with the squared-error convention ``loss`` (an experiment word); cross-entropy data (already a
    batch mean) stay as they are."""
    import dataclasses

    if data.loss == "xent":
        return data
    return dataclasses.replace(data, loss=LOSS_KINDS[loss])


ACTIVATIONS = ["linear", "relu", "tanh", "sigmoid"]
# A layer whose ‖W‖ fell below this fraction of its initial norm has collapsed (the papers' "—").
COLLAPSE = 1e-3


def paper_gamma(gamma: float, factor: float, paper_gammas: Iterable[float]) -> float | None:
    """The paper's γ (one of ``paper_gammas``) that our ``gamma`` stands for when ours = ``factor`` × the
    paper's (``gamma_factor``: 16 reads the paper as using torch's mean-reduced loss); None if none."""
    hits = [g for g in paper_gammas if math.isclose(g * factor, gamma, rel_tol=1e-6, abs_tol=0.0)]
    return hits[0] if hits else None


def gamma_label(paper_g: float, gamma: float, factor: float) -> str:
    """The paper's γ for a claim, with ours beside it where the two differ (never at γ = 0)."""
    return f"{paper_g:g}" if factor == 1 or gamma == 0 else f"{paper_g:g} (ours {gamma:g})"


def members(seeds, **axes) -> pd.DataFrame:
    """One row per ensemble member: the product of the condition axes and seeds (seed varies fastest)."""
    keys = list(axes)
    rows = [dict(zip(keys, combo), seed=s) for combo in itertools.product(*axes.values()) for s in seeds]
    df = pd.DataFrame(rows, columns=[*keys, "seed"])
    uniq = list(dict.fromkeys(seeds))
    df["seed_index"] = [uniq.index(s) for s in df.seed]
    return df


def unique_seeds(seeds) -> list[int]:
    return list(dict.fromkeys(int(s) for s in seeds))


def summarise(df: pd.DataFrame, by: list[str], value: str = "alignment") -> pd.DataFrame:
    """Mean ± sem over seeds of runs that neither diverged nor collapsed; ``n`` counts them."""
    ok = df[~df.diverged & ~df.collapsed] if "collapsed" in df else df[~df.diverged]
    g = ok.groupby(by, sort=True)[value]
    out = g.agg(["mean", "sem", "count"]).rename(columns={"count": "n"}).reset_index()
    full = df[by].drop_duplicates().sort_values(by)
    return full.merge(out, on=by, how="left").fillna({"n": 0})


def train_regression(
    rule: str | Chain,
    gammas,
    seeds,
    *,
    widths,
    activation: str,
    steps: int,
    lr: float,
    batch_size: int = 256,
    n_train: int = 20000,
    n_val: int = 2000,
    average_from=None,
    record_every=None,
    late_every: int = 1,
    neurons: bool = False,
    dtype=torch.float64,
    record_at=None,
    measure: str = "signal",
    task: dict | None = None,
    loss: str = "half_sum",
    layers: str = "plain",
    ctx: RunContext | None = None,
):
    """The standard regression (Koplow et al. 2025: tanh-teacher with 32 hidden units, Gaussian inputs) trained by
    one rule for every γ × seed member at once. Returns the member table and the TrainResult.
    ``task`` passes extra teacher_regression options (label_noise, teacher_hidden, …). ``rule`` is a rule
    name, or a ready Chain for the members (seeds vary fastest within each γ, as ``members`` orders them).
    ``loss`` / ``layers``: the conventions (``CONVENTIONS``; a ready Chain must carry its own decay-on-biases).
    ``ctx``: where (device) and how (compile) to run; None: the library defaults."""
    from plasticlab.networks.mlp import init_mlp
    from plasticlab.simulation.train_mlp import train_mlp
    from plasticlab.tasks import teacher_regression

    m = members(seeds, gamma=gammas)
    device = None if ctx is None else ctx.device
    init = LAYER_INITS[layers]
    data = teacher_regression(
        unique_seeds(seeds), d_in=widths[0], d_out=widths[-1], n_train=n_train, n_val=n_val, dtype=dtype,
        device=device, init=init, **(task or {}),
    )  # fmt: skip
    seeds_e = m.seed.tolist()
    net = init_mlp(seeds_e, list(widths), activation, init=init, dtype=dtype, device=device)
    res = train_mlp(
        net,
        rule if isinstance(rule, Chain) else _member_rule(rule, m.gamma.values, measure, layers),
        share(with_loss(data, loss), m.seed_index.values),
        seeds_e,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        record_every=record_every or max(steps // 20, 1),
        average_from=steps // 2 if average_from is None else average_from,
        late_every=late_every,
        neurons=neurons,
        record_at=record_at,
        compile=None if ctx is None else ctx.compile,
    )
    return m.drop(columns="seed_index"), res


def _member_rule(rule: str, gammas, measure: str, layers: str = "plain") -> Chain:
    """``rule`` with one γ per member; ``measure`` goes only to a rule that declares it (adam can measure
    its raw gradient instead of its signal): read from the registry, not from the rule's name. With
    ``layers="torch"`` the decay acts on biases too (torch's ``weight_decay``)."""
    takes = "measure" in get_rule(parse_rule(rule)[0]).hyperparameters()
    hyper: dict[str, Any] = {"measure": measure} if takes else {}
    return make_rule(rule, gamma=gammas, decay_biases=layers == "torch", **hyper)


def dtype_of(name: str):
    from plasticlab.errors import check_choice

    return {"float64": torch.float64, "float32": torch.float32}[
        check_choice("dtype", name, ["float64", "float32"])
    ]


def train_sgd_grid(
    m: pd.DataFrame,
    data,
    widths: list[int],
    activation: str,
    sigma,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    record_every: int,
    dtype=torch.float64,
    loss: str = "half_sum",
    layers: str = "plain",
    noise_at: str = "weights",
    ctx: RunContext | None = None,
):
    """SGD with one decay γ (``m.gamma``) and noise σ (``sigma``, one per member) per member of a
    σ × γ × seed table ``m``, on ``data`` (one copy per unique seed, shared out to the members): the
    hebb-phase / hebb-valopt run. Alignment is averaged over the second half of ``steps``. ``loss``,
    ``layers`` and ``noise_at`` are the conventions (``CONVENTIONS``); ``data`` must already come from a
    teacher of the same ``layers``."""
    from plasticlab.networks.mlp import init_mlp
    from plasticlab.simulation.train_mlp import train_mlp

    data = share(with_loss(data, loss), m.seed_index.values)
    seeds = m.seed.tolist()
    dev = None if ctx is None else ctx.device
    net = init_mlp(seeds, widths, activation, init=LAYER_INITS[layers], dtype=dtype, device=dev)
    rule = make_rule("sgd", gamma=m.gamma.values, sigma=sigma, noise_at=noise_at, decay_biases=layers == "torch")
    return train_mlp(
        net,
        rule,
        data,
        seeds,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        record_every=record_every,
        average_from=steps // 2,
        late_every=2,
        compile=None if ctx is None else ctx.compile,
    )
