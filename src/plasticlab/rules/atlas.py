"""The rules around both papers as learning-signal Transforms, plus the ``flip`` transform of curl descent.

Every signal here follows the library convention: g is a *descent-like direction* added as
``W <- W + lr (g - gamma W)``; weight decay and noise stay separate pieces of the chain. Conventions shared
with ``signals.py``: pre = h_a (previous layer's post-activation), post = h_b = W h_a without the bias.

- ``bcm``: g = <post (post - theta) pre^T>, theta_i a running mean of post_i^2 (the sliding threshold).
- ``soft_wta``: g_ij = <s_i (pre_j - post_i W_ij)>, s = softmax(beta post) over the layer's units: soft
  competition (Krotov-Hopfield style gain) times an Oja-style term that pulls each row to unit norm.
- ``three_factor``: g = <m pre-post Hebb>, modulator m_n = -(loss_n - baseline) per sample (reward-modulated
  Hebb: samples that did better than the running baseline are potentiated, worse ones depressed).
- ``fa``: feedback alignment: backprop with a fixed random B_l in place of W_l in the backward chain.
- ``sign_symmetry``: backprop with sign(W_l) (scaled by mean |W_l|) in place of W_l.
- ``exp_grad``: Dale's law: W <- W exp(lr sign(W) g_base); written as an additive signal, never flips a sign.
- ``curl``: sgd followed by ``flip``: the update's presynaptic columns of flipped inputs are negated
  (default: one flipped readout neuron, k = 1 on the last layer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from plasticlab import losses, seeding
from plasticlab.errors import PlasticlabError, check_positive
from plasticlab.networks.activations import activation as get_activation
from plasticlab.networks.mlp import MLP
from plasticlab.rules.base import Context, Signal, Transform, Updates
from plasticlab.rules.registry import registered
from plasticlab.rules.signals import SGD


def _hebb(post: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    return torch.bmm(post.transpose(1, 2), pre) / pre.shape[1]


def _bias(b, post_term: torch.Tensor):
    """Bias signal: the same rule with a constant presynaptic 1 (None for bias-free layers)."""
    return None if b is None else post_term.mean(dim=1)


def per_sample_loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """(E, B) loss of each sample (``plasticlab.losses.per_sample``)."""
    return losses.per_sample(out, y, loss)


def backprop_through(ctx: Context, delta_out: torch.Tensor, back: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """Deltas with ``back[l]`` (E, out_l, in_l) standing in for W_l in the backward chain (FA, sign
    symmetry). ``back[0]`` is never used: nothing is propagated below the first layer."""
    _, dphi = get_activation(ctx.net.activation)
    L = len(ctx.trace.weights)
    deltas: list[torch.Tensor] = [delta_out] * L
    for l in range(L - 2, -1, -1):
        b = back[l + 1]
        assert b is not None, "back[l] stands in for W_l for every l >= 1"
        deltas[l] = torch.bmm(deltas[l + 1], b) * dphi(ctx.trace.z[l])
    return deltas


def _running_rate(rule: str, rate: float) -> float:
    """A running average's step size, in (0, 1]."""
    if not 0 < float(rate) <= 1:
        raise PlasticlabError(f"{rule} rate must be in (0, 1], got {rate!r}")
    return float(rate)


class Running(NamedTuple):
    """A running average's state: how many batches it has seen and its value (fixed structure at init)."""

    seen: int
    value: Any  # BCM: per-layer (E, out) thresholds; three_factor: (E,) loss baseline


# state_dict()s of a RuleOptimizer hold Running states: let torch.load's safe (weights_only) mode read them
torch.serialization.add_safe_globals([Running])


