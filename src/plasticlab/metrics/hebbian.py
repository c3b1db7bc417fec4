"""Hebbian alignment (Koplow et al. 2025): the cosine between the batch-mean learning signal G and the batch-mean
Hebbian direction H = (1/B) Σ_i h_b,i h_a,iᵀ.

Cosines are of *batch-mean matrices*, never means of per-sample cosines. Where G or H is zero (weights
collapsed under strong decay) the alignment is undefined and returned as NaN.
"""

from __future__ import annotations

import torch

_EPS = 1e-30


def hebbian_direction(pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """H = (1/B) Σ_i post_i pre_iᵀ for pre (..., B, in), post (..., B, out) -> (..., out, in)."""
    if pre.shape[-2] != post.shape[-2]:
        raise ValueError(f"pre and post disagree on the batch size: {pre.shape[-2]} vs {post.shape[-2]}")
    return post.transpose(-1, -2) @ pre / pre.shape[-2]


def cosine(a: torch.Tensor, b: torch.Tensor, dims=(-2, -1)) -> torch.Tensor:
    """Cosine over ``dims``; NaN where either side is (numerically) zero."""
    dot = (a * b).sum(dim=dims)
    na = a.pow(2).sum(dim=dims).sqrt()
    nb = b.pow(2).sum(dim=dims).sqrt()
    denom = na * nb
    out = dot / denom.clamp_min(_EPS)
    return torch.where(denom > _EPS, out, torch.full_like(out, float("nan")))


def hebbian_alignment(signal: torch.Tensor, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """Cosine between the learning signal (..., out, in) and the Hebbian direction of (pre, post).

    ``signal`` is the batch-mean learning signal in the *descent* convention (for SGD, ``-grad``), with
    weight decay excluded. Leading dimensions (ensemble, ...) broadcast. Returns shape (...,).
    """
    H = hebbian_direction(pre, post)
    if signal.shape[-2:] != H.shape[-2:]:
        raise ValueError(f"signal is {tuple(signal.shape[-2:])} (out, in) but pre/post give {tuple(H.shape[-2:])}")
    return cosine(signal, H)


def neuron_alignment(signal: torch.Tensor, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """Per-neuron (row-wise) alignment: cosine of each postsynaptic neuron's row of G and H -> (..., out)."""
    H = hebbian_direction(pre, post)
    return cosine(signal, H, dims=(-1,))
