"""Ensemble trainer for MLPs under any rule chain: one batched tensor program, no loop over runs.

Every step: member-wise mini-batch -> forward pass (weights perturbed if the rule asks) -> learning signal
and update from the rule -> ``W <- W + lr * update``. At checkpoints it records per-layer Hebbian alignment
of the learning signal (Koplow et al. 2025), validation loss and, optionally, per-neuron alignment. Over the late
window ``[average_from, steps)`` it averages alignment and accumulates the time-mean signal G, Hebbian
matrix H and E||h_b||^2 that the stationarity identity (Koplow et al. 2025) needs.

A member whose weights stop being finite is marked diverged at that step and frozen; the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from plasticlab import cancel, compiling, losses
from plasticlab.compiling import Compiled
from plasticlab.errors import PlasticlabError, check_positive
from plasticlab.metrics.hebbian import cosine, hebbian_direction
from plasticlab.networks.mlp import MLP, Trace
from plasticlab.rules.base import Chain, Context, StepOutput, Transform, chain
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
    """Per-member mean loss (E,) over the batch of ``plasticlab.losses.per_sample``."""
    return losses.per_sample(out, y, loss).mean(-1)


def as_chain(rule: Transform) -> Chain:
    """A bare signal (``dfa()``) is the one-piece chain ``chain(dfa())``; anything else must be a rule."""
    if isinstance(rule, Chain):
        return rule
    if isinstance(rule, Transform):
        return chain(rule)
    raise PlasticlabError(
        f"rule must be a plasticlab rule such as dfa() or chain(sgd(), weight_decay(1e-3)), "
        f"got {type(rule).__name__}"
    )


def check_shapes(net: MLP, data: Dataset) -> None:
    """One-line errors instead of a matmul error deep inside the first step."""
    widths = net.widths
    if data.d_in != widths[0]:
        raise PlasticlabError(
            f"data has d_in={data.d_in} features but the network's input width is {widths[0]} (widths {widths})"
        )
    if data.d_out != widths[-1]:
        raise PlasticlabError(
            f"data has d_out={data.d_out} targets but the network's output width is {widths[-1]} (widths {widths})"
        )
    for what, t in (("x_train", data.x_train), ("x_val", data.x_val)):
        if t.ndim != 3:  # (E or shared members, n, d)
            raise PlasticlabError(f"data.{what} must be 3-d (members, n, d), got shape {tuple(t.shape)}")


def _finite(net: MLP) -> torch.Tensor:
    ok = torch.ones(net.ensemble_size, dtype=torch.bool, device=net.weights[0].device)
    for W, b in net.params():
        ok &= torch.isfinite(W).flatten(1).all(1)
        if b is not None:
            ok &= torch.isfinite(b).all(1)
    return ok


@dataclass(frozen=True)
class TrainState:
    """Everything that changes from one step to the next; a step returns a new one.

    ``alive`` (E,) is False for members whose weights went non-finite (they are frozen from then on);
    ``diverged_at`` (E,) holds that step, NaN while alive.
    """

    net: MLP
    rule_state: Any
    alive: torch.Tensor
    diverged_at: torch.Tensor
    step: int = 0


@dataclass(frozen=True)
class StepInfo:
    """What one step saw, for observers: its batch, forward trace and the rule's output (pre-update)."""

    step: int
    x: torch.Tensor
    y: torch.Tensor
    trace: Trace
    out: StepOutput
    ctx: Context


def init_fn(net: MLP, rule: Chain, seeds: torch.Tensor) -> TrainState:
    """The state at step 0: every member alive, the rule's state initialised from the members' seeds."""
    dev = net.weights[0].device
    E = net.ensemble_size
    return TrainState(
        net=net,
        rule_state=rule.init(net, seeds),
        alive=torch.ones(E, dtype=torch.bool, device=dev),
        diverged_at=torch.full((E,), float("nan"), device=dev),
    )


