"""Rules as small composable transformations (optax-like), pure functions over explicit state.

A rule is ``chain(signal, *transforms)``: the first piece makes the **learning signal** g (the descent
direction: for SGD g = -dl/dW), later pieces precondition it (adam), add noise, or subtract weight decay.
The update a trainer applies is ``W <- W + lr * updates``, i.e. ``dW = lr (g - gamma W)`` (Koplow et al. 2025).

``Chain.update`` also returns the signal: the updates *before* the first decay transform, which is what
Hebbian alignment is measured on (decay never inside the signal).

Updates and params are lists over layers of ``(dW, db)`` pairs; ``db`` is None for bias-free layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from plasticlab import losses, seeding
from plasticlab.networks.activations import activation as get_activation
from plasticlab.networks.activations import backward_from_output
from plasticlab.networks.mlp import MLP, Trace

Updates = list[tuple[torch.Tensor, torch.Tensor | None]]
PerMember = float | Sequence[float] | np.ndarray | torch.Tensor  # one value for all members, or one each


def tree_map(fn: Callable[..., torch.Tensor], *trees: Updates) -> Updates:
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
    y: torch.Tensor | None  # (E, B, out) regression targets or one-hot labels (None: not given)
    loss: str  # a plasticlab.losses kind: "mse" (1/2 ||out - y||^2 per sample), "mse_mean", "xent"
    seeds: torch.Tensor  # (E,)
    step: int
    cache: dict[str, Any] = field(default_factory=dict)

    def output_delta(self, out: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """dl/d(output pre-activation) per sample, (E, B, d_out)."""
        out = self.trace.out if out is None else out
        y = self.y if y is None else y
        if y is None:
            from plasticlab.errors import PlasticlabError

            raise PlasticlabError("this rule needs the targets y for its output error, and none were given")
        return losses.output_delta(out, y, self.loss)

    def backprop(self, delta_out: torch.Tensor, feedback: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Per-layer deltas dl/dh_b (E, B, out_l). ``feedback`` (list of (E, out_l, d_out)) replaces the
        chained transposed weights by direct random projections of the output delta (DFA)."""
        _, dphi = get_activation(self.net.activation)
        # from the forward pass's output when the trace holds it (MLP.forward): phi is not recomputed, and
        # tanh's factor is one fused pass over the activity instead of three (the step's largest element-wise
        # cost at the papers' shapes, docs/performance.md)
        back_of = backward_from_output(self.net.activation) if self.trace.chained else None
        L = len(self.trace.weights)
        deltas: list[torch.Tensor] = [delta_out] * L
        for l in range(L - 2, -1, -1):
            if feedback is None:
                back = torch.bmm(deltas[l + 1], self.trace.weights[l + 1])
            else:
                back = torch.bmm(delta_out, feedback[l].transpose(1, 2))
            deltas[l] = back * dphi(self.trace.z[l]) if back_of is None else back_of(back, self.trace.pre[l + 1])
        return deltas

    def descent(self, deltas: list[torch.Tensor]) -> Updates:
        """g = -(1/B) sum_i delta_i h_a,i^T per layer (and -mean delta for biases)."""
        out = []
        for d, h, b in zip(deltas, self.trace.pre, self.net.biases):
            # one pass in place, not two: x / -B is exactly -x / B (division is sign-symmetric)
            gW = torch.bmm(d.transpose(1, 2), h).div_(-h.shape[1])
            out.append((gW, None if b is None else -d.mean(dim=1)))
        return out

    def key(self, *parts: object) -> int:
        """A random-stream key for this step: ``seeding.normal(ctx.seeds, ctx.key("purpose", l), ...)``."""
        return seeding.key_of(*parts, self.step)


class Transform:
    """One piece of a rule (optax-style): ``init`` fixes the state's structure once, ``update`` maps
    (updates, state, ctx) to (updates, state) without mutating either.

    A piece's role is its type: a ``Signal`` makes updates from the context (ignoring its input), a
    ``Decay`` subtracts weight decay and marks the end of the learning signal, any other ``Transform``
    maps updates. ``perturbs_forward`` tags a piece whose ``perturb`` changes the forward pass's weights
    (parameter noise): trainers apply it, ``RuleOptimizer`` (whose forward pass the user runs) refuses it."""

    name = "transform"
    perturbs_forward = False

    def init(self, net: MLP, seeds: torch.Tensor) -> Any:
        """The piece's state for ``net``'s members; its structure never changes afterwards."""
        return ()

    def perturb(
        self, weights: list[torch.Tensor], state: Any, seeds: torch.Tensor, step: int
    ) -> list[torch.Tensor]:
        """Forward-pass weights for this step (parameter noise overrides this)."""
        return weights

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """(new updates, new state) from the incoming updates (empty for a signal) and this step's context."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class Signal(Transform):
    """A learning signal: the first piece of every rule; builds updates from the context alone."""

    name = "signal"


class Decay(Transform):
    """Weight decay: subtracts a multiple of the weights; everything before it is the learning signal."""

    name = "decay"


@dataclass
class StepOutput:
    """One rule step: the update the trainer applies (times lr), the learning signal, the new state."""

    updates: Updates  # what the trainer applies (times lr)
    signal: Updates  # the learning signal: updates before decay
    state: tuple


class Chain(Transform):
    """A rule: one ``Signal`` followed by transforms (preconditioning, noise, decay), applied in order."""

    def __init__(self, *parts: Transform):
        from plasticlab.errors import PlasticlabError

        if not parts:
            raise PlasticlabError("chain() needs at least one piece, e.g. chain(sgd(), weight_decay(1e-4))")
        if not isinstance(parts[0], Signal):
            # the registry (which lists the signals) builds on this module, so it is not asked here
            raise PlasticlabError(
                f"a rule must start with a learning signal, got {parts[0]!r}, e.g. chain(sgd(), "
                "weight_decay(1e-4)); the registered signals: plasticlab.rules.rule_names()"
            )
        for p in parts[1:]:
            if isinstance(p, Signal):
                raise PlasticlabError(f"only one learning signal per rule, got {parts[0]!r} and {p!r}")
        self.parts = parts
        self.name = "chain(" + ", ".join(map(repr, parts)) + ")"
        self.perturbs_forward = any(p.perturbs_forward for p in parts)

    @property
    def signal_name(self) -> str:
        """The name of the rule's learning signal."""
        return self.parts[0].name

    def init(self, net: MLP, seeds: torch.Tensor) -> tuple:
        """One state per piece, in order."""
        return tuple(p.init(net, seeds) for p in self.parts)

    def perturb(
        self, weights: list[torch.Tensor], state: Any, seeds: torch.Tensor, step: int
    ) -> list[torch.Tensor]:
        """Forward-pass weights after every piece's perturbation."""
        for p, s in zip(self.parts, state):
            weights = p.perturb(weights, s, seeds, step)
        return weights

    def step(self, state: tuple, ctx: Context) -> StepOutput:
        """Run every piece; the signal is the updates as they stand before the first ``Decay``."""
        updates: Updates = []
        signal: Updates | None = None
        new_state = []
        for p, s in zip(self.parts, state):
            if isinstance(p, Decay) and signal is None:
                signal = updates
            updates, s = p.update(updates, s, ctx)
            new_state.append(s)
        return StepOutput(updates, updates if signal is None else signal, tuple(new_state))

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """The chain as one transform: (updates, state) of ``step``."""
        out = self.step(state, ctx)
        return out.updates, out.state


def chain(*parts: Transform) -> Chain:
    """Compose pieces into a rule: ``chain(dfa(), param_noise(0.1), weight_decay(1e-3))``."""
    return Chain(*parts)
