"""Curl-descent student–teacher engine (SPEC Part B), ensemble-batched over a leading dim E.

Network ``y = phi(W2 phi(W1 x))`` with W1 (E, N, M), W2 (E, 1, N). Conventions (SPEC B.2):
- e = ŷ − y; the output delta omits phi' (exact gradient for a linear output only);
- the hidden error is carried back through the *true* W2 (or a fixed DFA feedback matrix), never the
  flipped one: flips act on the update, not on the signal path;
- flips are on the presynaptic (column) index: ΔW2 ← ΔW2 D2 (hidden neurons), ΔW1 ← ΔW1 D1 (inputs);
- ``lr`` multiplies the batch-*mean* gradient, so with d = +1 the step is −lr·∂(½·mean e²)/∂W.

``curl_step`` is the pure, differentiable reference (torch.func works on it); ``simulate`` runs the same
arithmetic fused and in place.
"""
from __future__ import annotations

import torch

from plasticlab.errors import check_choice

ACTIVATIONS = ("linear", "tanh", "relu")


def _phi(a: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "tanh":
        return torch.tanh(a)
    if activation == "relu":
        return torch.relu(a)
    return a


def _dphi(a: torch.Tensor, h: torch.Tensor, activation: str) -> torch.Tensor | None:
    """phi'(a) (given h = phi(a)); None for linear so callers skip a multiply by ones."""
    if activation == "tanh":
        return 1.0 - h * h
    if activation == "relu":
        return (a > 0).to(a.dtype)
    return None


def curl_forward(W1: torch.Tensor, W2: torch.Tensor, x: torch.Tensor, activation: str) -> torch.Tensor:
    """ŷ (E, B, 1) for x (E, B, M)."""
    check_choice("activation", activation, ACTIVATIONS)
    h = _phi(x @ W1.transpose(-1, -2), activation)
    return _phi(h @ W2.transpose(-1, -2), activation)


def _per_member(v, like: torch.Tensor) -> torch.Tensor:
    """A float or (E,) tensor as (E, 1, 1) for broadcasting over a member's matrix."""
    v = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    return v.reshape(-1, 1, 1) if v.ndim else v


def curl_step(W1, W2, x, y, d1, d2, lr, activation, feedback=None, norms=None):
    """One rule-flipped update; returns (W1_new, W2_new), inputs untouched.

    d1 (E, M), d2 (E, N) are the ±1 diagonals of D1, D2 (all +1 for GD); ``feedback`` (E, N, 1) replaces
    W2ᵀ in the backward pass (DFA); ``norms`` = (n1, n2), each (E,), rescales each layer to that Frobenius
    norm after the update (None = unconstrained).
    """
    check_choice("activation", activation, ACTIVATIONS)
    B = x.shape[-2]
    a1 = x @ W1.transpose(-1, -2)                       # (E, B, N)
    h = _phi(a1, activation)
    e = _phi(h @ W2.transpose(-1, -2), activation) - y  # (E, B, 1); no phi' at the output
    e = e * (_per_member(lr, W1) / B)
    back = W2 if feedback is None else feedback.transpose(-1, -2)  # (E, 1, N)
    delta = e @ back                                    # (E, B, N)
    dp = _dphi(a1, h, activation)
    if dp is not None:
        delta = delta * dp
    W2n = W2 - (e.transpose(-1, -2) @ h) * d2[:, None, :]
    W1n = W1 - (delta.transpose(-1, -2) @ x) * d1[:, None, :]
    if norms is not None:
        n1, n2 = norms
        W1n = W1n * (_per_member(n1, W1) / torch.linalg.vector_norm(W1n, dim=(-2, -1), keepdim=True))
        W2n = W2n * (_per_member(n2, W2) / torch.linalg.vector_norm(W2n, dim=(-2, -1), keepdim=True))
    return W1n, W2n


def flips(k: torch.Tensor | list[int], n: int, dtype=torch.float64) -> torch.Tensor:
    """(E, n) diagonals with the first k[e] entries −1 (SPEC B.2)."""
    k = torch.as_tensor(k, dtype=torch.int64).reshape(-1, 1)
    return torch.where(torch.arange(n)[None, :] < k, -1.0, 1.0).to(dtype)