def step_fn(
    state: TrainState, rule: Chain, data: Dataset, seeds: torch.Tensor, *, lr: float, batch_size: int, check: bool
) -> tuple[TrainState, StepInfo]:
    """One step for every member: batch -> (perturbed) forward -> rule -> ``W <- W + lr * update``.

    Dead members keep their weights. ``check`` tests the new weights for finiteness (done at checkpoints
    only: the test costs about as much as a small step). The input state is not modified.
    """
    net, alive, step = state.net, state.alive, state.step
    x, y = data.batch(seeds, step, batch_size)
    weights = rule.perturb(net.weights, state.rule_state, seeds, step)
    trace = net.forward(x, weights)
    ctx = Context(net=net, trace=trace, x=x, y=y, loss=data.loss, seeds=seeds, step=step)
    out = rule.step(state.rule_state, ctx)
    new_params = []
    for (W, b), (uW, ub) in zip(net.params(), out.updates):
        W2 = torch.where(alive[:, None, None], W + lr * uW, W)
        b2 = b if b is None or ub is None else torch.where(alive[:, None], b + lr * ub, b)
        new_params.append((W2, b2))
    new_net = net.with_params(new_params)
    diverged_at = state.diverged_at
    if check:
        ok = _finite(new_net)
        diverged_at = torch.where(alive & ~ok, torch.full_like(diverged_at, float(step)), diverged_at)
        alive = alive & ok
    new = TrainState(new_net, out.state, alive, diverged_at, step + 1)
    return new, StepInfo(step, x, y, trace, out, ctx)


# Compiled whole, with graph breaks where a rule draws random numbers (plasticlab.seeding stays eager) and
# around Python-level bookkeeping; ``dynamic=None`` lets the step counter become symbolic instead of one
# recompile per step.
_compiled_step = Compiled(step_fn, "the MLP trainer step", dynamic=None)


