"""Ensemble trainer for MLPs under any rule chain: one batched tensor program, no loop over runs.

Every step: member-wise mini-batch -> forward pass (weights perturbed if the rule asks) -> learning signal
and update from the rule -> ``W <- W + lr * update``. At checkpoints it records per-layer Hebbian alignment
of the learning signal (SPEC A.2), validation loss and, optionally, per-neuron alignment. Over the late
window ``[average_from, steps)`` it averages alignment and accumulates the time-mean signal G, Hebbian
matrix H and E||h_b||^2 that the stationarity identity (SPEC A.3) needs.

A member whose weights stop being finite is marked diverged at that step and frozen; the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from plasticlab.errors import PlasticlabError, check_positive
from plasticlab.metrics.hebbian import cosine, hebbian_direction
from plasticlab.networks.mlp import MLP
from plasticlab.rules.base import Chain, Context
from plasticlab.tasks.base import Dataset


@dataclass
class TrainResult:
    """What ``train_mlp`` recorded: final network, checkpoints and late-window averages."""

    net: MLP
    steps_recorded: list[int]
    alignment: torch.Tensor  # (T, L, E) per checkpoint
    val_loss: torch.Tensor  # (T, E)
    train_loss: torch.Tensor  # (T, E) loss of the checkpoint's mini-batch
    alignment_late: torch.Tensor  # (L, E) mean over checkpoints in the late window
    val_loss_final: torch.Tensor  # (E,)
    diverged: torch.Tensor  # (E,) bool
    diverged_at: torch.Tensor  # (E,) float: step, NaN if never
    collapsed: torch.Tensor  # (L, E) bool: late signal or Hebbian matrix ~ 0 (alignment undefined)
    G_mean: list[torch.Tensor] = field(default_factory=list)  # per layer (E, out, in), late window
    H_mean: list[torch.Tensor] = field(default_factory=list)
    post_sq_mean: list[torch.Tensor] = field(default_factory=list)  # per layer (E,), E||h_b||^2
    W_mean: list[torch.Tensor] = field(default_factory=list)
    neuron_alignment: list[torch.Tensor] | None = None  # per layer (T, E, out)


def loss_value(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-member mean loss (E,): 1/2 ||out - y||^2 per sample, or cross-entropy."""
    if loss == "mse":
        return 0.5 * ((out - y) ** 2).sum(-1).mean(-1)
    return -(torch.log_softmax(out, -1) * y).sum(-1).mean(-1)


def _finite(net: MLP) -> torch.Tensor:
    ok = torch.ones(net.ensemble_size, dtype=torch.bool)
    for W, b in net.params():
        ok &= torch.isfinite(W).flatten(1).all(1)
        if b is not None:
            ok &= torch.isfinite(b).all(1)
    return ok


