"""A small transformer written from nn.Linear pieces, so a HebbianProbe sees every weight matrix.

Attention is by hand (q, k, v, o projections) instead of nn.MultiheadAttention, whose q/k/v live in one
in_proj matrix; ``norm="none"`` drops the LayerNorms.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class Attention(nn.Module):
    """Multi-head self-attention built from nn.Linear layers (so the probe can measure them)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        """x (B, T, d) -> (B, T, d): each head attends over the T tokens; ``o`` mixes the heads."""
        B, T, d = x.shape
        split = lambda t: t.view(B, T, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
        return self.o((att @ v).transpose(1, 2).reshape(B, T, d))


def _norm(kind: str, d: int) -> nn.Module:
    return nn.LayerNorm(d) if kind == "layernorm" else nn.Identity()


class Block(nn.Module):
    """A pre-norm transformer block: attention and an MLP, each with a residual connection."""

    def __init__(self, d: int, heads: int, d_ff: int, norm: str = "layernorm"):
        super().__init__()
        self.ln1, self.ln2 = _norm(norm, d), _norm(norm, d)
        self.attn = Attention(d, heads)
        self.ff = nn.ModuleDict(dict(fc1=nn.Linear(d, d_ff), fc2=nn.Linear(d_ff, d)))

    def forward(self, x):
        """x (B, T, d) -> (B, T, d): x + attention, then + the GELU MLP, each on the normed input."""
        x = x + self.attn(self.ln1(x))
        return x + self.ff["fc2"](torch.nn.functional.gelu(self.ff["fc1"](self.ln2(x))))


class TinyTransformer(nn.Module):
    """A small transformer regressor over a few tokens of features."""

    def __init__(self, tokens=8, features=4, d=32, heads=4, layers=2, d_ff=64, d_out=32, norm="layernorm"):
        super().__init__()
        self.tokens, self.features = tokens, features
        self.embed = nn.Linear(features, d)
        self.pos = nn.Parameter(torch.zeros(tokens, d))
        self.blocks = nn.ModuleList(Block(d, heads, d_ff, norm) for _ in range(layers))
        self.ln_f = _norm(norm, d)
        self.readout = nn.Linear(d, d_out)

    def forward(self, x):  # x (B, tokens·features)
        """x (B, tokens·features) -> (B, d_out): embedded tokens through the blocks, mean-pooled, read out."""
        h = self.embed(x.view(x.shape[0], self.tokens, self.features)) + self.pos
        for blk in self.blocks:
            h = blk(h)
        return self.readout(self.ln_f(h).mean(1))
