"""Learning signals g (descent direction). Each ignores incoming updates and builds them from the context."""

from __future__ import annotations

import math

import torch

from plasticlab import seeding
from plasticlab.networks.mlp import init_mlp
from plasticlab.rules.base import Context, Transform


class SGD(Transform):
    """Backprop: g = -dl/dW, the descent direction (``-param.grad``, never ``+grad``)."""

    kind, name = "signal", "sgd"

    def update(self, updates, state, ctx: Context):
        return ctx.descent(ctx.backprop(ctx.output_delta())), state


class DFA(Transform):
    """Direct feedback alignment: the output error reaches hidden layer l through a fixed random matrix
    B_l (out_l x d_out) instead of the chain of transposed weights. The output layer learns as in SGD."""

    kind, name = "signal", "dfa"

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def init(self, net, seeds):
        d_out = net.widths[-1]
        mats = []
        for l, W in enumerate(net.weights[:-1]):
            B = seeding.normal(seeds, seeding.key_of("dfa-feedback", l), (W.shape[1], d_out), W.dtype)
            mats.append(B * (self.scale / math.sqrt(d_out)))
        return mats

    def update(self, updates, state, ctx: Context):
        return ctx.descent(ctx.backprop(ctx.output_delta(), feedback=state)), state


class RandomNN(Transform):
    """A non-learning rule: the error is the mismatch with a fixed, randomly initialised network of the same
    shape (pseudo-targets), back-propagated as usual (SPEC A.4)."""

    kind, name = "signal", "random_nn"

    def init(self, net, seeds):
        return init_mlp(
            seeds, net.widths, net.activation, bias=False, tag="random-nn-target", dtype=net.weights[0].dtype
        )

    def update(self, updates, state, ctx: Context):
        target = state.forward(ctx.x).out
        return ctx.descent(ctx.backprop(ctx.output_delta(y=target))), state


class Hebbian(Transform):
    """Plain Hebb: g = H = (1/B) sum h_b h_a^T (alignment 1 by construction)."""

    kind, name = "signal", "hebbian"
    sign = 1.0

    def update(self, updates, state, ctx: Context):
        out = []
        for h_a, h_b, b in zip(ctx.trace.pre, ctx.trace.post, ctx.net.biases):
            H = torch.bmm(h_b.transpose(1, 2), h_a) / h_a.shape[1]
            out.append((self.sign * H, None if b is None else self.sign * h_b.mean(dim=1)))
        return out, state


class AntiHebbian(Hebbian):
    name, sign = "anti_hebbian", -1.0


class Oja(Transform):
    """Oja's rule: g_ij = <y_i (x_j - y_i W_ij)>, Hebb with a decay that keeps each row's norm near 1.
    Its decay term is part of the rule's own signal (it is not L2 weight decay)."""

    kind, name = "signal", "oja"

    def update(self, updates, state, ctx: Context):
        out = []
        for h_a, h_b, W, b in zip(ctx.trace.pre, ctx.trace.post, ctx.net.weights, ctx.net.biases):
            B = h_a.shape[1]
            H = torch.bmm(h_b.transpose(1, 2), h_a) / B
            y2 = (h_b**2).mean(dim=1)  # (E, out)
            out.append((H - y2[:, :, None] * W, None if b is None else torch.zeros_like(b)))
        return out, state


def sgd() -> SGD:
    return SGD()


def dfa(scale: float = 1.0) -> DFA:
    return DFA(scale)


def random_nn() -> RandomNN:
    return RandomNN()


def hebbian() -> Hebbian:
    return Hebbian()


def anti_hebbian() -> AntiHebbian:
    return AntiHebbian()


def oja() -> Oja:
    return Oja()
