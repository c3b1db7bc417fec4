"""Chaos order parameters of weight dynamics (Ninou et al. 2025): the fluctuation ratio q and the largest Lyapunov
exponent, both per ensemble member.

q = (mean over weights of the temporal variance) / (variance across weights of the time-averaged weights).
A run that has settled on a fixed point has q at the rounding floor (~1e-28 in float64); a chaotic run keeps
O(1) fluctuations, q ~ 1e-3…1. Both variances are population variances (ddof = 0).

The Lyapunov estimator is Benettin's: a reference and a perturbed copy advance with the same ensemble step,
the separation is measured and renormalised to d0 every ``renorm_every`` steps, and the exponent is the mean
log growth per unit of ``dt`` (``dt = 1`` gives it per step; for a full-batch simulation one step is one
epoch). The initial perturbation direction is random (per-member seeding).

Manifolds of fixed points: along the manifold the exact exponent is 0, and a finite window in the full
weight norm can even come out slightly *positive*, because a non-normal Jacobian lets the tangent part of a
unit perturbation exceed 1 (transient growth, ~log(condition number)/window). Pass ``measure`` — a seminorm
of the separation that vanishes on the neutral directions, e.g. the change of the network function — and the
growth is counted only in what the dynamics can change: at a stable manifold it then decays at the
transverse rate (clearly negative), while on a chaotic attractor the leading Lyapunov vector has a
non-zero measure and the same positive exponent is found. Separations are still renormalised in the full
norm (to stay linear); the seminorm's growth factors are accumulated between renormalisations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, cast

import numpy as np
import torch

from plasticlab import seeding

State = tuple[torch.Tensor, ...]


class QResult(NamedTuple):
    """The q order parameter per member and whether the member diverged."""

    q: torch.Tensor  # (E,) NaN where diverged or where the weights are all equal (ratio undefined)
    diverged: torch.Tensor  # (E,) bool: some weight was NaN/inf in the window


def _as_tensor(traj) -> torch.Tensor:
    t = traj if isinstance(traj, torch.Tensor) else torch.as_tensor(np.asarray(traj))
    return t.to(torch.float64)


def _ratio(temporal_var_mean: torch.Tensor, across_var: torch.Tensor, diverged: torch.Tensor) -> QResult:
    q = temporal_var_mean / across_var
    undefined = diverged | (across_var <= 0) | ~torch.isfinite(q)
    q = torch.where(undefined, torch.full_like(q, float("nan")), q)
    return QResult(q, diverged)


def q_order_parameter(traj) -> QResult:
    """q per member from a trajectory of weights, (E, T, n) or (T, n) (time on the second-to-last axis).

    Two-pass variances, so a converged run's ~1e-15 jitter is not swamped by cancellation.
    """
    t = _as_tensor(traj)
    single = t.ndim == 2
    if single:
        t = t[None]
    if t.ndim != 3:
        raise ValueError(f"traj must be (E, T, n) or (T, n), got shape {tuple(t.shape)}")
    if t.shape[1] < 2 or t.shape[2] < 2:
        raise ValueError(f"need at least 2 time points and 2 weights, got T={t.shape[1]}, n={t.shape[2]}")
    diverged = ~torch.isfinite(t).all(dim=2).all(dim=1)
    t = torch.where(diverged[:, None, None], torch.zeros_like(t), t)
    temporal = t.var(dim=1, unbiased=False).mean(dim=1)
    across = t.mean(dim=1).var(dim=1, unbiased=False)
    res = _ratio(temporal, across, diverged)
    return QResult(res.q[0], res.diverged[0]) if single else res


class QAccumulator:
    """Streaming q: feed one (E, n) weight snapshot per recorded time; equals ``q_order_parameter`` of the
    stacked snapshots without storing them (Welford per weight, so converged runs keep their precision)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None
        self.diverged: torch.Tensor | None = None

    def update(self, w: torch.Tensor) -> None:
        """Add one (E, n) snapshot; a member whose weights went non-finite stays at its mean from then on."""
        w = w.to(torch.float64)
        bad = ~torch.isfinite(w).all(dim=1)
        if self.mean is None:
            self.mean = torch.zeros_like(w)
            self.m2 = torch.zeros_like(w)
            self.diverged = bad.clone()
        assert self.mean is not None and self.m2 is not None and self.diverged is not None
        self.diverged |= bad
        w = torch.where(self.diverged[:, None], self.mean, w)
        self.count += 1
        delta = w - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (w - self.mean)

    def result(self, n: int | None = None, coef: torch.Tensor | None = None) -> QResult:
        """q of the fed snapshots. For snapshots in rotated coordinates w' = Rᵀw of the n true weights (a fixed
        orthonormal R, e.g. a reduced basis), pass n and ``coef`` (E, n') with Σ_i w_i = coef · w': temporal
        variances and squared norms are rotation-invariant, so only the mean of the weights needs ``coef``."""
        if self.count < 2:
            raise ValueError(f"q needs at least 2 snapshots, got {self.count}")
        assert self.mean is not None and self.m2 is not None and self.diverged is not None
        if n is None or coef is None:
            temporal = (self.m2 / self.count).mean(dim=1)
            across = self.mean.var(dim=1, unbiased=False)
        else:
            temporal = (self.m2 / self.count).sum(dim=1) / n
            mean_of_weights = (self.mean * coef).sum(dim=1) / n
            across = self.mean.pow(2).sum(dim=1) / n - mean_of_weights.pow(2)
        return _ratio(temporal, across, self.diverged.clone())


