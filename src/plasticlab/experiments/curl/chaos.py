"""curl-chaos (Ninou, Kadmon & Cayco-Gajic 2025, Fig. 3b, "Chaos"): what is the order parameter q's plateau above
the critical flip fraction made of? Runs start on the teacher, hidden flips only (k1 = int(α_h·M) inputs), full
batch, each layer held at its initial Frobenius norm; every step size η in ``etas`` covers the same time (the
length of ``epochs`` epochs at η = 0.1), so the step-size sweep compares the discrete map with its flow.

Per run, over its own last ``record`` epoch-equivalents: q of all weights (the authors' formula), q of the
function v = W2W1, the largest Lyapunov exponent of the function (output over the training inputs, after a
warm-up, per epoch-equivalent of η = 0.1), and a ``state`` from the tests in ``metrics.chaos.classify_state``
(docs/chaos.md defines them). Dynamics and the member loop: ``simulation.chaos`` and ``simulation.chaos_run``.
Claims re-derive the state from the stored columns, so a report always applies today's tests.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from plasticlab.experiments.curl._common import TOTAL, nkc, shape_for
from plasticlab.metrics.chaos import (
    LAMBDA_POSITIVE,
    STATES,
    classify_state,
)
from plasticlab.simulation import chaos as sim
from plasticlab.simulation.chaos_run import run_members
from plasticlab.study import (
    MAX_STEPS,
    POSITIVE,
    SIZE,
    Experiment,
    Figure,
    Interval,
    ListOf,
    Require,
    RunContext,
    Table,
    register,
    shared_fields,
)
from plasticlab.study.claims import AllCells, Claim, fraction


@dataclass
class Spec:
    """One (c, η): every α_h × seed of it in one ensemble (one chunk)."""

    c: float
    M: int
    N: int
    eta: float
    alphas: list[float]
    seeds: list[int]
    epochs: int
    record: int
    lyap_window: int
    lyap_warmup: int
    P: int
    start: str
    perturbation: float
    d0: float
    renorm_every: int


_PER_CHUNK = ("c", "M", "N", "eta", "alphas", "seeds")  # what run_chunk passes itself, not as keywords


@register
class CurlChaos(Experiment):
    """q, the function's Lyapunov exponent and the state of hidden-flip curl descent started on the teacher."""

    name = "curl-chaos"
    title = "what the q plateau of hidden-flip curl descent is made of"
    spec_type = Spec
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
        common = shared_fields(Spec, p, "alphas")
        out = []
        for i, eta in enumerate(p["etas"]):  # in the given order, so a sweep stopped early has the first η done
            alphas_at: dict[float, set] = {}
            for c in p["cs"]:
                alphas_at.setdefault(float(c), set()).update(p["alphas"] if i == 0 else p["step_alphas"])
            for c in p["c_grid"] if i == 0 else []:
                alphas_at.setdefault(float(c), set()).update(p["c_alphas"])
            out += [
                Spec(c=c, M=shape_for(c)[0], N=shape_for(c)[1], eta=float(eta), alphas=sorted(a), **common)
                for c, a in alphas_at.items()
            ]
        return out

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """Run one (c, η) chunk (threads are the executor's: one per in-process chunk)."""
        pairs = [(a, s) for a in spec.alphas for s in spec.seeds]
        df = run_members(
            spec.M,
            spec.N,
            [a for a, _ in pairs],
            [s for _, s in pairs],
            [spec.eta] * len(pairs),
            **{k: v for k, v in dataclasses.asdict(spec).items() if k not in _PER_CHUNK},
            device=ctx.device,
        )
        df.insert(0, "c", float(spec.c))
        return df

    def claims(self, df, p):
        """The q plateau vs the threshold, what the plateau runs are per η, the finite-N points."""
        return chaos_claims(df, p)

    def notes(self, p):
        """The start, the time convention, what is measured and the state tests."""
        start = (
            f"W1 = teacher, W2 = teacher + {p['perturbation']:g} on every entry (the authors' script)"
            if p["start"] == "authors"
            else f"teacher + N(0, {p['perturbation']:g}²) on every weight"
        )
        return (
            f"Linear student on its balanced teacher (‖W1‖_F = √N, ‖W2‖ = 1), start: {start}; full batch, each "
            "layer held at its initial Frobenius norm, k1 = int(α_h·M) flipped inputs. Every step size η covers "
            "the time of `epochs` epochs at η = 0.1 (epochs·0.1/η steps). Over the last `record` "
            "epoch-equivalents: q of all weights (the paper's order parameter), q of the function W2W1, the "
            "recurrence test and the error trace; λ is the largest Lyapunov exponent of the network output over "
            "the training inputs over the last `lyap_window` epoch-equivalents after a `lyap_warmup` warm-up, "
            "per epoch-equivalent of η = 0.1. States (first test that holds): diverged; converged (q < 1e-12); "
            "period-2 (the state returns to itself every two steps); drift (the function is stationary, "
            f"q(W2W1) < 1e-12, while the weights move); irregular (λ > {LAMBDA_POSITIVE:g}); oscillating (the "
            f"function moves, λ ≤ {LAMBDA_POSITIVE:g})."
        )

    def figures(self, df, p):
        """q and λ vs α_h per c, the paper's q-vs-c curves, and the state of every run."""
        from plasticlab.experiments.curl.figures import chaos_figure, q_vs_c_figure, state_figure

        d = with_state(df)
        out = []
        cs = [c for c in p["cs"] if (d.c == float(c)).any()]
        if cs:
            out.append(
                Figure(
                    "chaos_vs_alpha",
                    chaos_figure(d, cs),
                    "q (top; mean over runs as the paper plots it, and q of W2W1) and λ of the function (bottom; "
                    "dots: runs) vs α_h per η; dashed: large-N threshold α_h*(c)",
                )
            )
        g = _q_vs_c_runs(d, p)
        if g.c.nunique() >= 2:
            out.append(
                Figure(
                    "q_vs_c",
                    q_vs_c_figure(g),
                    "q vs c at η = 0.1 (mean over runs); filled: α_h above the large-N threshold α_h*(c), "
                    "open: below",
                )
            )
        cs = sorted(set(d.c.unique()) & {float(c) for c in p["cs"]}) or sorted(d.c.unique())
        caption = "State of every run per α_h and step size η (tests in docs/chaos.md)"
        return out + [Figure("state_mix", state_figure(d, cs), caption)]

    def tables(self, df, p):
        """The state mix per (c, α_h, η), what the large-q runs are per η, and (c, η) pairs not run."""
        d = with_state(df)
        out = [
            Table(state_mix(d), "State mix per c, α_h and step size η (runs per state; λ per epoch-equivalent)"),
            Table(
                _large_q(d),
                f"The runs with q > {Q_PLATEAU:g} per η: states, λ (per epoch-equivalent), runs whose error range "
                "is not shrinking over the window (swing decay ≤ 0), training error",
            ),
        ]
        missing = _missing(d, p)
        return out + (
            [Table(missing, "Requested (c, η) pairs not in this table (a sweep stopped early)")]
            if len(missing)
            else []
        )


