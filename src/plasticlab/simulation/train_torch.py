"""Training one torch model (any ``nn.Module``: hebb-cnn's CNN and transformer, rule-transfer's CNN) by a
registered rule through ``RuleOptimizer``: a seeded init, the rule split into its probed step and a trailing
decoupled decay, and the step loops with their own per-seed mini-batches. There is no ensemble-batched path
here (``RuleOptimizer`` trains one model), so callers loop over seeds.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn

from plasticlab import seeding
from plasticlab.probe import HebbianProbe
from plasticlab.rules import Chain, Decay, RuleOptimizer, make_rule
from plasticlab.rules.transforms import WeightDecay


def seeded_init(model: nn.Module, seed: int, tag: tuple[str, ...]) -> nn.Module:
    """torch's default init, U(±1/√fan_in) (a position embedding 0.1·N(0, 1)), every draw from ``seed`` and a
    key of ``tag`` and the parameter's name; LayerNorm gains 1 and shifts 0 stay."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            key = seeding.key_of(*tag, name)
            if name == "pos":
                p.copy_(0.1 * seeding.normal([seed], key, p.shape, p.dtype)[0])
            elif not (name.startswith("ln") or ".ln" in name):
                owner = cast(nn.Linear, model.get_submodule(name.rsplit(".", 1)[0]))
                bound = 1.0 / math.sqrt(owner.weight[0].numel())
                p.copy_(bound * (2 * seeding.uniform([seed], key, p.shape, p.dtype)[0] - 1))
    return model


def rule_setup(
    model: nn.Module, rule: str, gamma: float, lr: float, seed: int, loss: str = "xent"
) -> tuple[RuleOptimizer, float, bool]:
    """``make_rule(rule, gamma=γ)`` on the model's weight matrices, its trailing decoupled decay split off.

    The split decay (returned as γ) is applied after each step, outside the probed ``optimizer.step()``, so
    the probe's actual update is the rule's learning signal; a coupled decay (adam_l2's L2, which Adam then
    normalises) stays in the step (returned flag), and its learning signal is the gradient the probe reads."""
    parts = list(make_rule(rule, gamma=gamma).parts)
    tail = 0.0
    while len(parts) > 1 and isinstance(parts[-1], WeightDecay):
        tail += float(cast(WeightDecay, parts.pop()).gamma)
    mats = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    params = [p for m in mats for p in m.parameters()]  # the transformer's position embedding stays at init
    opt = RuleOptimizer(model, Chain(*parts), lr=lr, params=params, loss=loss, seed=seed)
    return opt, tail, any(isinstance(p, Decay) for p in parts)


def rule_step(opt: RuleOptimizer, loss: torch.Tensor, weights: list, decay: float) -> None:
    """One rule step on ``loss``, then the split decoupled decay (``decay`` = lr·γ) outside the probed step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if decay:
        with torch.no_grad():
            torch._foreach_mul_(weights, 1.0 - decay)


def fit(
    spec: Any, model: nn.Module, opt: RuleOptimizer, tail: float, xt, yt, seed: int
) -> tuple[list[float], bool]:
    """``spec.steps`` rule steps (``spec``: steps, batch_size, lr, late) on the seed's own mini-batches, the
    split decay after each; the late losses and whether the loss stopped being finite (training stops there)."""
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    late_from, block = int(spec.steps * (1 - spec.late)), 500
    losses: list[float] = []
    for start in range(0, spec.steps, block):
        key = seeding.key_of("hebb-cnn/batch", start)  # a block of draws at a time: same as one per step
        idx = seeding.randint([seed], key, (block, spec.batch_size), len(xt))[0]
        for i in range(min(block, spec.steps - start)):
            loss = nn.functional.cross_entropy(model(xt[idx[i]]), yt[idx[i]])
            if not torch.isfinite(loss):
                return losses, True
            rule_step(opt, loss, weights, spec.lr * tail)
            if start + i >= late_from:
                losses.append(loss.item())
    return losses, False


def cnn_observables(model, spec: Any, gamma: float, seed: int, x, y) -> tuple[list[dict], bool]:
    """Train one CNN (``spec``: rule, lr, steps, checkpoints, batch_size) and record, at every checkpoint, the
    observables of conv1 (l0) and the readout (l1): alignment of the learning signal (HebbianProbe), activity
    and |W| statistics."""
    from plasticlab.metrics.observables import moments

    opt, tail, coupled = rule_setup(model, spec.rule, gamma, spec.lr, seed, loss="mse")
    every = max(1, spec.steps // spec.checkpoints)
    probe = HebbianProbe(model, layers=["conv1", "readout"], every=every).attach_optimizer(opt)
    layers = dict(l0=model.conv1, l1=model.readout)
    outs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda m, a, o, k=k: outs.__setitem__(k, o.detach())) for k, m in layers.items()
    ]
    weights = [model.conv1.weight, model.conv2.weight, model.readout.weight]
    idx = seeding.randint(
        [seed], seeding.key_of("rule-transfer/cnn-batch"), (spec.steps, spec.batch_size), len(x)
    )[0]
    rows, diverged = [], False
    try:
        for step in range(spec.steps):
            loss = 0.5 * (model(x[idx[step]]) - y[idx[step]]).pow(2).sum(1).mean()
            if not torch.isfinite(loss):
                diverged = True
                break
            if step % every == 0:
                row: dict = dict(step=step)
                for k, m in layers.items():
                    post = outs[k] - (m.bias.view(1, -1, 1, 1) if k == "l0" else m.bias)
                    row |= {f"{n}_{k}": float(v) for n, v in moments(post[None].detach(), "act").items()}
                    w = m.weight.detach().reshape(len(m.weight), -1).abs()[None]
                    row |= {f"{n}_{k}": float(v) for n, v in moments(w, "w").items()}
                rows.append(row)
            rule_step(opt, loss, weights, spec.lr * tail)
    finally:
        probe.remove()
        opt.remove_hooks()
        for h in hooks:
            h.remove()
    al = probe.to_frame()
    col = "alignment_signal" if coupled else "alignment_update"
    for row in rows:
        for k, name in (("l0", "conv1"), ("l1", "readout")):
            hit = al[(al.step == row["step"]) & (al.layer == name)][col]
            row[f"align_{k}"] = float(hit.iloc[0]) if len(hit) else math.nan
            row[f"align_noise_{k}"] = math.nan
    return rows, diverged
