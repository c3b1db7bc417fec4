"""Rules as small composable transformations (optax-like), pure functions over explicit state.

A rule is ``chain(signal, *transforms)``: the first piece makes the **learning signal** g (the descent
direction: for SGD g = -dl/dW), later pieces precondition it (adam), add noise, or subtract weight decay.
The update a trainer applies is ``W <- W + lr * updates``, i.e. ``dW = lr (g - gamma W)`` (SPEC A.2).

``Chain.update`` also returns the signal: the updates *before* the first decay transform, which is what
Hebbian alignment is measured on (decay never inside the signal).

Updates and params are lists over layers of ``(dW, db)`` pairs; ``db`` is None for bias-free layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from plasticlab import seeding
from plasticlab.networks.activations import activation as get_activation
from plasticlab.networks.mlp import MLP, Trace

Updates = list[tuple[torch.Tensor, torch.Tensor | None]]


def tree_map(fn: Callable, *trees: Updates) -> Updates:
    """Apply fn to matching tensors of (W, b) lists, skipping missing biases."""
    out = []
    for pairs in zip(*trees):
        w = fn(*(p[0] for p in pairs))
        b = None if pairs[0][1] is None else fn(*(p[1] for p in pairs))
        out.append((w, b))
    return out


@dataclass
class Context:
    """What a rule may look at in one step: the network, this step's forward pass and the targets."""

    net: MLP  # the parameters being learned (unperturbed)
    trace: Trace  # forward pass of this step (with perturbed weights if parameter noise is on)
    x: torch.Tensor  # (E, B, in)
    y: torch.Tensor  # (E, B, out) regression targets or one-hot labels
    loss: str  # "mse": l = 1/2 ||out - y||^2 per sample; "xent": softmax cross-entropy
    seeds: torch.Tensor  # (E,)
    step: int
    cache: dict[str, Any] = field(default_factory=dict)

    def output_delta(self, out: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """dl/d(output pre-activation) per sample, (E, B, d_out)."""
        out = self.trace.out if out is None else out
        y = self.y if y is None else y
        if self.loss == "mse":
            return out - y
        return torch.softmax(out, dim=-1) - y

    def backprop(self, delta_out: torch.Tensor, feedback=None) -> list[torch.Tensor]:
        """Per-layer deltas dl/dh_b (E, B, out_l). ``feedback`` (list of (E, out_l, d_out)) replaces the
        chained transposed weights by direct random projections of the output delta (DFA)."""
        _, dphi = get_activation(self.net.activation)
        L = len(self.trace.weights)
        deltas = [None] * L
        deltas[-1] = delta_out
        for l in range(L - 2, -1, -1):
            if feedback is None:
                back = torch.bmm(deltas[l + 1], self.trace.weights[l + 1])
            else:
                back = torch.bmm(delta_out, feedback[l].transpose(1, 2))
            deltas[l] = back * dphi(self.trace.z[l])
        return deltas

    def descent(self, deltas: list[torch.Tensor]) -> Updates:
        """g = -(1/B) sum_i delta_i h_a,i^T per layer (and -mean delta for biases)."""
        out = []
        for d, h, b in zip(deltas, self.trace.pre, self.net.biases):
            gW = -torch.bmm(d.transpose(1, 2), h) / h.shape[1]
            out.append((gW, None if b is None else -d.mean(dim=1)))
        return out

    def key(self, *parts) -> int:
        return seeding.key_of(*parts, self.step)


class Transform:
    """One piece of a rule. ``kind`` is "signal" (makes updates from the context, ignoring its input),
    "transform" (maps updates), or "decay" (subtracts weight decay; marks the end of the learning signal)."""

    kind = "transform"
    name = "transform"

    def init(self, net: MLP, seeds: torch.Tensor) -> Any:
        return None

    def perturb(self, weights: list[torch.Tensor], state: Any, seeds: torch.Tensor, step: int):
        """Forward-pass weights for this step (parameter noise overrides this)."""
        return weights

    def update(self, updates: Updates | None, state: Any, ctx: Context) -> tuple[Updates, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


@dataclass
class StepOutput:
    updates: Updates  # what the trainer applies (times lr)
    signal: Updates  # the learning signal: updates before decay
    state: tuple


class Chain(Transform):
    def __init__(self, *parts: Transform):
        from plasticlab.errors import PlasticlabError

        if not parts:
            raise PlasticlabError("chain() needs at least one piece, e.g. chain(sgd(), weight_decay(1e-4))")
        if parts[0].kind != "signal":
            from plasticlab.rules import SIGNALS  # late: the registry imports this module

            raise PlasticlabError(
                f"a rule must start with a learning signal, got {parts[0]!r}; signals: {', '.join(SIGNALS)}"
            )
        for p in parts[1:]:
            if p.kind == "signal":
                raise PlasticlabError(f"only one learning signal per rule, got {parts[0]!r} and {p!r}")
        self.parts = parts
        self.name = "chain(" + ", ".join(map(repr, parts)) + ")"

    @property
    def signal_name(self) -> str:
        return self.parts[0].name

    def init(self, net, seeds):
        return tuple(p.init(net, seeds) for p in self.parts)

    def perturb(self, weights, state, seeds, step):
        for p, s in zip(self.parts, state):
            weights = p.perturb(weights, s, seeds, step)
        return weights

    def step(self, state: tuple, ctx: Context) -> StepOutput:
        updates, signal, new_state = None, None, []
        for p, s in zip(self.parts, state):
            if p.kind == "decay" and signal is None:
                signal = updates
            updates, s = p.update(updates, s, ctx)
            new_state.append(s)
        return StepOutput(updates, updates if signal is None else signal, tuple(new_state))

    def update(self, updates, state, ctx):
        out = self.step(state, ctx)
        return out.updates, out.state


def chain(*parts: Transform) -> Chain:
    return Chain(*parts)
