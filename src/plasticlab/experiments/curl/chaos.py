"""curl-chaos (Ninou, Kadmon & Cayco-Gajic 2025, Fig. 3b, "Chaos"): what is the order parameter q's plateau above
the critical flip fraction made of? Runs start on the teacher, hidden flips only (k1 = int(α_h·M) inputs), full
batch, each layer held at its initial Frobenius norm; every step size η in ``etas`` covers the same time (the
length of ``epochs`` epochs at η = 0.1), so the step-size sweep compares the discrete map with its flow.

Per run, over its own last ``record`` epoch-equivalents: q of all weights (the authors' formula), q of the
function v = W2W1, the largest Lyapunov exponent of the function (output over the training inputs, after a
warm-up, per epoch-equivalent of η = 0.1), and a ``state`` from the tests in ``metrics.chaos.classify_state``
(docs/chaos.md defines them). Dynamics: ``_chaos_sim`` (moment form and invariant subspace, both exact).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from plasticlab.experiments.curl._common import TOTAL, shape_for
from plasticlab.metrics.chaos import QAccumulator, RecurrenceTracker, classify_state, lyapunov_exponent
from plasticlab.simulation import chaos as sim
from plasticlab.study import MAX_STEPS, POSITIVE, SIZE, Experiment, Interval, ListOf, Require, register


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
        errs = torch.stack(self.errors, 1).numpy()
        return dict(
            q=self.q.result(self.n, coef).q.numpy(),
            q_function=self.q_function.result().q.numpy(),
            period2_residual=two.numpy(),
            step_change=one.numpy(),
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
            new = bad.numpy() & np.isnan(diverged_at)
            diverged_at[new] = t
            frozen = torch.from_numpy(~np.isnan(diverged_at)).reshape(-1, 1, 1)
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
    epochs·0.1/η). ``reduce`` steps in the exact invariant subspace (``_chaos_sim.reduce``).
    """
    E = len(seeds)
    steps = {sim.steps_for(epochs, float(e)) for e in etas}
    if len(steps) != 1:
        raise ValueError(f"members of one batch must share their step count, got {sorted(steps)}")
    eta = float(etas[0])
    S, R, L, Wu = (sim.steps_for(x, eta) for x in (epochs, record, lyap_window, lyap_warmup))
    W1, W2, Sigma, vstar = sim.start(M, N, seeds, P=P, start=start, perturbation=perturbation, device=device)
    norms = sim.layer_norms(W1, W2)
    A, b, u = sim.reduce(W1, W2) if reduce else (W1, W2, torch.ones(E, N, dtype=W1.dtype, device=W1.device))
    k1 = [sim.k1_of(float(a), M) for a in alphas]
    d1 = sim.flip_diagonal(k1, M, device=device)
    lr = sim.as_lr(etas, device=device)

    def stepper(s):
        return sim.step(s, Sigma, vstar, d1, lr, norms)

    def measures(sep, ref):
        weights = torch.sqrt(sum(x.reshape(E, -1).pow(2).sum(1) for x in sep))
        return torch.stack([sim.function_separation(sep, ref, Sigma), weights], 1)

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
    late = lyap.diverged.numpy() & np.isnan(diverged_at)
    diverged_at[late] = S  # found inside the Lyapunov window (step not resolved further)
    w = window.result(M)
    return _rows(M, N, alphas, seeds, etas, k1, S, epochs, record, start, w, lyap.exponent.numpy(), diverged_at)


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


_COMMON = (
    "seeds",
    "epochs",
    "record",
    "lyap_window",
    "lyap_warmup",
    "P",
    "start",
    "perturbation",
    "d0",
    "renorm_every",
)


