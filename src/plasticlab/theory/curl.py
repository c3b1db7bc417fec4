"""Curl-descent stability theory for the linear two-layer network (Ninou et al. 2025).

Rule flips turn the gradient flow dθ/dt = −∇E into dθ/dt = −P ∇E (P a diagonal ±1 mask). Fixed points are
unchanged; at a zero-error point of y = W2 W1 x the non-zero Jacobian eigenvalues are those of −Σ A with

    A = ‖W2‖² D1 + W1ᵀ D2 W1        (M × M, symmetric),

so the solution manifold is stable iff A is positive definite. Its large-N threshold (W1 entries of variance
1/M, ‖W2‖² = 1) is given by parametric closed forms which :func:`critical_flip_fraction` inverts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from plasticlab.errors import PlasticlabError, check_choice

LAYERS = ("hidden", "readout")
HIDDEN_STABLE_C = 0.25  # c ≤ 1/4: D1 + W1ᵀW1 stays PD even with every input flipped
HIDDEN_UNSTABLE_C = 2.0 / 3.0  # c ≥ 2/3: a vanishing fraction of flipped inputs already destabilises
_BISECT_STEPS = 200  # enough to reach float64 resolution from an interval of width 1, even near 0


# -- large-N thresholds ------------------------------------------------------------------------------
def _hidden_c(u):
    return u * (u * u + 1) / (u + 2)


def _hidden_alpha(u):
    return (2 * u**4 - 2 * u**3 - u * u + 1) / (2 * u * u * (u * u + 1))


def _readout_c(s):
    # written in s = 1 − t so that c → ∞ (t → 1) keeps full relative precision in s
    return (1 - s) ** 2 / (s * (4 - 5 * s + 2 * s * s))


def _readout_alpha(s):
    return s * (1 + (1 - s) ** 2) / (2 * (4 - 5 * s + 2 * s * s))


def _bisect(f, target, lo, hi, increasing: bool):
    """Vectorised bisection for f(x) = target on [lo, hi]; f monotone."""
    lo = np.full_like(target, lo)
    hi = np.full_like(target, hi)
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        below = (f(mid) < target) if increasing else (f(mid) > target)
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def critical_flip_fraction(c, layer: str):
    """Large-N critical flipped fraction α* at aspect ratio c = M/N (Ninou et al. 2025).

    ``layer="hidden"``: flips over the inputs of W1 (α_h, D2 = I); ``layer="readout"``: flips over the
    hidden neurons feeding W2 (α_r, D1 = I). The manifold is stable for α < α*. Scalar in → float out,
    array in → array of the same shape.
    """
    check_choice("layer for critical_flip_fraction", layer, LAYERS)
    arr = np.asarray(c, dtype=float)
    if np.any(~(arr > 0)):
        bad = arr[~(arr > 0)].ravel()[0]
        raise PlasticlabError(f"c = M/N must be > 0, got {bad!r}")
    flat = arr.ravel()
    if layer == "hidden":
        out = np.where(flat <= HIDDEN_STABLE_C, 1.0, 0.0)
        mid = (flat > HIDDEN_STABLE_C) & (flat < HIDDEN_UNSTABLE_C)
        if mid.any():
            u = _bisect(_hidden_c, flat[mid], 0.5, 1.0, increasing=True)
            out[mid] = _hidden_alpha(u)
    else:
        out = np.zeros_like(flat)
        fin = np.isfinite(flat)
        if fin.any():
            s = _bisect(_readout_c, flat[fin], 0.0, 1.0, increasing=False)
            out[fin] = _readout_alpha(s)
    out = out.reshape(arr.shape)
    return float(out) if out.ndim == 0 else out


def hidden_curve(u):
    """The parametric hidden boundary (c(u), α_h*(u)) for u ∈ [½, 1]."""
    u = np.asarray(u, dtype=float)
    return _hidden_c(u), _hidden_alpha(u)


def readout_curve(t):
    """The parametric readout boundary (c(t), α_r*(t)) for t ∈ (0, 1)."""
    s = 1 - np.asarray(t, dtype=float)
    return _readout_c(s), _readout_alpha(s)


# -- spectra at a solution point ---------------------------------------------------------------------
def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


def _diag(D, batch_ndim: int, name: str, size: int) -> np.ndarray:
    """A ±1 flip given either as its diagonal (..., n) or as a matrix (..., n, n) -> diagonal."""
    D = _np(D)
    if D.ndim == batch_ndim + 2:
        D = np.diagonal(D, axis1=-2, axis2=-1)
    if D.shape[-1] != size:
        raise PlasticlabError(f"{name} has {D.shape[-1]} entries but the layer has {size} neurons")
    return D


@dataclass
class ManifoldSpectrum:
    """Spectra at a zero-error point; arrays carry any leading batch dims of the inputs."""

    jacobian: np.ndarray  # the M non-zero Jacobian eigenvalues −eig(Σ A), ascending
    a_eigs: np.ndarray  # eigenvalues of A, ascending

    @property
    def min_eig(self):
        """Smallest eigenvalue of A: the manifold is stable iff it is > 0."""
        m = self.a_eigs[..., 0]
        return float(m) if np.ndim(m) == 0 else m

    @property
    def stable(self):
        """Whether the smallest eigenvalue of A is > 0 (a bool, or an array over the batch dims)."""
        s = self.a_eigs[..., 0] > 0
        return bool(s) if np.ndim(s) == 0 else s


def stability_matrix(W1, W2, D1, D2) -> np.ndarray:
    """A = ‖W2‖² D1 + W1ᵀ D2 W1 for W1 (..., N, M), W2 (..., 1, N) or (..., N); D's as diagonals or
    matrices."""
    W1 = _np(W1)
    b = W1.ndim - 2
    N, M = W1.shape[-2:]
    W2 = _np(W2).reshape(*W1.shape[:-2], -1)
    if W2.shape[-1] != N:
        raise PlasticlabError(f"W2 has {W2.shape[-1]} entries but W1 has {N} rows (hidden neurons)")
    d1 = _diag(D1, b, "D1", M)
    d2 = _diag(D2, b, "D2", N)
    w2sq = (W2**2).sum(-1)
    A = np.swapaxes(W1, -1, -2) @ (d2[..., :, None] * W1)
    A = A + w2sq[..., None, None] * np.eye(M) * d1[..., None, :]
    return 0.5 * (A + np.swapaxes(A, -1, -2))  # exact symmetry for eigvalsh


def _sqrt_cov(Sigma, M: int) -> np.ndarray | float:
    if Sigma is None:
        return np.sqrt(0.5)  # Ninou et al. 2025: x ~ N(0, I/2)
    S = _np(Sigma)
    if S.ndim == 0:
        if not S > 0:
            raise PlasticlabError(f"Sigma must be positive, got {float(S)!r}")
        return float(np.sqrt(S))
    if S.shape[-2:] != (M, M):
        raise PlasticlabError(f"Sigma must be {M}×{M} (the input covariance), got shape {S.shape}")
    S = 0.5 * (S + np.swapaxes(S, -1, -2))
    s, Q = np.linalg.eigh(S)
    if np.any(s <= 0):
        raise PlasticlabError(f"Sigma must be positive definite; its smallest eigenvalue is {s.min():.3g}")
    return (Q * np.sqrt(s)[..., None, :]) @ np.swapaxes(Q, -1, -2)


def manifold_spectrum(W1, W2, D1, D2, Sigma=None) -> ManifoldSpectrum:
    """The non-zero Jacobian eigenvalues −eig(Σ A) at a zero-error point, and eig(A).

    Σ A is similar to the symmetric Σ^{1/2} A Σ^{1/2}, so the eigenvalues are real. ``Sigma=None`` is the
    the papers' input covariance I/2; a scalar means that multiple of I.
    """
    A = stability_matrix(W1, W2, D1, D2)
    M = A.shape[-1]
    R = _sqrt_cov(Sigma, M)
    B = R * A * R if np.ndim(R) == 0 else R @ A @ R
    jac = -np.linalg.eigvalsh(0.5 * (B + np.swapaxes(B, -1, -2)))[..., ::-1]
    return ManifoldSpectrum(jacobian=np.ascontiguousarray(jac), a_eigs=np.linalg.eigvalsh(A))


def flip_diagonal(n: int, k) -> np.ndarray:
    """±1 diagonal(s) with the first k entries −1; k an int or a sequence (-> (len(k), n))."""
    k = np.asarray(k)
    if np.any(k < 0) or np.any(k > n):
        raise PlasticlabError(f"number of flipped neurons must be in [0, {n}], got {k.tolist()}")
    return np.where(np.arange(n) < k[..., None], -1.0, 1.0)


def balanced_point(M: int, N: int, seeds: Sequence[int]):
    """W1 (E, N, M) with entries N(0, 1/M) and W2 (E, N) with ‖W2‖ = 1, one draw per seed."""
    import torch

    from plasticlab import seeding

    W1 = seeding.normal(seeds, seeding.key_of("theory.curl", "W1"), (N, M)) / np.sqrt(M)
    W2 = seeding.normal(seeds, seeding.key_of("theory.curl", "W2"), (N,))
    W2 = W2 / torch.linalg.vector_norm(W2, dim=-1, keepdim=True)
    return W1.numpy(), W2.numpy()


def sample_manifold_spectrum(M: int, N: int, k_hidden=0, k_readout=0, seed=0, Sigma=None) -> ManifoldSpectrum:
    """Spectra at a sampled balanced point with the first ``k_hidden`` inputs and ``k_readout`` hidden
    neurons flipped.

    ``seed``, ``k_hidden`` and ``k_readout`` may be sequences; they broadcast to a leading batch dim E
    (the point of member e depends on seed[e] only). ``.min_eig`` gives the smallest eigenvalue of A.
    """
    for name, v in (("M", M), ("N", N)):
        if int(v) != v or v < 1:
            raise PlasticlabError(f"{name} must be a positive integer, got {v!r}")
    scalar = all(np.ndim(x) == 0 for x in (seed, k_hidden, k_readout))
    seeds, kh, kr = np.broadcast_arrays(np.atleast_1d(seed), np.atleast_1d(k_hidden), np.atleast_1d(k_readout))
    uniq, inv = np.unique(seeds, return_inverse=True)
    W1, W2 = balanced_point(int(M), int(N), uniq.tolist())
    spec = manifold_spectrum(W1[inv], W2[inv], flip_diagonal(M, kh), flip_diagonal(N, kr), Sigma)
    if scalar:
        spec = ManifoldSpectrum(jacobian=spec.jacobian[0], a_eigs=spec.a_eigs[0])
    return spec


# -- the flow itself (for Jacobians by autodiff) ----------------------------------------------------
def linear_flow(W1, W2, d1, d2, v_star, Sigma):
    """dθ/dt of rule-flipped gradient descent on E = ½ (v − v*) Σ (v − v*)ᵀ, v = W2 W1 (torch).

    Descent direction with the flips on the presynaptic (column) index, as in Ninou et al. 2025 averaged over
    x ~ N(0, Σ): dW1 = −W2ᵀ δΣ D1, dW2 = −δΣ W1ᵀ D2 with δ = W2 W1 − v*.
    """
    g = (W2 @ W1 - v_star) @ Sigma  # (1, M)
    return -(W2.transpose(-1, -2) @ g) * d1, -(g @ W1.transpose(-1, -2)) * d2


# -- finite-N thresholds: min eig of A as flips are added -------------------------------------------
class FlipPath:
    """λ_min(A) at a balanced point (‖W2‖² = 1) as a function of the number k of flipped neurons.

    Adding a flip subtracts a PSD rank-one term from A, so λ_min(A) is non-increasing in k and the
    first unstable k can be found by bisection. For readout flips with M > N the N×N form S D2 S
    (S = (W1 W1ᵀ)^{1/2}, same non-zero spectrum as W1ᵀ D2 W1) keeps the cost at N³.
    """

    def __init__(self, W1, layer: str):
        check_choice("layer for FlipPath", layer, LAYERS)
        self.layer = layer
        W1 = _np(W1)
        self.N, self.M = W1.shape[-2:]
        self.dim = self.M if layer == "hidden" else self.N
        if layer == "hidden":
            self.G = np.swapaxes(W1, -1, -2) @ W1
        elif self.M <= self.N:
            self.W1 = W1
        else:
            s, Q = np.linalg.eigh(W1 @ np.swapaxes(W1, -1, -2))
            self.S = (Q * np.sqrt(np.clip(s, 0, None))[..., None, :]) @ np.swapaxes(Q, -1, -2)

    def min_eig(self, k, members=None) -> np.ndarray:
        """λ_min(A) with the first k[e] neurons flipped, for the members ``members`` (default all)."""
        sel = slice(None) if members is None else np.asarray(members)
        d = flip_diagonal(self.dim, np.asarray(k))
        if self.layer == "hidden":
            A = self.G[sel] + d[..., None, :] * np.eye(self.M)
            return np.linalg.eigvalsh(A)[..., 0]
        if self.M <= self.N:
            W = self.W1[sel]
            A = np.swapaxes(W, -1, -2) @ (d[..., :, None] * W) + np.eye(self.M)
            return np.linalg.eigvalsh(A)[..., 0]
        S = self.S[sel]
        lam = np.linalg.eigvalsh(S @ (d[..., :, None] * S))[..., 0]
        return 1.0 + np.minimum(lam, 0.0)  # M > N: W1ᵀ D2 W1 also has M − N zero eigenvalues

    def threshold(self, k_grid: Sequence[int] | np.ndarray):
        """First unstable k per member (dim + 1 if A stays PD with every neuron flipped), and λ_min on
        ``k_grid`` (E, K). The grid is evaluated for all members, then each bracket is bisected."""
        grid = np.unique(np.append(np.asarray(k_grid, dtype=int), self.dim))
        lam = np.stack([self.min_eig(np.full(self._E, k)) for k in grid], axis=-1)
        unstable = lam <= 0
        crossed = unstable.any(-1)
        first = np.where(crossed, unstable.argmax(-1), len(grid) - 1)
        hi = np.where(crossed, grid[first], self.dim + 1)
        lo = np.where(first > 0, grid[np.maximum(first - 1, 0)], 0)  # k = 0 is always stable (A = I + G)
        lo = np.where(crossed, lo, self.dim)
        while True:
            act = np.flatnonzero(hi - lo > 1)
            if act.size == 0:
                break
            mid = (lo[act] + hi[act]) // 2
            bad = self.min_eig(mid, act) <= 0
            hi[act] = np.where(bad, mid, hi[act])
            lo[act] = np.where(bad, lo[act], mid)
        return hi, grid, lam

    @property
    def _E(self) -> int:
        arr = self.G if self.layer == "hidden" else (self.W1 if self.M <= self.N else self.S)
        return arr.shape[0]
