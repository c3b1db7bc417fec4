"""Transforms applied after the learning signal: preconditioning, noise, decoupled weight decay.

``weight_decay``, ``l2``, ``param_noise`` and ``signal_noise`` take one float for every member, or one value
per ensemble member ((E,) sequence or tensor): a whole γ × σ × seed grid then advances as one batched
program, and a member with per-member value v equals its run with the float v (same arithmetic, same random
keys).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from plasticlab import seeding
from plasticlab.errors import PlasticlabError, check_positive
from plasticlab.networks.mlp import MLP
from plasticlab.rules.base import Context, Decay, PerMember, Transform, Updates, tree_map
from plasticlab.rules.flips import flip_columns


def _finite_nonneg(what: str, v: Any) -> float:
    """``v`` as a float if it is a finite number >= 0 (inf decays every weight to nan in one step)."""
    try:
        if isinstance(v, (bool, str)):
            raise TypeError
        x = float(v)
    except (TypeError, ValueError):
        raise PlasticlabError(f"{what} must be a finite number >= 0, got {v!r}") from None
    if not math.isfinite(x):
        raise PlasticlabError(f"{what} must be a finite number >= 0, got {v!r}")
    return check_positive(what, x, allow_zero=True)


def _float_or_members(what: str, v: PerMember) -> float | torch.Tensor:
    """A float stays a float; anything with a length becomes an (E,) float64 tensor. Both must be finite
    and >= 0."""
    if isinstance(v, (int, float, str)) or (hasattr(v, "ndim") and v.ndim == 0):
        return _finite_nonneg(what, v)
    try:
        t = torch.tensor(np.asarray(v, dtype=np.float64))
    except (TypeError, ValueError):
        raise PlasticlabError(f"{what} must be a float or one finite value >= 0 per member, got {v!r}") from None
    if t.ndim != 1 or (t < 0).any() or not torch.isfinite(t).all():
        raise PlasticlabError(f"{what} must be a float or one finite value >= 0 per member, got {t.tolist()}")
    return t


def _label(v: float | torch.Tensor) -> str:
    return f"{v:g}" if isinstance(v, float) else f"per-member[{len(v)}]"


class Adam(Transform):
    """Adam preconditioning of the signal (AdamW when followed by weight_decay: decay stays decoupled)."""

    name = "adam"

    def __init__(self, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.b1, self.b2, self.eps = b1, b2, eps

    def init(self, net: MLP, seeds: torch.Tensor) -> tuple[int, Updates, Updates]:
        """(step count, first moments, second moments), moments zero and shaped like the parameters."""
        zeros = [(torch.zeros_like(W), None if b is None else torch.zeros_like(b)) for W, b in net.params()]
        return (0, zeros, [(m.clone(), None if b is None else b.clone()) for m, b in zeros])

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """Bias-corrected m / (sqrt(v) + eps)."""
        t, m, v = state
        t += 1
        m = tree_map(lambda m_, g: self.b1 * m_ + (1 - self.b1) * g, m, updates)
        v = tree_map(lambda v_, g: self.b2 * v_ + (1 - self.b2) * g * g, v, updates)
        c1, c2 = 1 - self.b1**t, 1 - self.b2**t
        out = tree_map(lambda m_, v_: (m_ / c1) / ((v_ / c2).sqrt() + self.eps), m, v)
        return out, (t, m, v)


class Momentum(Transform):
    """Heavy-ball momentum, torch.optim.SGD's form: buf ← μ·buf + u, out = buf (no dampening, not Nesterov).

    The buffer starts at zero, so the first step returns u itself, as torch's does. After ``l2`` it is torch's
    ``SGD(momentum=μ, weight_decay=γ)``: the L2 term enters the buffer (coupled)."""

    def __init__(self, mu: float = 0.9):
        if not 0.0 <= float(mu) < 1.0:
            raise PlasticlabError(f"momentum must be in [0, 1), got {mu!r}")
        self.mu = float(mu)
        self.name = f"momentum({self.mu:g})"

    def init(self, net: MLP, seeds: torch.Tensor) -> Updates:
        """A zero buffer shaped like the parameters."""
        return [(torch.zeros_like(W), None if b is None else torch.zeros_like(b)) for W, b in net.params()]

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """μ·buf + u, returned and kept."""
        buf = tree_map(lambda u, m_: self.mu * m_ + u, updates, state)
        return buf, buf


class WeightDecay(Decay):
    """Decoupled L2 decay: updates - gamma * W (gamma a float or one per member). Ends the learning signal."""

    def __init__(self, gamma: PerMember, biases: bool = False):
        self.gamma = _float_or_members("gamma", gamma)
        self.biases = biases
        self.name = f"weight_decay({_label(self.gamma)})"

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """Subtract gamma * W (and gamma * b with ``biases=True``)."""
        out = []
        for (uW, ub), (W, b) in zip(updates, ctx.net.params()):
            if isinstance(self.gamma, float):
                gW: float | torch.Tensor = self.gamma
                gb: float | torch.Tensor = self.gamma
            else:
                gW = self.gamma.to(W)[:, None, None]
                gb = self.gamma.to(W)[:, None]
            ub = ub if (ub is None or b is None or not self.biases) else ub - gb * b
            out.append((uW - gW * W, ub))
        return out, state


class CoupledL2(Decay):
    """Coupled L2 (``torch.optim.Adam(weight_decay=γ)``): updates − γW *before* the optimizer's preconditioning.

    Placed between the signal and ``adam`` — ``chain(sgd(), l2(γ), adam())`` — it adds γW to the gradient
    that Adam normalises, unlike ``weight_decay`` after ``adam`` (AdamW, decoupled). It is a decay piece, so
    the learning signal the chain reports (and alignment is measured on) is everything before it: for
    ``adam_l2`` that is −∂ℓ/∂W of the data loss, never the L2 term. ``gamma`` is one float or one value per
    ensemble member (E,)."""

    def __init__(self, gamma: PerMember, biases: bool = False):
        g = torch.tensor(np.array(gamma, dtype=np.float64))  # a copy: pandas arrays are read-only
        if g.ndim > 1 or (g < 0).any() or not torch.isfinite(g).all():
            raise PlasticlabError(f"l2 gamma must be a finite value >= 0 or one per member, got {gamma!r}")
        self.gamma, self.biases = g, biases
        self.name = f"l2({float(g):g})" if g.ndim == 0 else "l2(per-member)"

    def _scaled(self, t: torch.Tensor) -> torch.Tensor:
        g = self.gamma.to(t)
        return g * t if g.ndim == 0 else g.reshape(-1, *([1] * (t.ndim - 1))) * t

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """Subtract gamma * W (and gamma * b with ``biases=True``) before the preconditioning."""
        out = []
        for (uW, ub), (W, b) in zip(updates, ctx.net.params()):
            ub = ub if (ub is None or b is None or not self.biases) else ub - self._scaled(b)
            out.append((uW - self._scaled(W), ub))
        return out, state


class SignalNoise(Transform):
    """Gaussian noise of std sigma added to the learning signal, fresh every step, from each member's own
    seed (sigma a float or one per member). Only the weight updates get it: biases are left alone, as
    alignment (measured on W) is what the noise is there to disturb."""

    def __init__(self, sigma: PerMember):
        self.sigma = _float_or_members("sigma", sigma)
        self.name = f"signal_noise({_label(self.sigma)})"

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """Add sigma * N(0, 1) to every weight update (biases untouched)."""
        out = []
        for l, (uW, ub) in enumerate(updates):
            eps = seeding.normal(ctx.seeds, ctx.key("signal-noise", l), uW.shape[1:], uW.dtype, device=uW.device)
            s = self.sigma if isinstance(self.sigma, float) else self.sigma.to(uW)[:, None, None]
            out.append((uW + s * eps, ub))
        return out, state


class ParamNoise(Transform):
    """Forward-pass perturbation (Koplow et al. 2025): the step's forward pass uses w = v + eps,
    eps ~ N(0, sigma^2 I) drawn fresh each step (sigma a float or one per member); that same pass feeds both the
    learning signal and the Hebbian factor, and the update is applied to v. As a transform it passes updates
    through."""

    perturbs_forward = True

    def __init__(self, sigma: PerMember):
        self.sigma = _float_or_members("sigma", sigma)
        self.name = f"param_noise({_label(self.sigma)})"
        self.perturbs_forward = bool(torch.as_tensor(self.sigma).ne(0).any())  # σ = 0 leaves the pass alone

    def perturb(
        self, weights: list[torch.Tensor], state: Any, seeds: torch.Tensor, step: int
    ) -> list[torch.Tensor]:
        """W + sigma * eps with eps on the "param-noise" key of (layer, step)."""
        if not self.perturbs_forward:
            return weights
        out = []
        for l, W in enumerate(weights):
            eps = seeding.normal(
                seeds, seeding.key_of("param-noise", l, step), W.shape[1:], W.dtype, device=W.device
            )
            s = self.sigma if isinstance(self.sigma, float) else self.sigma.to(W)[:, None, None]
            out.append(W + s * eps)
        return out

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """Updates pass through unchanged."""
        return updates, state


def adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Adam:
    """Adam preconditioning (after a signal)."""
    return Adam(b1, b2, eps)


def momentum(mu: float = 0.9) -> Momentum:
    """Heavy-ball momentum μ (after a signal; after ``l2`` for torch's coupled ``SGD(weight_decay=γ)``)."""
    return Momentum(mu)


def weight_decay(gamma: PerMember, biases: bool = False) -> WeightDecay:
    """Decoupled weight decay gamma (float, or one per member)."""
    return WeightDecay(gamma, biases)


def l2(gamma: PerMember, biases: bool = False) -> CoupledL2:
    """Coupled L2 piece: put it before ``adam()`` (``chain(sgd(), l2(γ), adam())`` is torch's Adam with
    ``weight_decay=γ``); after ``adam()`` use ``weight_decay`` (AdamW)."""
    return CoupledL2(gamma, biases)


def signal_noise(sigma: PerMember) -> SignalNoise:
    """Gaussian noise on the learning signal (float, or one per member)."""
    return SignalNoise(sigma)


def param_noise(sigma: PerMember) -> ParamNoise:
    """Gaussian noise on the forward pass's weights (float, or one per member)."""
    return ParamNoise(sigma)


# Every non-signal piece, by name: the contract test runs each (optax-style).
TRANSFORMS = {
    "adam": adam,
    "l2": l2,
    "momentum": momentum,
    "weight_decay": weight_decay,
    "signal_noise": signal_noise,
    "param_noise": param_noise,
    "flip_columns": flip_columns,  # per member: the contract test gives it one k per layer and member
}