@register
class CurlChaos(Experiment):
    """q, the function's Lyapunov exponent and the state of hidden-flip curl descent started on the teacher."""

    name = "curl-chaos"
    summary = "Chaos order parameter q, Lyapunov exponent and run state of hidden-flip curl descent, per step size"
    budget_s = 180
    code_version = 2  # authors' start, k1 = int(α·M), η sweep, state column, reduced exact dynamics
    defaults = dict(
        cs=[0.3, 0.4, 0.5],  # q, λ vs α_h at these c (the paper's Fig. 3b)
        alphas=[round(0.05 * i, 2) for i in range(21)],
        c_grid=[0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0],  # q vs c at…
        c_alphas=[0.4, 0.5],  # …these α_h
        seeds=list(range(10)),
        etas=[0.1, 0.02, 0.01],  # per-step learning rates; each run covers the time of `epochs` at η = 0.1
        step_alphas=[round(0.05 * i, 2) for i in range(21)],  # α_h at the cs for every η after the first
        epochs=100000,  # epoch-equivalents of η = 0.1
        record=1000,  # window of q, q_function, the recurrence test and the error trace (epoch-equivalents)
        lyap_window=5000,  # window of the Lyapunov exponent, ending with the run (epoch-equivalents)
        lyap_warmup=1000,  # before it: the perturbed copy aligns with the leading direction, not counted
        P=250,
        start="authors",  # "authors": W1 = teacher, W2 = teacher + perturbation on every entry; "gaussian"
        perturbation=1e-10,
        d0=1e-8,
        renorm_every=10,  # steps between renormalisations of the Lyapunov separation
    )
    quick = dict(
        cs=[0.4],
        alphas=[0.05, 0.3, 0.6],
        c_grid=[0.2, 1.0],
        c_alphas=[0.5],
        seeds=[0],
        etas=[0.1, 0.02],
        step_alphas=[0.05, 0.3, 0.6],
        epochs=3000,
        record=300,
        lyap_window=1000,
        lyap_warmup=300,
    )
    choices = dict(start=list(sim.STARTS))

    constraints = dict(
        cs=ListOf(Interval(float, 1 / (TOTAL - 1), TOTAL - 1)),
        c_grid=ListOf(Interval(float, 1 / (TOTAL - 1), TOTAL - 1)),
        c_alphas=ListOf(Interval(float, 0, 1)),
        step_alphas=ListOf(Interval(float, 0, 1)),
        etas=ListOf(POSITIVE),
        record=Interval(int, 2, MAX_STEPS),
        lyap_window=Interval(int, 2, MAX_STEPS),
        lyap_warmup=Interval(int, 0, MAX_STEPS),
        P=SIZE,
        perturbation=POSITIVE,
        d0=POSITIVE,
        renorm_every=Interval(int, 1, MAX_STEPS),
    )
    relations = (
        Require(("record", "lyap_window"), lambda r, w: r <= w, "record <= lyap_window"),
        Require(
            ("lyap_window", "lyap_warmup", "epochs"),
            lambda w, u, e: w + u <= e,
            "lyap_window + lyap_warmup <= epochs",
        ),
        Require(
            ("P", "cs", "c_grid"),
            lambda P, cs, grid: max(shape_for(c)[0] for c in cs + grid) <= P,
            "P >= the largest M (M + N = 219) so that XᵀX is invertible",
        ),
    )

    def chunks(self, p):
        """One chunk per (c, η): every α_h and seed of it in one ensemble (members of one η share a step
        count; different η run different step counts, so they are separate batches). The first η runs the
        cs at every α_h and the q-vs-c grid; every later η (the step-size sweep) runs the cs at
        ``step_alphas``, so the sweep's cost can be cut without thinning the first η's grid."""
        common = {k: p[k] for k in _COMMON}
        out = []
        for i, eta in enumerate(p["etas"]):  # in the given order, so a sweep stopped early has the first η done
            alphas_at: dict[float, set] = {}
            for c in p["cs"]:
                alphas_at.setdefault(float(c), set()).update(p["alphas"] if i == 0 else p["step_alphas"])
            for c in p["c_grid"] if i == 0 else []:
                alphas_at.setdefault(float(c), set()).update(p["c_alphas"])
            out += [
                dict(c=c, M=shape_for(c)[0], N=shape_for(c)[1], eta=float(eta), alphas=sorted(a), **common)
                for c, a in alphas_at.items()
            ]
        return out

    def run_chunk(self, spec):
        """Run one (c, η) chunk (threads are the executor's: one per in-process chunk)."""
        pairs = [(a, s) for a in spec["alphas"] for s in spec["seeds"]]
        df = run_members(
            spec["M"],
            spec["N"],
            [a for a, _ in pairs],
            [s for _, s in pairs],
            [spec["eta"]] * len(pairs),
            **{k: spec[k] for k in _COMMON if k != "seeds"},
        )
        df.insert(0, "c", float(spec["c"]))
        return df

    def claims(self, df, p):
        """The paper's claims beside ours (see ``_chaos_report.claims``)."""
        from plasticlab.experiments.curl._chaos_report import claims

        return claims(df, p)

    def report(self, df, p, out):
        """report.md and figures, every number from ``df``."""
        from plasticlab.experiments.curl._chaos_report import write_report

        write_report(df, p, Path(out))
