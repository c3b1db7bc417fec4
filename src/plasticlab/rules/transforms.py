"""Transforms applied after the learning signal: preconditioning, noise, decoupled weight decay."""

from __future__ import annotations

import torch

from plasticlab import seeding
from plasticlab.errors import PlasticlabError, check_positive
from plasticlab.rules.base import Context, Transform, tree_map


class Adam(Transform):
    """Adam preconditioning of the signal (AdamW when followed by weight_decay: decay stays decoupled)."""

    name = "adam"

    def __init__(self, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.b1, self.b2, self.eps = b1, b2, eps

    def init(self, net, seeds):
        zeros = [(torch.zeros_like(W), None if b is None else torch.zeros_like(b)) for W, b in net.params()]
        return (0, zeros, [(m.clone(), None if b is None else b.clone()) for m, b in zeros])

    def update(self, updates, state, ctx: Context):
        t, m, v = state
        t += 1
        m = tree_map(lambda m_, g: self.b1 * m_ + (1 - self.b1) * g, m, updates)
        v = tree_map(lambda v_, g: self.b2 * v_ + (1 - self.b2) * g * g, v, updates)
        c1, c2 = 1 - self.b1**t, 1 - self.b2**t
        out = tree_map(lambda m_, v_: (m_ / c1) / ((v_ / c2).sqrt() + self.eps), m, v)
        return out, (t, m, v)


class WeightDecay(Transform):
    """Decoupled L2 decay: updates - gamma * W. Everything before it is the learning signal."""

    kind = "decay"

    def __init__(self, gamma: float, biases: bool = False):
        self.gamma = check_positive("gamma", float(gamma), allow_zero=True)
        self.biases = biases
        self.name = f"weight_decay({gamma:g})"

    def update(self, updates, state, ctx: Context):
        out = []
        for (uW, ub), (W, b) in zip(updates, ctx.net.params()):
            ub = ub if (ub is None or not self.biases) else ub - self.gamma * b
            out.append((uW - self.gamma * W, ub))
        return out, state


class CoupledL2(Transform):
    """Coupled L2 (``torch.optim.Adam(weight_decay=γ)``): updates − γW *before* the optimizer's preconditioning.

    Placed between the signal and ``adam`` — ``chain(sgd(), l2(γ), adam())`` — it adds γW to the gradient
    that Adam normalises, unlike ``weight_decay`` after ``adam`` (AdamW, decoupled). It is a decay piece, so
    the learning signal the chain reports (and alignment is measured on) is everything before it: for
    ``adam_l2`` that is −∂ℓ/∂W of the data loss, never the L2 term. ``gamma`` is one float or one value per
    ensemble member (E,)."""

    kind = "decay"

    def __init__(self, gamma, biases: bool = False):
        g = torch.as_tensor(gamma, dtype=torch.float64)
        if g.ndim > 1 or (g < 0).any() or not torch.isfinite(g).all():
            raise PlasticlabError(f"l2 gamma must be a finite value >= 0 or one per member, got {gamma!r}")
        self.gamma, self.biases = g, biases
        self.name = f"l2({float(g):g})" if g.ndim == 0 else "l2(per-member)"

    def _scaled(self, t: torch.Tensor) -> torch.Tensor:
        g = self.gamma.to(t.dtype)
        return g * t if g.ndim == 0 else g.reshape(-1, *([1] * (t.ndim - 1))) * t

    def update(self, updates, state, ctx: Context):
        out = []
        for (uW, ub), (W, b) in zip(updates, ctx.net.params()):
            ub = ub if (ub is None or b is None or not self.biases) else ub - self._scaled(b)
            out.append((uW - self._scaled(W), ub))
        return out, state


class SignalNoise(Transform):
    """Gaussian noise of std sigma added to the learning signal, fresh every step, per member."""

    def __init__(self, sigma: float):
        self.sigma = check_positive("sigma", float(sigma), allow_zero=True)
        self.name = f"signal_noise({sigma:g})"

    def update(self, updates, state, ctx: Context):
        out = []
        for l, (uW, ub) in enumerate(updates):
            eps = seeding.normal(ctx.seeds, ctx.key("signal-noise", l), uW.shape[1:], uW.dtype)
            out.append((uW + self.sigma * eps, ub))
        return out, state


class ParamNoise(Transform):
    """Forward-pass perturbation (SPEC A.3): the step's forward pass uses w = v + eps, eps ~ N(0, sigma^2 I)
    drawn fresh each step; that same pass feeds both the learning signal and the Hebbian factor, and the
    update is applied to v. As a transform it passes updates through unchanged."""

    def __init__(self, sigma: float):
        self.sigma = check_positive("sigma", float(sigma), allow_zero=True)
        self.name = f"param_noise({sigma:g})"

    def perturb(self, weights, state, seeds, step):
        if self.sigma == 0:
            return weights
        return [
            W + self.sigma * seeding.normal(seeds, seeding.key_of("param-noise", l, step), W.shape[1:], W.dtype)
            for l, W in enumerate(weights)
        ]

    def update(self, updates, state, ctx: Context):
        return updates, state


def adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Adam:
    return Adam(b1, b2, eps)


def weight_decay(gamma: float, biases: bool = False) -> WeightDecay:
    return WeightDecay(gamma, biases)


def l2(gamma, biases: bool = False) -> CoupledL2:
    """Coupled L2 piece: put it before ``adam()`` (``chain(sgd(), l2(γ), adam())`` is torch's Adam with
    ``weight_decay=γ``); after ``adam()`` use ``weight_decay`` (AdamW)."""
    return CoupledL2(gamma, biases)


def signal_noise(sigma: float) -> SignalNoise:
    return SignalNoise(sigma)


def param_noise(sigma: float) -> ParamNoise:
    return ParamNoise(sigma)
