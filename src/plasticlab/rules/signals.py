"""Learning signals g (descent direction). Each ignores incoming updates and builds them from the context."""

from __future__ import annotations

import math
from typing import Any

import torch

from plasticlab import seeding
from plasticlab.errors import check_choice
from plasticlab.networks.mlp import MLP, init_mlp
from plasticlab.rules.base import Chain, Context, PerMember, Signal, Updates, chain
from plasticlab.rules.hints import declare
from plasticlab.rules.registry import register, registered
from plasticlab.rules.transforms import Adam, CoupledL2, Momentum, WeightDecay


class SGD(Signal):
    """Backprop: g = -dl/dW, the descent direction (``-param.grad``, never ``+grad``)."""

    name = "sgd"

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """Backprop's descent direction -dl/dW per layer; keeps no state."""
        return ctx.descent(ctx.backprop(ctx.output_delta())), state


def sgd_rule(gamma: PerMember | None = None, momentum: float = 0.0) -> Signal | Chain:
    """The rule "sgd" as torch's ``SGD(lr, momentum=μ, weight_decay=γ)``; its learning signal is −∂ℓ/∂W.

    Without momentum coupled and decoupled decay are the same update, and the pieces are exactly the plain
    ones: ``sgd`` alone when no γ is given (``get("sgd").build()``), ``sgd`` → ``weight_decay(γ)`` from
    ``make_rule``. With ``momentum=μ`` the L2 term goes into the momentum buffer before it, as in torch
    (``"sgd:momentum=0.9"``); the heavy ball then acts as a ≈ 1/(1 − μ) larger step on both."""
    if not momentum:
        return SGD() if gamma is None else chain(SGD(), WeightDecay(gamma))
    return chain(SGD(), CoupledL2(0.0 if gamma is None else gamma), Momentum(momentum))


register("sgd", sgd_rule, gradient=True, local=False, needs_targets=True, perturbs_forward=False)


def adam_rule(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, measure: str = "signal") -> Chain:
    """The rule "adam": sgd preconditioned by Adam (AdamW once ``make_rule`` appends the decay).

    ``measure="grad"`` reports the learning signal at the gradient instead (a zero decay right after sgd
    ends the signal there; the update is unchanged), to compare with adam_l2 on one quantity."""
    check_choice("adam measure", measure, ["signal", "grad"])
    mark = [WeightDecay(0.0)] if measure == "grad" else []
    return chain(SGD(), *mark, Adam(b1, b2, eps))


register("adam", adam_rule, gradient=False, local=False, needs_targets=True, perturbs_forward=False)
declare("adam", lr_group="adaptive")  # per-weight normalised steps: its lr is of another scale