class LyapunovResult(NamedTuple):
    """Lyapunov exponents per member, the final reference state and divergence flags."""

    exponent: torch.Tensor  # (E,) — or (E, k) for k measures — mean log growth per unit dt; NaN if diverged
    state: torch.Tensor | State  # the reference state after n_steps (diverged members frozen)
    diverged: torch.Tensor  # (E,) bool


def _joint_norm(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(cast(torch.Tensor, sum(p.reshape(p.shape[0], -1).pow(2).sum(dim=1) for p in parts)))


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def _nonfinite(tensors: State, size: torch.Tensor) -> torch.Tensor:
    """(E,) True where any entry is non-finite: checked on sums, which are non-finite iff an entry is (or they
    overflowed, which is divergence too)."""
    E = size.shape[0]
    return ~torch.isfinite(
        sum(x.reshape(E, -1).sum(1).to(torch.float64) for x in tensors) + size.reshape(E, -1).sum(1)
    )


def _restored(diverged: torch.Tensor, old: State, new: State) -> State:
    """``new`` with the diverged members put back to ``old`` (finite by construction)."""
    return tuple(torch.where(_bcast(diverged, n), o, n) for o, n in zip(old, new))


def _initial_separation(ref: State, seeds, key: int, d0: float) -> list[torch.Tensor]:
    """A random direction per member (from its seed), scaled to joint length ``d0``."""
    direction = [seeding.normal(seeds, key + i, tuple(x.shape[1:]), dtype=x.dtype) for i, x in enumerate(ref)]
    scale = d0 / _joint_norm(direction)
    return [_bcast(scale, u) * u for u in direction]


def _tuple_step(step_fn: Callable[[State], State], single: bool) -> Callable[[State], State]:
    """``step_fn`` on a tuple of tensors, whether it takes one tensor (``single``) or a tuple."""

    def step(s: State) -> State:
        if single:  # step_fn takes and returns the one tensor it was given
            return (cast(Callable[[torch.Tensor], torch.Tensor], step_fn)(s[0]),)
        return tuple(step_fn(s))

    return step


def _renormalise(
    sep: list[torch.Tensor], last_sep: list[torch.Tensor], size0: torch.Tensor, size1: torch.Tensor, d0: float
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The separation scaled back to length ``d0`` and its measured size scaled alike (seminorms scale)."""
    dist = _joint_norm(sep).to(torch.float64)
    collapsed = dist <= 0  # both copies landed on the same float: keep the old direction
    sep = [torch.where(_bcast(collapsed, s), ls, s) for s, ls in zip(sep, last_sep)]
    dist = torch.where(collapsed, torch.full_like(dist, d0), dist)
    ratio = d0 / dist
    new_sep = [s * _bcast(ratio.to(s.dtype), s) for s in sep]
    return new_sep, torch.where(_bcast(collapsed, size1), size0, size1 * _bcast(ratio, size1))


def lyapunov_exponent(
    step_fn: Callable[[State], State],
    state,
    n_steps: int,
    *,
    seeds,
    key: int = seeding.key_of("lyapunov perturbation"),
    d0: float = 1e-8,
    renorm_every: int = 10,
    dt: float = 1.0,
    warmup: int = 0,
    observe: Callable[[int, State], None] | None = None,
    measure: Callable[[State, State], torch.Tensor] | None = None,
) -> LyapunovResult:
    """Largest Lyapunov exponent of ``state -> step_fn(state)``, one per ensemble member.

    ``state``: a tensor or tuple of tensors with leading ensemble dim E; ``step_fn`` is called on the reference
    and on the perturbed copy alike. ``seeds`` (E,) draw the initial direction. ``observe(t, ref)`` runs after
    every counted reference step. ``measure(separation, ref)`` sizes a separation ((E,), or (E, k) seminorms
    for k exponents; default the joint norm). ``warmup`` steps run first, renormalised but not counted: a
    random direction needs time to turn into the leading Lyapunov vector, and counting that biases a window
    of T steps by about −log(dim)/(2T)."""
    single = isinstance(state, torch.Tensor)
    ref: State = (state,) if single else tuple(state)
    step = _tuple_step(step_fn, single)
    if n_steps < 1 or renorm_every < 1 or warmup < 0:
        raise ValueError(f"need n_steps, renorm_every >= 1, warmup >= 0: {n_steps}, {renorm_every}, {warmup}")
    size = (lambda sep, r: _joint_norm(sep)) if measure is None else measure
    last_sep = _initial_separation(ref, seeds, key, d0)
    pert = tuple(x + u for x, u in zip(ref, last_sep))
    diverged = torch.zeros(ref[0].shape[0], dtype=torch.bool)
    size0 = size(tuple(last_sep), ref).to(torch.float64)
    log_sum = torch.zeros_like(size0)
    done, total = -warmup, n_steps  # done < 0: warm-up steps, not counted
    while done < total:
        counting = done >= 0
        start_ref, start_pert = ref, pert  # finite by construction: diverged members are restored to it
        # blocks end at the warm-up boundary, so the counted window is exactly n_steps
        for _ in range(min(renorm_every, total - done) if counting else min(renorm_every, -done)):
            ref, pert = step(ref), step(pert)
            done += 1
            if observe is not None and done > 0:
                observe(done, ref)
        sep = [p - r for p, r in zip(pert, ref)]
        size1 = size(tuple(sep), ref).to(torch.float64)
        # checked once per block: a sum is non-finite iff some entry is (or it overflowed: divergence too)
        bad = _nonfinite(ref + pert, size1)
        if bad.any():
            diverged |= bad
            ref, pert = _restored(diverged, start_ref, ref), _restored(diverged, start_pert, pert)
            sep = [p - r for p, r in zip(pert, ref)]
            size1 = torch.where(_bcast(diverged, size1), size0, size1)
        growth = torch.log(size1.clamp_min(1e-300) / size0.clamp_min(1e-300))
        if counting:
            log_sum = log_sum + torch.where(_bcast(diverged, growth), torch.zeros_like(growth), growth)
        last_sep, size0 = _renormalise(sep, last_sep, size0, size1, d0)
        pert = tuple(r + s for r, s in zip(ref, last_sep))
    exponent = log_sum / (n_steps * dt)
    exponent = torch.where(_bcast(diverged, exponent), torch.full_like(exponent, float("nan")), exponent)
    return LyapunovResult(exponent, ref[0] if single else ref, diverged)


class RecurrenceTracker:
    """Streaming period-1/period-2 test: feed one (E, n) state per step; keeps, per member, the largest
    relative two-step change max_t ‖θ(t) − θ(t−2)‖/‖θ(t)‖ and the smallest one-step change
    min_t ‖θ(t) − θ(t−1)‖/‖θ(t)‖ over the fed steps. A period-2 orbit has the first at rounding level while the
    second stays finite; a fixed point has both at rounding level."""

    def __init__(self) -> None:
        self.prev: list[torch.Tensor] = []
        self.two_step: torch.Tensor | None = None
        self.one_step: torch.Tensor | None = None

    def update(self, theta: torch.Tensor) -> None:
        """Add one (E, n) state and update each member's two-step maximum and one-step minimum."""
        theta = theta.to(torch.float64)
        size = theta.norm(dim=1).clamp_min(1e-300)
        if self.prev:
            one = (theta - self.prev[-1]).norm(dim=1) / size
            self.one_step = one if self.one_step is None else torch.minimum(self.one_step, one)
        if len(self.prev) == 2:
            two = (theta - self.prev[0]).norm(dim=1) / size
            self.two_step = two if self.two_step is None else torch.maximum(self.two_step, two)
        self.prev = (self.prev + [theta.clone()])[-2:]

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(max two-step change, min one-step change), each (E,); needs at least 3 states."""
        if self.two_step is None or self.one_step is None:
            raise ValueError("the recurrence test needs at least 3 states")
        return self.two_step, self.one_step


# -- the state of a run, from its own measurement window (definitions and their reasons: docs/chaos.md) ---
STATES = ("converged", "period-2", "drift", "irregular", "oscillating", "diverged")
Q_CONVERGED = 1e-12  # q of the weights: fixed points sit at the rounding floor (~1e-28), anything moving far above
PERIOD2_RATIO = 1e-3  # two-step change ≤ this × one-step change: the state returns to itself every 2 steps
PERIOD2_MIN_STEP = 1e-6  # …while every single step still moves the state by more than this (not a fixed point)
Q_FUNCTION_STATIONARY = 1e-12  # q of W2W1: the function is stationary to this (relative) level
# per epoch-equivalent of η = 0.1: above every run a structural test calls regular (converged ≤ 6e-5, drift and
# period-2 < 0 in the committed curl-chaos run); its window-length check (docs/chaos.md) shows λ ≈ 7e-4 is real
LAMBDA_POSITIVE = 1e-4


def classify_state(diverged, q, q_function, two_step, one_step, lyapunov) -> np.ndarray:
    """Per-run state from the window's numbers (arrays of equal length), first matching test wins:

    diverged (non-finite weights) → converged (q < Q_CONVERGED) → period-2 (two_step ≤ PERIOD2_RATIO·one_step
    and one_step > PERIOD2_MIN_STEP) → drift (q_function < Q_FUNCTION_STATIONARY: the function is stationary while
    the weights move) → irregular (the function fluctuates and λ > LAMBDA_POSITIVE) → oscillating (the
    function still moves but λ ≤ LAMBDA_POSITIVE: periodic, quasi-periodic or a damped transient, not chaos).
    """
    arrs = [np.asarray(a, dtype=float) for a in (q, q_function, two_step, one_step, lyapunov)]
    q, qf, two, one, lam = arrs
    bad = np.asarray(diverged, dtype=bool) | ~np.isfinite(q)
    conds = [
        bad,
        q < Q_CONVERGED,
        (two <= PERIOD2_RATIO * one) & (one > PERIOD2_MIN_STEP),
        qf < Q_FUNCTION_STATIONARY,
        lam > LAMBDA_POSITIVE,
    ]
    return np.select(conds, ["diverged", "converged", "period-2", "drift", "irregular"], "oscillating")