def train_mlp(
    net: MLP,
    rule: Chain,
    data: Dataset,
    seeds,
    *,
    steps: int,
    lr: float,
    batch_size: int = 256,
    record_every: int = 100,
    average_from: int | None = None,
    neurons: bool = False,
    val_batch: int | None = None,
    progress=None,
    late_every: int = 1,
    record_at=None,
    observe=None,
) -> TrainResult:
    """Train E members together. ``seeds`` (E,) drive each member's batches and noise.

    ``late_every`` = k samples the late window (alignment mean, G/H/W/E||h_b||^2 sums) every k-th step
    only: those extra products cost about as much as the step itself, and successive steps are strongly
    correlated, so k of a few loses little. Checkpoints are always recorded. ``record_at`` adds extra
    checkpoint steps (e.g. log-spaced, to resolve early transients). ``observe(step, ctx, out, state, alive)``,
    if given, is called at every checkpoint before the update is applied, with this step's context, the
    rule's output, the rule state the step started from (so an observer may re-run ``rule.step`` on a
    perturbed context without disturbing training) and the (E,) mask of members still alive."""
    seeds = torch.as_tensor(seeds, dtype=torch.int64)
    E = net.ensemble_size
    if len(seeds) != E:
        raise PlasticlabError(f"{len(seeds)} seeds for an ensemble of {E} networks")
    check_positive("steps", steps)
    check_positive("lr", lr)
    check_positive("batch_size", batch_size)
    check_positive("late_every", late_every)
    average_from = steps // 2 if average_from is None else average_from
    extra = set() if record_at is None else {int(s) for s in record_at}
    L = net.depth
    state = rule.init(net, seeds)
    alive = torch.ones(E, dtype=torch.bool)
    diverged_at = torch.full((E,), float("nan"))
    xv, yv = data.x_val, data.y_val
    if val_batch is not None:
        xv, yv = xv[:, :val_batch], yv[:, :val_batch]

    rec_steps, aligns, vals, trains = [], [], [], []
    neuron_rec: list[list[torch.Tensor]] = [[] for _ in range(L)]
    dt = net.weights[0].dtype
    G_sum = [torch.zeros_like(W) for W in net.weights]
    H_sum = [torch.zeros_like(W) for W in net.weights]
    W_sum = [torch.zeros_like(W) for W in net.weights]
    P_sum = [torch.zeros(E, dtype=dt) for _ in net.weights]
    A_sum, A_n, n_avg = torch.zeros(L, E, dtype=dt), torch.zeros(L, E, dtype=dt), 0

    for step in range(steps):
        x, y = data.batch(seeds, step, batch_size)
        weights = rule.perturb(net.weights, state, seeds, step)
        trace = net.forward(x, weights)
        ctx = Context(net=net, trace=trace, x=x, y=y, loss=data.loss, seeds=seeds, step=step)
        out = rule.step(state, ctx)
        checkpoint = step % record_every == 0 or step == steps - 1 or step in extra
        if checkpoint and observe is not None:
            observe(step, ctx, out, state, alive)
        state = out.state
        late = step >= average_from and (step - average_from) % late_every == 0
        if checkpoint or late:
            # H once per layer, shared by the alignment, the late sums and the per-neuron cosines
            Hs = [hebbian_direction(h_a, h_b) for h_a, h_b in zip(trace.pre, trace.post)]
            al = torch.stack([cosine(g, H) for (g, _), H in zip(out.signal, Hs)])  # (L, E)
            al = torch.where(alive[None], al, torch.full_like(al, float("nan")))
        if late:
            n_avg += 1
            ok = ~torch.isnan(al)
            A_sum += torch.where(ok, al, torch.zeros_like(al))
            A_n += ok
            for l, ((g, _), H, h_b) in enumerate(zip(out.signal, Hs, trace.post)):
                G_sum[l] += g
                H_sum[l] += H
                P_sum[l] += (h_b**2).sum(-1).mean(-1)
                W_sum[l] += net.weights[l]
        if checkpoint:
            rec_steps.append(step)
            aligns.append(al)
            trains.append(loss_value(trace.out, y, data.loss))
            vals.append(loss_value(net.forward(xv).out, yv, data.loss))
            if neurons:
                for l, ((g, _), H) in enumerate(zip(out.signal, Hs)):
                    neuron_rec[l].append(cosine(g, H, dims=(-1,)))
        new_params = []
        for (W, b), (uW, ub) in zip(net.params(), out.updates):
            W2 = torch.where(alive[:, None, None], W + lr * uW, W)
            b2 = b if b is None or ub is None else torch.where(alive[:, None], b + lr * ub, b)
            new_params.append((W2, b2))
        net = net.with_params(new_params)
        if checkpoint:
            ok = _finite(net)
            newly = alive & ~ok
            diverged_at[newly] = float(step)
            alive &= ok
        if progress is not None:
            progress(step + 1, steps)

    val_final = loss_value(net.forward(xv).out, yv, data.loss)
    val_final = torch.where(alive, val_final, torch.full_like(val_final, float("nan")))
    n = max(n_avg, 1)
    G_mean = [g / n for g in G_sum]
    H_mean = [h / n for h in H_sum]
    late_align = A_sum / A_n.clamp_min(1)
    late_align = torch.where(A_n > 0, late_align, torch.full_like(late_align, float("nan")))
    collapsed = torch.stack(
        [(g.flatten(1).norm(dim=1) < 1e-12) | (h.flatten(1).norm(dim=1) < 1e-12) for g, h in zip(G_mean, H_mean)]
    )
    return TrainResult(
        net=net,
        steps_recorded=rec_steps,
        alignment=torch.stack(aligns),
        val_loss=torch.stack(vals),
        train_loss=torch.stack(trains),
        alignment_late=late_align,
        val_loss_final=val_final,
        diverged=~alive,
        diverged_at=diverged_at,
        collapsed=collapsed & alive[None],
        G_mean=G_mean,
        H_mean=H_mean,
        post_sq_mean=[p / n for p in P_sum],
        W_mean=[w / n for w in W_sum],
        neuron_alignment=[torch.stack(r) for r in neuron_rec] if neurons else None,
    )