def adam_l2_rule(gamma: PerMember = 0.0, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Chain:
    """The rule "adam_l2": coupled L2 added to the gradient before Adam (torch's ``Adam(weight_decay=γ)``).
    It takes γ itself, so ``make_rule`` adds no decoupled decay; its learning signal is the data gradient."""
    return chain(SGD(), CoupledL2(gamma), Adam(b1, b2, eps))


register("adam_l2", adam_l2_rule, gradient=False, local=False, needs_targets=True, perturbs_forward=False)
declare("adam_l2", lr_group="adaptive")


@registered("dfa", gradient=False, local=False, needs_targets=True, perturbs_forward=False)
class DFA(Signal):
    """Direct feedback alignment: the output error reaches hidden layer l through a fixed random matrix
    B_l (out_l x d_out) instead of the chain of transposed weights. The output layer learns as in SGD.

    ``feedback="normal"``: B_l ~ N(0, scale²/d_out) (Part A); ``"uniform"``: B_l ~ U(±scale/√out_l), the
    curl-descent paper's (Ninou et al. 2025), drawn on the stream the curl engine has always used for it."""

    name = "dfa"

    def __init__(self, scale: float = 1.0, feedback: str = "normal"):
        self.scale = scale
        self.feedback = check_choice("dfa feedback", feedback, ["normal", "uniform"])
        if feedback != "normal":
            self.name = f"dfa(feedback={feedback!r})"

    def init(self, net: MLP, seeds: torch.Tensor) -> Any:
        """The fixed random feedback matrices B_l (out_l, d_out), one per hidden layer, drawn from ``seeds``."""
        d_out = net.widths[-1]
        mats = []
        for l, W in enumerate(net.weights[:-1]):
            shape = (W.shape[1], d_out)
            if self.feedback == "uniform":
                # layer 0 on the curl engine's historical key, so its DFA runs keep their feedback draws
                key = seeding.key_of("curl", "feedback") if l == 0 else seeding.key_of("curl", "feedback", l)
                u = seeding.uniform(seeds, key, shape).to(device=W.device)
                mats.append((2.0 * u - 1.0).mul_(self.scale / math.sqrt(W.shape[1])).to(W.dtype))
                continue
            B = seeding.normal(seeds, seeding.key_of("dfa-feedback", l), shape, W.dtype, device=W.device)
            mats.append(B * (self.scale / math.sqrt(d_out)))
        return mats

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """Backprop with the feedback matrices in place of the transposed weights; the state is unchanged."""
        return ctx.descent(ctx.backprop(ctx.output_delta(), feedback=state)), state


@registered("random_nn", gradient=True, local=False, needs_targets=False, perturbs_forward=False)
class RandomNN(Signal):
    """A non-learning rule: the error is the mismatch with a fixed, randomly initialised network of the same
    shape (pseudo-targets), back-propagated as usual (Koplow et al. 2025)."""

    name = "random_nn"

    def init(self, net: MLP, seeds: torch.Tensor) -> Any:
        """The fixed random target network, drawn from ``seeds``: same widths, activation and layer convention
        as the student (biases iff the student has them, initialised as ``net.init`` says; a "normal" net's
        biases are zero, so its target computes what the bias-free one always has)."""
        return init_mlp(
            seeds,
            net.widths,
            net.activation,
            bias=any(b is not None for b in net.biases),
            init=net.init,
            tag="random-nn-target",
            dtype=net.weights[0].dtype,
            device=net.weights[0].device,
        )

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """Backprop of the mismatch with the target network's output; the state is unchanged."""
        target = state.forward(ctx.x).out
        return ctx.descent(ctx.backprop(ctx.output_delta(y=target))), state


@registered("hebbian", gradient=False, local=True, needs_targets=False, perturbs_forward=False)
class Hebbian(Signal):
    """Plain Hebb: g = H = (1/B) sum h_b h_a^T (alignment 1 by construction)."""

    name = "hebbian"
    sign = 1.0

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """``sign`` times the Hebb term <h_b h_a^T> per layer (times mean h_b for biases); keeps no state."""
        out = []
        for h_a, h_b, b in zip(ctx.trace.pre, ctx.trace.post, ctx.net.biases):
            H = torch.bmm(h_b.transpose(1, 2), h_a) / h_a.shape[1]
            out.append((self.sign * H, None if b is None else self.sign * h_b.mean(dim=1)))
        return out, state


@registered("anti_hebbian", gradient=False, local=True, needs_targets=False, perturbs_forward=False)
class AntiHebbian(Hebbian):
    """Minus plain Hebb: g = -<h_b h_a^T>."""

    name, sign = "anti_hebbian", -1.0


@registered("oja", gradient=False, local=True, needs_targets=False, perturbs_forward=False)
class Oja(Signal):
    """Oja's rule: g_ij = <y_i (x_j - y_i W_ij)>, Hebb with a decay that keeps each row's norm near 1.
    Its decay term is part of the rule's own signal (it is not L2 weight decay)."""

    name = "oja"

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """Hebb minus post^2 times W per layer (zero bias signal); keeps no state."""
        out = []
        for h_a, h_b, W, b in zip(ctx.trace.pre, ctx.trace.post, ctx.net.weights, ctx.net.biases):
            B = h_a.shape[1]
            H = torch.bmm(h_b.transpose(1, 2), h_a) / B
            y2 = (h_b**2).mean(dim=1)  # (E, out)
            out.append((H - y2[:, :, None] * W, None if b is None else torch.zeros_like(b)))
        return out, state


# the public factories: calling a rule's class builds its piece (``sgd()``, ``dfa(scale=2.0)``)
sgd, dfa, random_nn, hebbian, anti_hebbian, oja = SGD, DFA, RandomNN, Hebbian, AntiHebbian, Oja