@registered("bcm", gradient=False, local=True, needs_targets=False, perturbs_forward=False)
class BCM(Signal):
    """Bienenstock-Cooper-Munro: potentiate when post exceeds the threshold theta, depress below it; the
    threshold slides with the recent mean of post^2 (rate ``rate`` per step), which is what stabilises it."""

    name = "bcm"

    def __init__(self, rate: float = 0.1):
        self.rate = _running_rate("bcm", rate)

    def init(self, net: MLP, seeds: torch.Tensor) -> Running:
        """Thresholds start at the first batch's mean post^2 (no arbitrary constant): zeros until then."""
        return Running(0, [torch.zeros(W.shape[:2], dtype=W.dtype, device=W.device) for W in net.weights])

    def update(self, updates: Updates, state: Running, ctx: Context) -> tuple[Updates, Running]:
        """Hebb of post (post - theta) per layer, theta first moved towards this batch's mean post^2."""
        out, thresholds = [], []
        for l, (h_a, h_b, b) in enumerate(zip(ctx.trace.pre, ctx.trace.post, ctx.net.biases)):
            m2 = (h_b**2).mean(dim=1)  # (E, out)
            th = m2 if state.seen == 0 else (1 - self.rate) * state.value[l] + self.rate * m2
            phi = h_b * (h_b - th[:, None, :])
            out.append((_hebb(phi, h_a), _bias(b, phi)))
            thresholds.append(th)
        return out, Running(state.seen + 1, thresholds)


@registered("soft_wta", gradient=False, local=True, needs_targets=False, perturbs_forward=False)
class SoftWTA(Signal):
    """Soft winner-take-all Hebb: each sample's gain s = softmax(beta * post) across the layer's units, so the
    most active unit takes most of the update; the -s post W term keeps each learning row near unit norm."""

    name = "soft_wta"

    def __init__(self, beta: float = 5.0):
        self.beta = check_positive("beta", float(beta))

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """softmax-gain Hebb minus the Oja-style decay per layer (zero bias signal); keeps no state."""
        out = []
        for h_a, h_b, W, b in zip(ctx.trace.pre, ctx.trace.post, ctx.net.weights, ctx.net.biases):
            s = torch.softmax(self.beta * h_b, dim=-1)
            decay = (s * h_b).mean(dim=1)  # (E, out)
            out.append((_hebb(s, h_a) - decay[:, :, None] * W, None if b is None else torch.zeros_like(b)))
        return out, state


# local: each synapse reads its own pre/post activity times one global scalar (the reward)
@registered("three_factor", gradient=False, local=True, needs_targets=True, perturbs_forward=False)
class ThreeFactor(Signal):
    """Reward-modulated Hebb: g = (1/B) sum_n m_n h_b,n h_a,n^T with m_n = -(loss_n - baseline). The baseline
    is a running mean of the batch loss (``rate`` per step), updated after the signal is formed, so it is
    the expectation *before* this batch."""

    name = "three_factor"

    def __init__(self, rate: float = 0.1):
        self.rate = _running_rate("three_factor", rate)

    def init(self, net: MLP, seeds: torch.Tensor) -> Running:
        """The baseline starts at the first batch's mean loss: zero until then."""
        return Running(0, torch.zeros(net.ensemble_size, dtype=net.weights[0].dtype, device=net.weights[0].device))

    def update(self, updates: Updates, state: Running, ctx: Context) -> tuple[Updates, Running]:
        """The loss-modulated Hebb term per layer; the baseline then moves towards this batch's mean loss."""
        if ctx.y is None:
            raise PlasticlabError(
                "three_factor needs the targets for its per-sample loss: pass them as "
                "opt.step(y=...) when using RuleOptimizer"
            )
        loss = per_sample_loss(ctx.trace.out, ctx.y, ctx.loss)  # (E, B)
        base = loss.mean(dim=1) if state.seen == 0 else state.value
        m = -(loss - base[:, None])
        out = []
        for h_a, h_b, b in zip(ctx.trace.pre, ctx.trace.post, ctx.net.biases):
            post = m[:, :, None] * h_b
            out.append((_hebb(post, h_a), _bias(b, post)))
        return out, Running(state.seen + 1, (1 - self.rate) * base + self.rate * loss.mean(dim=1))


