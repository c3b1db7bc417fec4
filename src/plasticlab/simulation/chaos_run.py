"""The curl-chaos member loop: one ensemble of hidden-flip runs started on the teacher (each member its own
flip fraction, seed and step size), stepped by :mod:`plasticlab.simulation.chaos` and measured over its last
window: q of the weights and of the function, the recurrence test, the error trace and the function's largest
Lyapunov exponent; one row per member with its ``state`` (:func:`plasticlab.metrics.chaos.classify_state`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from plasticlab.metrics.chaos import QAccumulator, RecurrenceTracker, classify_state, lyapunov_exponent
from plasticlab.simulation import chaos as sim


class _Window:
    """What the last ``record`` steps of a run are measured by: q of the weights (in the reduced basis, see
    ``QAccumulator.result``), q of the function, the recurrence test and the error trace."""

    def __init__(self, Sigma, vstar, u, n_weights: int):
        self.Sigma, self.vstar, self.u, self.n = Sigma, vstar, u, n_weights
        self.q, self.q_function, self.recur = QAccumulator(), QAccumulator(), RecurrenceTracker()
        self.errors: list[torch.Tensor] = []

    def observe(self, s) -> None:
        E = s[0].shape[0]
        theta = torch.cat([s[0].reshape(E, -1), s[1].reshape(E, -1)], 1)
        self.q.update(theta)
        self.recur.update(theta)
        self.q_function.update(torch.bmm(s[1], s[0]).reshape(E, -1))
        self.errors.append(sim.function_error(s, self.Sigma, self.vstar))

    def result(self, M: int) -> dict:
        E, Nr = self.u.shape
        coef = torch.cat([self.u[:, :, None].expand(E, Nr, M).reshape(E, -1), self.u], 1)
        two, one = self.recur.result()
        errs = torch.stack(self.errors, 1).cpu().numpy()
        return dict(
            q=self.q.result(self.n, coef).q.cpu().numpy(),
            q_function=self.q_function.result().q.cpu().numpy(),
            period2_residual=two.cpu().numpy(),
            step_change=one.cpu().numpy(),
            errors=errs,
        )


def _burn(stepper, state, n_steps: int, diverged_at: np.ndarray, check_every: int = 100):
    """Advance ``n_steps``; a member whose weights go non-finite is frozen at its last checked finite state
    and its step recorded in ``diverged_at`` (a sum is non-finite iff some entry is: one cheap check)."""
    last = state
    for t in range(1, n_steps + 1):
        state = stepper(state)
        if t % check_every == 0 or t == n_steps:
            bad = ~torch.isfinite(state[0].sum(dim=(1, 2)) + state[1].sum(dim=(1, 2)))
            new = bad.cpu().numpy() & np.isnan(diverged_at)
            diverged_at[new] = t
            frozen = torch.from_numpy(~np.isnan(diverged_at)).reshape(-1, 1, 1).to(state[0].device)
            state = tuple(torch.where(frozen, o, n) for o, n in zip(last, state))
            last = state
    return state


def run_members(
    M,
    N,
    alphas,
    seeds,
    etas,
    *,
    epochs,
    record,
    lyap_window,
    lyap_warmup,
    start="authors",
    perturbation=1e-10,
    P=250,
    d0=1e-8,
    renorm_every=10,
    reduce=True,
    device="cpu",
) -> pd.DataFrame:
    """One ensemble: member i has flipped fraction alphas[i], seed seeds[i] and step etas[i]; one row each.

    ``epochs``, ``record``, ``lyap_window`` and ``lyap_warmup`` are in epoch-equivalents of η = 0.1 (a member at
    η takes epochs·0.1/η steps); members of one call must share that step count (same η, or the same
    epochs·0.1/η). ``reduce`` steps in the exact invariant subspace (``simulation.chaos.reduce``).
    """
    E = len(seeds)
    steps = {sim.steps_for(epochs, float(e)) for e in etas}
    if len(steps) != 1:
        raise ValueError(f"members of one batch must share their step count, got {sorted(steps)}")
    eta = float(etas[0])
    S, R, L, Wu = (sim.steps_for(x, eta) for x in (epochs, record, lyap_window, lyap_warmup))
    W1, W2, Sigma, vstar = sim.start(M, N, seeds, P=P, start=start, perturbation=perturbation, device=device)
    A, b, u = sim.reduce(W1, W2) if reduce else (W1, W2, torch.ones(E, N, dtype=W1.dtype, device=W1.device))
    k1 = [sim.k1_of(float(a), M) for a in alphas]
    stepper, measures = _dynamics(W1, W2, Sigma, vstar, k1, M, etas, device)
    window = _Window(Sigma, vstar, u, sim.weight_count(M, N))
    diverged_at = np.full(E, np.nan)
    with torch.no_grad():
        state = _burn(stepper, (A, b), S - L - Wu, diverged_at)
        seeds_t = torch.as_tensor([int(s) for s in seeds], dtype=torch.int64)
        lyap = lyapunov_exponent(
            stepper,
            state,
            L,
            seeds=seeds_t,
            d0=d0,
            renorm_every=renorm_every,
            warmup=Wu,
            dt=eta / 0.1,
            measure=measures,
            observe=lambda t, s: window.observe(s) if t > L - R else None,
        )
    late = lyap.diverged.cpu().numpy() & np.isnan(diverged_at)
    diverged_at[late] = S  # found inside the Lyapunov window (step not resolved further)
    w = window.result(M)
    return _rows(
        M, N, alphas, seeds, etas, k1, S, epochs, record, start, w, lyap.exponent.cpu().numpy(), diverged_at
    )


def _dynamics(W1, W2, Sigma, vstar, k1, M, etas, device):
    """The members' step (their flips, step sizes and layer norms) and the two sizes of a separation the
    Lyapunov exponents are measured with (the function's and the weights')."""
    norms = sim.layer_norms(W1, W2)
    d1 = sim.flip_diagonal(k1, M, device=device)
    lr = sim.as_lr(etas, device=device)
    E = W1.shape[0]

    def stepper(s):
        return sim.step(s, Sigma, vstar, d1, lr, norms)

    def measures(sep, ref):
        weights = torch.sqrt(sum(x.reshape(E, -1).pow(2).sum(1) for x in sep))
        return torch.stack([sim.function_separation(sep, ref, Sigma), weights], 1)

    return stepper, measures


def _rows(M, N, alphas, seeds, etas, k1, S, epochs, record, start, w, lyap, diverged_at) -> pd.DataFrame:
    """The per-member table, with NaN measurements for diverged members and the state of every run."""
    diverged = ~np.isnan(diverged_at)
    errs = w.pop("errors")
    eta = np.asarray([float(e) for e in etas])
    h = max(1, errs.shape[1] // 2)
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant error has zero range: ±inf / NaN is right
        # log ratio of the error's range over the window's first and second half, per epoch-equivalent:
        # > 0 a shrinking (damped) oscillation, ≈ 0 sustained
        swing = np.log(np.ptp(errs[:, :h], axis=1) / np.ptp(errs[:, h:], axis=1)) / (h * eta / 0.1)
    cols = dict(
        w,
        lyapunov=lyap[:, 0],
        lyapunov_weights=lyap[:, 1],
        train_error=errs[:, -1],
        error_min=errs.min(1),
        error_max=errs.max(1),
        error_swing_decay=swing,
    )
    cols = {k: np.where(diverged, np.nan, v) for k, v in cols.items()}
    state = classify_state(
        diverged, cols["q"], cols["q_function"], cols["period2_residual"], cols["step_change"], cols["lyapunov"]
    )
    return pd.DataFrame(
        dict(
            M=M,
            N=N,
            alpha_h=[float(a) for a in alphas],
            k1=k1,
            alpha_h_eff=[k / M for k in k1],
            seed=[int(s) for s in seeds],
            eta=eta,
            steps=S,
            **cols,
            state=state,
            diverged=diverged,
            diverged_at=diverged_at,
            epochs=epochs,
            record=record,
            start=start,
        )
    )
