"""The curl-chaos dynamics: linear student, full batch, hidden flips only, each layer held at its norm.

Two exact reductions make the paper's 1e5-epoch runs affordable; neither changes the dynamics.

- **Moment form.** Linear network, linear teacher, full batch: the mean update depends on the data only
  through Σ̂ = XᵀX/P, and the mean error signal is g = (v − v*) Σ̂ with v = W2W1 the end-to-end map and v*
  the teacher's. A step costs O(NM + M²) instead of O(PNM), and working with v − v* avoids cancelling O(1)
  outputs (an error that starts at 1e-20 stays resolved).
- **Invariant subspace.** With D2 = I, W2 moves along W1's column space (ΔW2 ∝ g W1ᵀ) and every column of W1
  moves along W2ᵀ (ΔW1 ∝ W2ᵀ g D1), and the norm rescaling only scales. So S = span(columns of W1, W2ᵀ), of
  dimension ≤ M + 1, holds the whole trajectory: with Q an orthonormal basis of S (N × (M+1)),
  W1 = Q A and W2 = b Qᵀ, and (A, b) follow the very same update with N replaced by M + 1 (2–3× cheaper at
  c = 0.3–0.5). Every quantity we report is either invariant under that fixed rotation (the function
  v = b A, norms, distances, temporal variances) or needs only u = Qᵀ1 (the sum of all weights, for q).
  Perturbations leaving S do not change the function to first order (the Jacobian is block-triangular), so
  the function's Lyapunov exponent is that of the reduced map.
"""

from __future__ import annotations

import torch

from plasticlab.simulation.curl import CurlConfig, flips, initial_state

STARTS = ("authors", "gaussian")


def start(
    M: int, N: int, seeds, *, P: int = 250, start: str = "authors", perturbation: float = 1e-10, device="cpu"
):
    """Initial weights and data moments per member: (W1, W2, Sigma, vstar), float64 on ``device``.

    The teacher is the curl engine's balanced teacher (‖W1‖_F = √N, ‖W2‖ = 1) on its data (P inputs,
    N(0, I/2)). ``start="authors"`` is the authors' fig-3b script: W1 = teacher, W2 = teacher + ``perturbation``
    added to every entry. ``"gaussian"`` adds an independent N(0, perturbation²) to every weight of both layers
    (this package's earlier start).
    """
    seeds_t = torch.as_tensor([int(s) for s in seeds], dtype=torch.int64)
    E, ones = len(seeds_t), torch.ones(len(seeds_t), dtype=torch.float64)

    def cfg(p: float) -> CurlConfig:
        return CurlConfig(
            M=M, N=N, activation="linear", P=P, B=P, init="teacher", perturbation=p, balanced_teacher=True
        ).validate()

    T1, T2, X, _, _, _, _ = initial_state(cfg(0.0), seeds_t, ones, torch.float64)
    if start == "authors":
        W1, W2 = T1.clone(), T2 + perturbation
    elif start == "gaussian":
        W1, W2 = initial_state(cfg(perturbation), seeds_t, ones, torch.float64)[:2]
    else:
        raise ValueError(f"start={start!r}; valid: {', '.join(STARTS)}")
    Sigma = X.transpose(1, 2) @ X / P
    vstar = T2 @ T1
    assert Sigma.shape == (E, M, M)
    return tuple(t.to(device).contiguous() for t in (W1, W2, Sigma, vstar))


def reduce(W1: torch.Tensor, W2: torch.Tensor):
    """(A, b, u): the state in an orthonormal basis Q of span(columns of W1, W2ᵀ), and u = Qᵀ1 (E, N').

    W1 = Q A, W2 = b Qᵀ to rounding. When N ≤ M + 1 the subspace is the whole space: Q = I, nothing changes.
    """
    E, N, M = W1.shape
    if N <= M + 1:
        return W1.clone(), W2.clone(), torch.ones(E, N, dtype=W1.dtype, device=W1.device)
    Q, _ = torch.linalg.qr(torch.cat([W1, W2.transpose(1, 2)], 2))  # (E, N, M+1), orthonormal columns
    A = Q.transpose(1, 2) @ W1
    b = W2 @ Q
    return A.contiguous(), b.contiguous(), Q.sum(1)