def _alignment(info: StepInfo, alive: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-layer Hebbian matrices H and the (L, E) alignment cos(signal, H), NaN for dead members."""
    # H once per layer, shared by the alignment, the late sums and the per-neuron cosines
    Hs = [hebbian_direction(h_a, h_b) for h_a, h_b in zip(info.trace.pre, info.trace.post)]
    al = torch.stack([cosine(g, H) for (g, _), H in zip(info.out.signal, Hs)])
    return Hs, torch.where(alive[None], al, torch.full_like(al, float("nan")))


class LateWindow:
    """Observer: time means over the late window of the alignment, the signal G, the Hebbian matrix H,
    the weights W and E||h_b||^2 (what the stationarity identity, Koplow et al. 2025, needs)."""

    def __init__(self, net: MLP):
        dt, dev, E = net.weights[0].dtype, net.weights[0].device, net.ensemble_size
        self.G = [torch.zeros_like(W) for W in net.weights]
        self.H = [torch.zeros_like(W) for W in net.weights]
        self.W = [torch.zeros_like(W) for W in net.weights]
        self.P = [torch.zeros(E, dtype=dt, device=dev) for _ in net.weights]
        self.A = torch.zeros(net.depth, E, dtype=dt, device=dev)
        self.A_n = torch.zeros(net.depth, E, dtype=dt, device=dev)
        self.n = 0

    def observe(self, state: TrainState, info: StepInfo, Hs: list[torch.Tensor], al: torch.Tensor) -> None:
        """Add one late step (``state`` is the pre-update state the step started from)."""
        self.n += 1
        ok = ~torch.isnan(al)
        self.A += torch.where(ok, al, torch.zeros_like(al))
        self.A_n += ok
        for l, ((g, _), H, h_b) in enumerate(zip(info.out.signal, Hs, info.trace.post)):
            self.G[l] += g
            self.H[l] += H
            self.P[l] += (h_b**2).sum(-1).mean(-1)
            self.W[l] += state.net.weights[l]

    def means(self, alive: torch.Tensor) -> dict[str, Any]:
        """The window's means as TrainResult fields (alignment NaN where no step counted)."""
        n = max(self.n, 1)
        G = [g / n for g in self.G]
        H = [h / n for h in self.H]
        late = self.A / self.A_n.clamp_min(1)
        late = torch.where(self.A_n > 0, late, torch.full_like(late, float("nan")))
        collapsed = torch.stack(
            [(g.flatten(1).norm(dim=1) < 1e-12) | (h.flatten(1).norm(dim=1) < 1e-12) for g, h in zip(G, H)]
        )
        return dict(
            alignment_late=late,
            collapsed=collapsed & alive[None],
            G_mean=G,
            H_mean=H,
            post_sq_mean=[p / n for p in self.P],
            W_mean=[w / n for w in self.W],
        )


class Checkpoints:
    """Observer: at each checkpoint, the alignment, the batch and validation losses and, optionally, the
    per-neuron alignment."""

    def __init__(self, data: Dataset, depth: int, neurons: bool, val_batch: int | None):
        self.xv, self.yv, self.loss = data.x_val, data.y_val, data.loss
        if val_batch is not None:
            self.xv, self.yv = self.xv[:, :val_batch], self.yv[:, :val_batch]
        self.neurons = neurons
        self.steps: list[int] = []
        self.align: list[torch.Tensor] = []
        self.val: list[torch.Tensor] = []
        self.train: list[torch.Tensor] = []
        self.per_neuron: list[list[torch.Tensor]] = [[] for _ in range(depth)]

    def observe(self, state: TrainState, info: StepInfo, Hs: list[torch.Tensor], al: torch.Tensor) -> None:
        """Record one checkpoint (``state`` is the pre-update state the step started from)."""
        self.steps.append(info.step)
        self.align.append(al)
        self.train.append(loss_value(info.trace.out, info.y, self.loss))
        self.val.append(self.val_loss(state.net))
        if self.neurons:
            for l, ((g, _), H) in enumerate(zip(info.out.signal, Hs)):
                self.per_neuron[l].append(cosine(g, H, dims=(-1,)))

    def val_loss(self, net: MLP) -> torch.Tensor:
        """(E,) validation loss of ``net``."""
        return loss_value(net.forward(self.xv).out, self.yv, self.loss)


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
    compile: bool | None = None,
) -> TrainResult:
    """Train E members together. ``seeds`` (E,) drive each member's batches and noise.

    ``late_every`` = k samples the late window (alignment mean, G/H/W/E||h_b||^2 sums) every k-th step
    only: those extra products cost about as much as the step itself, and successive steps are strongly
    correlated, so k of a few loses little. Checkpoints are always recorded. ``record_at`` adds extra
    checkpoint steps (e.g. log-spaced, to resolve early transients). ``observe(step, ctx, out, state, alive)``,
    if given, is called at every checkpoint before the update is applied, with this step's context, the
    rule's output, the rule state the step started from (so an observer may re-run ``rule.step`` on a
    perturbed context without disturbing training) and the (E,) mask of members still alive.
    ``compile``: run the step through torch.compile (default: ``plasticlab.compiling.enabled()``); the
    checkpoint and late-window measurements stay eager."""
    rule = as_chain(rule)
    seeds = _checked_seeds(net, seeds, steps=steps, lr=lr, batch_size=batch_size, late_every=late_every)
    check_shapes(net, data)
    average_from = steps // 2 if average_from is None else average_from
    extra = set() if record_at is None else {int(s) for s in record_at}
    step_of = _compiled_step if (compiling.enabled() if compile is None else compile) else step_fn
    state = init_fn(net, rule, seeds)
    window, record = LateWindow(net), Checkpoints(data, net.depth, neurons, val_batch)
    for step in range(steps):
        cancel.check()
        checkpoint = step % record_every == 0 or step == steps - 1 or step in extra
        late = step >= average_from and (step - average_from) % late_every == 0
        new, info = step_of(state, rule, data, seeds, lr=lr, batch_size=batch_size, check=checkpoint)
        if checkpoint and observe is not None:
            observe(step, info.ctx, info.out, state.rule_state, state.alive)
        if checkpoint or late:
            Hs, al = _alignment(info, state.alive)
            if late:
                window.observe(state, info, Hs, al)
            if checkpoint:
                record.observe(state, info, Hs, al)
        state = new
        if progress is not None:
            progress(step + 1, steps)
    return _result(state, record, window)


def _checked_seeds(net: MLP, seeds, **positive: float) -> torch.Tensor:
    seeds = torch.as_tensor(seeds, dtype=torch.int64)
    if len(seeds) != net.ensemble_size:
        raise PlasticlabError(f"{len(seeds)} seeds for an ensemble of {net.ensemble_size} networks")
    for name, v in positive.items():
        check_positive(name, v)
    return seeds


def _result(state: TrainState, record: Checkpoints, window: LateWindow) -> TrainResult:
    alive = state.alive
    val_final = record.val_loss(state.net)
    val_final = torch.where(alive, val_final, torch.full_like(val_final, float("nan")))
    return TrainResult(
        net=state.net,
        steps_recorded=record.steps,
        alignment=torch.stack(record.align),
        val_loss=torch.stack(record.val),
        train_loss=torch.stack(record.train),
        val_loss_final=val_final,
        diverged=~alive,
        diverged_at=state.diverged_at,
        neuron_alignment=[torch.stack(r) for r in record.per_neuron] if record.neurons else None,
        **window.means(alive),
    )