@registered("fa", gradient=False, local=False, needs_targets=True, perturbs_forward=False)
class FA(Signal):
    """Feedback alignment (Lillicrap et al.): the error travels back layer by layer, as in backprop, but
    through fixed random matrices B_l (shaped like W_l, std scale/sqrt(fan_in)) instead of W_l. Unlike DFA,
    each hidden layer hears the error of the layer above it, not the output error directly."""

    name = "fa"

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)

    def init(self, net: MLP, seeds: torch.Tensor) -> Any:
        """The fixed random feedback matrices B_l shaped like W_l (None for layer 0), drawn from ``seeds``."""
        mats: list[torch.Tensor | None] = [None]  # layer 0 sends nothing back
        for l, W in enumerate(net.weights[1:], start=1):
            B = seeding.normal(seeds, seeding.key_of("fa-feedback", l), W.shape[1:], W.dtype, device=W.device)
            mats.append(B * (self.scale / math.sqrt(W.shape[2])))
        return mats

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """Backprop through the feedback matrices instead of W_l; the state is unchanged."""
        return ctx.descent(backprop_through(ctx, ctx.output_delta(), state)), state


@registered("sign_symmetry", gradient=False, local=False, needs_targets=True, perturbs_forward=False)
class SignSymmetry(Signal):
    """Sign-symmetric feedback (Liao, Leibo, Poggio): the backward chain uses sign(W_l) times mean|W_l| (the
    rescaling keeps hidden-layer step sizes comparable to backprop; only the signs of W are shared)."""

    name = "sign_symmetry"

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """Backprop through sign(W_l) mean|W_l| instead of W_l; keeps no state."""
        back = [None] + [torch.sign(W) * W.abs().mean(dim=(1, 2), keepdim=True) for W in ctx.trace.weights[1:]]
        return ctx.descent(backprop_through(ctx, ctx.output_delta(), back)), state


@registered("exp_grad", gradient=False, local=False, needs_targets=True, perturbs_forward=False)
class ExpGrad(Signal):
    """Dale's law by exponentiated gradient: every weight keeps its sign, W <- W exp(eta sign(W) g) with g the
    base signal (sgd by default). As an additive signal for ``W + lr u``:

        u = W (exp(max_lr sign(W) g) - 1) / max_lr,

    exactly the exponentiated step when lr = max_lr, and sign-preserving for every lr <= max_lr (the factor
    1 + (lr/max_lr)(e^a - 1) stays > 0). To first order u = |W| g (multiplicative). Zero weights stay zero."""

    name = "exp_grad"

    def __init__(self, base: Signal | None = None, max_lr: float = 1.0):
        self.base = SGD() if base is None else base
        if not isinstance(self.base, Signal):
            raise PlasticlabError(f"exp_grad needs a learning signal as base, got {self.base!r}")
        self.max_lr = check_positive("max_lr", float(max_lr))

    def init(self, net: MLP, seeds: torch.Tensor) -> Any:
        """The base signal's state (this piece adds none)."""
        return self.base.init(net, seeds)

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """The base signal turned into the sign-preserving exponentiated step u, and the base's new state."""
        g, state = self.base.update(updates, state, ctx)
        out = []
        for (gW, gb), W in zip(g, ctx.net.weights):
            uW = W * torch.expm1(self.max_lr * torch.sign(W) * gW) / self.max_lr
            out.append((uW, gb))
        return out, state