def step(state, Sigma, vstar, d1, lr, norms):
    """One full-batch hidden-flip update of (W1, W2) — or of the reduced (A, b), the same arithmetic.

    ``d1`` (E, 1, M) the ±1 input flips, ``lr`` (E, 1, 1) per-member step, ``norms`` (n1, n2) each (E, 1, 1).
    ΔW2 = −lr·g W1ᵀ and ΔW1 = −lr·W2ᵀ (g D1) from the pre-update weights (g = (v − v*) Σ̂, the descent
    direction of ½·mean error²), then each layer is rescaled to its norm.
    """
    W1, W2 = state
    g = torch.bmm(torch.bmm(W2, W1).sub_(vstar), Sigma).mul_(lr)
    W2n = W2 - torch.bmm(g, W1.transpose(1, 2))
    W1n = torch.baddbmm(W1, W2.transpose(1, 2), g * d1, alpha=-1.0)
    n1, n2 = norms
    W1n.mul_(n1 / torch.linalg.vector_norm(W1n, dim=(1, 2), keepdim=True))
    W2n.mul_(n2 / torch.linalg.vector_norm(W2n, dim=(1, 2), keepdim=True))
    return W1n, W2n


def flip_diagonal(k1, M: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """(E, 1, M): the first k1[e] inputs flipped (−1), as the engine's ``flips``."""
    return flips(k1, M, dtype).to(device)[:, None, :]


def k1_of(alpha: float, M: int) -> int:
    """The authors' k1 = int(α·M) (truncation, as their script; e.g. α = 0.05, M = 62 gives 3)."""
    return int(alpha * M)


def steps_for(epochs: int, eta: float) -> int:
    """Steps at η covering the time of ``epochs`` epochs at η = 0.1 (η·steps fixed)."""
    return int(round(epochs * 0.1 / eta))


def function_error(state, Sigma, vstar) -> torch.Tensor:
    """½·mean training error per member, exact from the moments: ½ (v − v*) Σ̂ (v − v*)ᵀ."""
    dv = torch.bmm(state[1], state[0]) - vstar
    return 0.5 * torch.bmm(torch.bmm(dv, Sigma), dv.transpose(1, 2)).reshape(-1)


def function_separation(sep, ref, Sigma) -> torch.Tensor:
    """RMS change of the network output over the training inputs caused by a weight separation, from the
    separation itself (no cancellation of O(1) outputs): δv = W2 δW1 + δW2 W1 + δW2 δW1, √(δv Σ̂ δvᵀ)."""
    (dW1, dW2), (V1, V2) = sep, ref
    dv = V2 @ dW1 + dW2 @ V1 + dW2 @ dW1
    return torch.bmm(torch.bmm(dv, Sigma), dv.transpose(1, 2)).reshape(-1).clamp_min(0).sqrt()


def weight_count(M: int, N: int) -> int:
    """Number of weights of the full network (W1 and W2), the denominator of q's means."""
    return N * M + N


def as_lr(etas, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Per-member step sizes as (E, 1, 1)."""
    return torch.as_tensor([float(e) for e in etas], dtype=dtype, device=device).reshape(-1, 1, 1)


def layer_norms(W1: torch.Tensor, W2: torch.Tensor):
    """(n1, n2), each (E, 1, 1): the norms each layer is held at (its initial Frobenius norm)."""
    return (
        torch.linalg.vector_norm(W1, dim=(1, 2), keepdim=True),
        torch.linalg.vector_norm(W2, dim=(1, 2), keepdim=True),
    )
