"""Sign-flipped plasticity per ensemble member (curl descent, Ninou et al. 2025) and a per-member choice of signal.

``flip_columns(k)`` negates the update of every synapse *leaving* a flipped neuron: the presynaptic
(column) index of each layer, ``dW_l <- dW_l D_l`` with ``D_l`` diagonal over layer l's inputs and its first
``k_l[e]`` entries -1 for member e. ``k`` is given per layer, each entry one int for every member or one
per member, so a batch of members with different flip counts is one program:

    chain(sgd(), flip_columns([k1s, k2s]))      # curl descent of a 2-layer net, (E,) flips per layer

``per_member(signals, which)`` lets member e follow ``signals[which[e]]`` (e.g. GD and DFA side by side in
one batch). The curl-descent engine (``plasticlab.simulation.curl``) runs every rule built from these pieces;
``sgd``/``dfa`` signals with column flips go through its fused step, anything else through ``Context``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from plasticlab.errors import PlasticlabError
from plasticlab.networks.mlp import MLP
from plasticlab.rules.base import Context, Signal, Transform, Updates

PerLayerK = Sequence[int | Sequence[int] | np.ndarray | torch.Tensor]


def column_flips(k: Any, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(E, n) ±1 diagonals with the first ``k[e]`` entries -1 (``k`` an int or one per member)."""
    k = torch.as_tensor(k, dtype=torch.int64).reshape(-1, 1)
    return torch.where(torch.arange(n)[None, :] < k, -1.0, 1.0).to(dtype)


class FlipColumns(Transform):
    """Per-member presynaptic flips: ``dW_l[e] <- dW_l[e] D_l[e]``; biases (a constant presynaptic 1) never
    flip. The state is the tuple of per-layer (E, in_l) diagonals, fixed at ``init``."""

    def __init__(self, k: PerLayerK):
        if isinstance(k, (int, np.integer)) or not len(k):
            raise PlasticlabError(f"flip_columns takes one k per layer (e.g. [k1, k2]), got {k!r}")
        self.k = [np.asarray(kl, dtype=np.int64) for kl in k]
        for kl in self.k:
            if kl.ndim > 1 or (kl < 0).any():
                raise PlasticlabError(f"flip_columns k must be ints >= 0 (one, or one per member), got {kl}")
        self.name = "flip_columns(" + ", ".join(_label(kl) for kl in self.k) + ")"

    def init(self, net: MLP, seeds: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The (E, in_l) diagonal of every layer for ``net``'s members."""
        if len(self.k) != net.depth:
            raise PlasticlabError(
                f"flip_columns has {len(self.k)} per-layer k but the network has {net.depth} layers"
            )
        E, out = net.ensemble_size, []
        for l, (kl, W) in enumerate(zip(self.k, net.weights)):
            if kl.ndim and len(kl) != E:
                raise PlasticlabError(f"flip_columns layer {l}: {len(kl)} values of k for {E} members")
            if (kl > W.shape[2]).any():
                raise PlasticlabError(f"flip_columns layer {l}: k={kl.max()} exceeds its {W.shape[2]} inputs")
            d = column_flips(np.broadcast_to(kl, (E,)).copy(), W.shape[2], W.dtype)
            out.append(d.to(W.device))
        return tuple(out)

    def update(self, updates: Updates, state: tuple[torch.Tensor, ...], ctx: Context) -> tuple[Updates, Any]:
        """Each layer's weight update times its members' column diagonals."""
        return [(uW * d[:, None, :], ub) for (uW, ub), d in zip(updates, state)], state


def flip_columns(k: PerLayerK) -> FlipColumns:
    """Per-member column flips: ``k`` per layer, an int or one value per member (``[k1s, k2s]``)."""
    return FlipColumns(k)


class PerMember(Signal):
    """Member e follows ``signals[which[e]]``: every signal runs on the whole batch (their states stay
    fixed-structure) and each member keeps its own one's updates."""

    def __init__(self, signals: Sequence[Signal], which: Sequence[int] | np.ndarray | torch.Tensor):
        self.signals = list(signals)
        self.which = torch.as_tensor(np.array(which, dtype=np.int64))
        if not all(isinstance(s, Signal) for s in self.signals) or not self.signals:
            raise PlasticlabError(f"per_member needs learning signals, got {self.signals!r}")
        if self.which.ndim != 1 or (self.which < 0).any() or (self.which >= len(self.signals)).any():
            raise PlasticlabError(f"per_member which must index the {len(self.signals)} signals, one per member")
        self.name = "per_member(" + ", ".join(map(repr, self.signals)) + ")"

    def init(self, net: MLP, seeds: torch.Tensor) -> tuple:
        """One state per signal."""
        if len(self.which) != net.ensemble_size:
            raise PlasticlabError(f"per_member has {len(self.which)} choices for {net.ensemble_size} members")
        return tuple(s.init(net, seeds) for s in self.signals)

    def update(self, updates: Updates, state: tuple, ctx: Context) -> tuple[Updates, Any]:
        """Every signal's updates, each member taking its own signal's."""
        outs, new = [], []
        for s, st in zip(self.signals, state):
            u, st = s.update(updates, st, ctx)
            outs.append(u)
            new.append(st)
        which = self.which.to(ctx.x.device)
        rows = torch.arange(len(which), device=which.device)
        picked = []
        for l, (_, b) in enumerate(ctx.net.params()):
            w = torch.stack([o[l][0] for o in outs])[which, rows]
            bias = None if b is None else torch.stack([o[l][1] for o in outs])  # type: ignore[misc]
            picked.append((w, None if bias is None else bias[which, rows]))
        return picked, tuple(new)


def per_member(signals: Sequence[Signal], which: Sequence[int] | np.ndarray | torch.Tensor) -> PerMember:
    """A signal choosing per member: member e follows ``signals[which[e]]``."""
    return PerMember(signals, which)


def _label(k: np.ndarray) -> str:
    return str(int(k)) if not k.ndim else f"per-member[{len(k)}]"