class Flip(Transform):
    """Curl-descent flips (Ninou et al. 2025) on the presynaptic (column) index: dW_l <- dW_l D_l, D_l
    diagonal over layer l's inputs with its first k_l entries -1. Biases (presynaptic constant 1) are never
    flipped.

    ``k`` (int, or one per layer) or ``fraction`` (float, or one per layer: k_l = round(fraction * in_l));
    ``layers`` restricts the flips to those layer indices, negative ones counting from the output
    (default: every layer)."""

    def __init__(
        self,
        fraction: float | Sequence[float] | None = None,
        k: int | Sequence[int] | None = None,
        layers: Sequence[int] | None = None,
    ):
        if (fraction is None) == (k is None):
            raise PlasticlabError("flip needs exactly one of fraction= (e.g. 0.25) or k= (e.g. 3)")
        self.fraction, self.k = fraction, k
        self.layers = None if layers is None else [int(l) for l in layers]
        for f in _as_list(fraction):
            if not 0 <= float(f) <= 1:
                raise PlasticlabError(f"flip fraction must be in [0, 1], got {f!r}")
        for kk in _as_list(k):
            if int(kk) < 0:
                raise PlasticlabError(f"flip k must be >= 0, got {kk!r}")
        what = f"fraction={fraction}" if k is None else f"k={k}"
        self.name = f"flip({what}{'' if layers is None else f', layers={self.layers}'})"

    def k_of(self, l: int, n_in: int, n_layers: int | None = None) -> int:
        """How many of layer l's ``n_in`` inputs are flipped (0 for a layer outside ``layers``)."""
        if self.layers is not None:
            chosen = self.layers if n_layers is None else [i % n_layers for i in self.layers]
            if l not in chosen:
                return 0
        if self.k is not None:
            kk = _pick(self.k, l)
            if kk > n_in:
                raise PlasticlabError(f"flip k={kk} exceeds layer {l}'s {n_in} inputs")
            return int(kk)
        return int(round(float(_pick(self.fraction, l)) * n_in))

    def diagonal(self, l: int, n_in: int, dtype=torch.float64, n_layers: int | None = None) -> torch.Tensor:
        """Layer l's diagonal of D_l as a vector: -1 for the first k_l inputs, +1 for the rest."""
        k = self.k_of(l, n_in, n_layers)
        return torch.where(torch.arange(n_in) < k, -1.0, 1.0).to(dtype)

    def apply(self, updates):
        """The updates with each layer's weight columns multiplied by D_l; biases untouched."""
        L = len(updates)
        return [
            (uW * self.diagonal(l, uW.shape[-1], uW.dtype, L).to(uW.device), ub)
            for l, (uW, ub) in enumerate(updates)
        ]

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """The incoming updates flipped (``apply``); the state is unchanged."""
        return self.apply(updates), state


@registered("curl", gradient=False, local=False, needs_targets=True, perturbs_forward=False)
class Curl(Signal):
    """Curl descent in an MLP: a base signal (sgd) with its presynaptic columns flipped (see ``Flip``).

    Without ``fraction``/``k``: one flipped readout neuron (k = 1 on the last layer's inputs, as in the
    speed-up experiment of Ninou et al. 2025; stable at small flipped fractions). With them and no ``layers``:
    every layer."""

    name = "curl"

    def __init__(
        self,
        fraction: float | Sequence[float] | None = None,
        k: int | Sequence[int] | None = None,
        layers: Sequence[int] | None = None,
        base: Signal | None = None,
    ):
        if fraction is None and k is None:
            k, layers = 1, ([-1] if layers is None else layers)
        self.flip = Flip(fraction=None if k is not None else fraction, k=k, layers=layers)
        self.base = SGD() if base is None else base

    def init(self, net: MLP, seeds: torch.Tensor) -> Any:
        """The base signal's state (this piece adds none)."""
        return self.base.init(net, seeds)

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """The base signal with its presynaptic columns flipped, and the base's new state."""
        g, state = self.base.update(updates, state, ctx)
        return self.flip.apply(g), state


def _as_list(v):
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _pick(v, l: int):
    if isinstance(v, (list, tuple)):
        if l >= len(v):
            raise PlasticlabError(f"flip was given {len(v)} per-layer values but the network has layer {l}")
        return v[l]
    return v


# the public factories: calling a piece's class builds it (``bcm(rate=0.2)``, ``flip(k=1, layers=[-1])``)
bcm, soft_wta, three_factor, fa, sign_symmetry, exp_grad = BCM, SoftWTA, ThreeFactor, FA, SignSymmetry, ExpGrad
flip, curl = Flip, Curl