Q_PLATEAU = 1e-4  # the paper's plateau is q ≈ 1e-3…1 (Fig. 3b); below-threshold runs sit near 1e-28
Q_FLAT = 1e-12
FIG = "Fig. 3b"


def with_state(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``state`` recomputed from its columns and the large-N threshold α_h*(c) beside each run."""
    from plasticlab.theory import critical_flip_fraction

    state = classify_state(df.diverged, df.q, df.q_function, df.period2_residual, df.step_change, df.lyapunov)
    thr = np.asarray(critical_flip_fraction(df.c.to_numpy(dtype=float), "hidden"), dtype=float)
    return df.assign(state=state, alpha_star=thr, above=df.alpha_h_eff.to_numpy() > thr)


def size_of(df: pd.DataFrame, p: dict) -> str:
    """What the table was run at, in words (the scoreboard's size column)."""
    full = len(p["seeds"]) >= 10 and p["epochs"] >= 100000 and len(p["alphas"]) >= 21
    grid = (
        f"{len(p['seeds'])} seeds, {p['epochs']:g} epoch-eq., α_h ∈ {{{', '.join(f'{a:g}' for a in p['alphas'])}}}"
    )
    return "paper" if full else f"reduced: {grid}"


def _plateau_cells(d: pd.DataFrame, every_above: bool = False) -> tuple[list[bool], list[str]]:
    """Per c at η = 0.1 (the paper's step): mean q below 1e-12 at every α_h under the large-N threshold, and
    above 1e-4 at the largest α_h run (when it is above the threshold), or with ``every_above`` at every α_h
    above it (the q-vs-c curves, two α_h per c)."""
    ok, notes = [], []
    for c, s in d.groupby("c"):
        means = s.groupby("alpha_h_eff").q.mean()
        thr = float(s.alpha_star.iloc[0])
        for a, q in means[means.index < thr].items():
            ok.append(bool(q < Q_FLAT))
            notes.append(f"c={c:g} α_h={a:.3g}: ⟨q⟩={q:.2g}")
        top = float(means.index.max())
        for a in means.index[means.index > thr] if every_above else [top] if top > thr else []:
            ok.append(bool(means[a] > Q_PLATEAU))
            notes.append(f"c={c:g} α_h={a:.3g}: ⟨q⟩={means[a]:.2g}")
    return ok, notes


def _q_vs_c_runs(d: pd.DataFrame, p: dict) -> pd.DataFrame:
    """The runs of the paper's q-vs-c curves: η = 0.1, c in ``c_grid``, α_h in ``c_alphas``."""
    on_grid = d.c.isin([float(c) for c in p["c_grid"]]) & d.alpha_h.isin([float(a) for a in p["c_alphas"]])
    return d[np.isclose(d.eta, 0.1) & on_grid]


def _q_claim(text: str, cells: pd.DataFrame, size: str, every_above: bool = False) -> Claim:
    """A claim on which side of the threshold ⟨q⟩ lies, over the (c, α_h) cells of ``cells`` (η = 0.1)."""
    ok, notes = _plateau_cells(cells[~cells.diverged], every_above)
    frac, n = fraction(ok)
    side, div = AllCells("⟨q⟩ on the right side of the threshold"), int(cells.diverged.sum())
    return nkc(text, FIG, math.nan, frac, n, size, side, diverged=div, note="; ".join(notes))


def chaos_claims(df: pd.DataFrame, p: dict) -> list[Claim]:
    """The paper's claims (Ninou, Kadmon & Cayco-Gajic 2025, Fig. 3b) beside ours, verdicts by the shared rule."""
    d = with_state(df)
    size = size_of(df, p)
    paper_eta = d[np.isclose(d.eta, 0.1) & d.c.isin([float(c) for c in p["cs"]])]
    text = "q plateau above threshold: mean q < 1e-12 below α_h*(c), > 1e-4 at the largest α_h (η = 0.1)"
    out = [_q_claim(text, paper_eta, size)]
    alphas = ", ".join(f"{a:g}" for a in p["c_alphas"])
    text = f"q vs c at α_h ∈ {{{alphas}}} (η = 0.1): mean q < 1e-12 where α_h < α_h*(c), > 1e-4 where above"
    out.append(_q_claim(text, _q_vs_c_runs(d, p), size, every_above=True))
    for eta, s in d.groupby("eta"):
        plateau = s[(s.q > Q_PLATEAU) & ~s.diverged]
        frac, n = fraction(plateau.state == "irregular")
        mix = ", ".join(f"{k} {v}" for k, v in plateau.state.value_counts().items())
        text = f"the plateau is chaos at η = {eta:g}: runs with q > 1e-4 are irregular (λ > {LAMBDA_POSITIVE:g})"
        note = f"states of the q > 1e-4 runs: {mix or 'none'}"
        out.append(
            nkc(
                text, FIG, 1.0, frac, n, size, AllCells("run irregular"), diverged=int(s.diverged.sum()), note=note
            )
        )
    below = d[~d.above]
    # converged is decided by q alone: at a point converged for 1e5 epochs the function separation of the
    # Lyapunov copy has shrunk to rounding, so λ there is ≈ 0 ± rounding, not the transverse rate
    frac, n = fraction(below.state == "converged")
    text = "below the large-N threshold α_h*(c) runs from the teacher stay converged (q < 1e-12)"
    src, div = "Sec. 4 (stability of the solution manifold)", int(below.diverged.sum())
    out.append(nkc(text, src, math.nan, frac, n, size, AllCells("run converged"), diverged=div))
    for a, want in ((0.25, "converged"), (0.4, "irregular")):
        pt = d[np.isclose(d.c, 0.4) & np.isclose(d.alpha_h, a) & np.isclose(d.eta, 0.1)]
        frac, n = fraction(pt.state == want)
        text = f"finite N (M = 62, N = 157, η = 0.1): α_h = {a:g} is {want}"
        out.append(nkc(text, "Sec. 4 (finite N)", 1.0, frac, n, size, AllCells(f"run {want}")))
    return out


def state_mix(d: pd.DataFrame) -> pd.DataFrame:
    """Per (c, α_h, η): run counts per state, median λ, mean and median q, median q_function."""
    g = d.groupby(["c", "alpha_h", "eta"])
    counts = g.state.value_counts().unstack(fill_value=0).reindex(columns=list(STATES), fill_value=0)
    stats = g.agg(
        runs=("seed", "size"),
        k1=("k1", "first"),
        median_lyapunov=("lyapunov", "median"),
        mean_q=("q", "mean"),
        median_q=("q", "median"),
        median_q_function=("q_function", "median"),
        median_error=("train_error", "median"),
    )
    counts = counts.loc[:, (counts > 0).any()]
    return stats.join(counts).reset_index()


def _large_q(d: pd.DataFrame) -> pd.DataFrame:
    """Per η, the runs with q above the plateau level: their states and λ, error swing and error range."""
    rows = []
    for eta, s in d[d.q > Q_PLATEAU].groupby("eta"):
        lam = s.lyapunov
        rows.append(
            dict(
                eta=eta,
                runs=len(s),
                states=", ".join(f"{v} {k}" for k, v in s.state.value_counts().items()),
                lyapunov_min=lam.min(),
                lyapunov_median=lam.median(),
                lyapunov_max=lam.max(),
                positive=int((lam > 0).sum()),
                irregular=int((lam > LAMBDA_POSITIVE).sum()),
                above_1e_3=int((lam > 1e-3).sum()),
                swing_not_shrinking=int((s.error_swing_decay <= 0).sum()),
                train_error_min=s.train_error.min(),
                train_error_max=s.train_error.max(),
            )
        )
    return pd.DataFrame(rows)


def _missing(d: pd.DataFrame, p: dict) -> pd.DataFrame:
    """Requested (c, η) pairs the table lacks."""
    first = [(float(c), float(p["etas"][0])) for c in dict.fromkeys(p["cs"] + p["c_grid"])]
    wanted = first + [(float(c), float(e)) for e in p["etas"][1:] for c in dict.fromkeys(p["cs"])]
    have = set(zip(d.c.astype(float), d.eta.astype(float)))
    return pd.DataFrame([(c, e) for c, e in wanted if (c, e) not in have], columns=["c", "eta"])
