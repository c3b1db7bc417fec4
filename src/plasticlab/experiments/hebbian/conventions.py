"""hebb-conventions: do Part A's claims hold under every reasonable reading of the paper's conventions?

Koplow, Poggio & Ziyin 2025 do not state their loss normalisation (½‖out − y‖² summed over outputs, or torch's
``nn.MSELoss`` mean), their layers (bias-free with std 1/√fan_in, or ``nn.Linear``'s init with decayed biases)
nor, for the noise theory, where the noise enters (the weights of the forward pass, or the learning signal).
A *convention* is a named set of those choices; this study runs hebb-table (Table 1) and hebb-phase (the
σ × γ phase diagram) under each, by delegating to those experiments through the registry: every chunk is one
of theirs, wrapped with its part and convention. Their own claim functions are then evaluated per convention
and set side by side (the robustness table). The papers' claims are scored only by hebb-table and hebb-phase
themselves, under the default convention; the checks here are beyond the papers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from plasticlab.errors import PlasticlabError
from plasticlab.experiments.hebbian import phase as _phase  # noqa: F401  (registers hebb-phase)
from plasticlab.experiments.hebbian import table as _table  # noqa: F401  (registers hebb-table)
from plasticlab.experiments.hebbian._common import ACTIVATIONS
from plasticlab.experiments.hebbian.phase import (
    LINREG,
    STATIONARY,
    crossings,
    gamma_grid,
    plot_layer,
    slope_fit,
)
from plasticlab.experiments.hebbian.table import RULE_NAMES, paper_cell, paper_row, stationarity
from plasticlab.study import Experiment, Figure, RunContext, Table, constraint_for, get, register
from plasticlab.study.claims import BEYOND, PARTLY, REPRODUCED, AllCells, Claim, fraction

PARTS = {"table": "hebb-table", "phase": "hebb-phase"}
DEFAULT = "half_sum/plain"
CONVENTIONS: dict[str, dict[str, str]] = {
    DEFAULT: dict(loss="half_sum", layers="plain"),
    "mean/plain": dict(loss="mean", layers="plain"),
    "half_sum/torch": dict(loss="half_sum", layers="torch"),
    "mean/torch": dict(loss="mean", layers="torch"),
    "half_sum/plain/signal": dict(loss="half_sum", layers="plain", noise_at="signal"),
}
"""Each convention as the overrides it sets on the inner experiment (keys every part knows, or noise_at)."""
OFFERED = {"table": [c for c in CONVENTIONS if "noise_at" not in CONVENTIONS[c]], "phase": list(CONVENTIONS)}
CONVENTION_KEYS = {k for c in CONVENTIONS.values() for k in c}
NOT_STATIONARY = "not stationary"
NOT_RUN = "not run"
ROBUST, DEPENDENT, FAILS = "robust", "convention-dependent", "fails under every convention"

_SIGMAS = [0.03, 0.1, 0.3, 1.0]
RATIOS = (0.25, 1.0, 4.0, 16.0)  # γ/σ² on the phase grid: the boundary and 16σ², where an MLP layer's sits
_STUDY = dict(
    table=dict(
        rules=["sgd", "adam_l2", "adam", "dfa", "random_nn"],
        gammas=[0.0, 5e-5, 5e-4, 5e-3],
        seeds=list(range(10)),
        widths=[32, 64, 64, 32],
        steps=10000,
        lr=0.1,
        adam_lr=0.01,
        batch_size=256,
        n_train=20000,
        n_val=2000,
        dtype="float32",
        average_from=0.75,
    ),
    phase=dict(
        activations=[LINREG, *ACTIVATIONS],
        sigmas=_SIGMAS,
        gammas=gamma_grid(_SIGMAS, ratios=RATIOS),
        seeds=[0, 1, 2],
        steps=20000,
        lr=0.05,
    ),
)
_QUICK_SIGMAS = [0.1, 0.3, 1.0]
_QUICK = dict(
    table=dict(
        rules=["sgd", "adam_l2"], gammas=[0.0, 5e-3, 5e-2], seeds=[0, 1], widths=[16, 16, 16, 8], steps=1000,
        n_train=2000, n_val=200,
    ),
    phase=dict(
        activations=["tanh"], sigmas=_QUICK_SIGMAS, gammas=gamma_grid(_QUICK_SIGMAS, ratios=RATIOS), seeds=[0, 1],
        d_in=8, hidden=8, steps=1000, n_train=2000, n_val=200,
    ),
)  # fmt: skip


def _inner(part: str) -> Experiment:
    return get(PARTS[part])


def _prefixed(part: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{part}_{k}": v for k, v in values.items() if k not in CONVENTION_KEYS}


def _inner_keys(part: str) -> list[str]:
    return [k for k in _inner(part).defaults if k not in CONVENTION_KEYS]


def _study_defaults() -> dict[str, Any]:
    p: dict[str, Any] = dict(table_conventions=OFFERED["table"], phase_conventions=OFFERED["phase"])
    for part in PARTS:
        p |= _prefixed(part, {**_inner(part).defaults, **_STUDY[part]})
    return p


@dataclass
class Spec:
    """One chunk of hebb-table or hebb-phase (its spec dict, ``inner``) under one convention."""

    part: str
    convention: str
    inner: dict[str, Any]


@register
class HebbConventions(Experiment):
    """hebb-conventions: Table 1 and the phase diagram under each reading of the paper's conventions."""

    name = "hebb-conventions"
    summary = "Part A under each convention (loss normalisation, layer init, where noise enters): robustness"
    title = "which Part A claims hold under every reading of the paper's conventions"
    budget_s = 240
    default_size = (
        "reduced: Table 1 at 10,000 steps (the paper-size hebb-table runs 100,000), phase grid 3 seeds × 4 σ"
    )
    # a chunk's numbers are the inner experiment's: its code version changes them here too
    code_version = dict(study=0, **{name: get(name).code_version for name in PARTS.values()})
    spec_type = Spec
    columns = ("part", "convention", "gamma", "seed", "layer", "alignment", "diverged", "collapsed")
    defaults = _study_defaults()
    quick = {**_prefixed("table", _QUICK["table"]), **_prefixed("phase", _QUICK["phase"])}
    tiny = {
        **_prefixed("table", _inner("table").tiny or {}),
        **_prefixed("phase", {**(_inner("phase").tiny or {}), "activations": ["tanh"]}),
        "table_rules": ["sgd"],
        "table_conventions": ["mean/torch"],
        "phase_conventions": ["half_sum/plain/signal"],
    }  # seconds: the contract test
    choices = {
        "table_conventions": OFFERED["table"],
        "phase_conventions": OFFERED["phase"],
        **{
            f"{part}_{k}": v for part in PARTS for k, v in _inner(part).choices.items() if k not in CONVENTION_KEYS
        },
    }
    constraints = {f"{part}_{k}": constraint_for(_inner(part), k) for part in PARTS for k in _inner_keys(part)}

    def validate(self, p):
        """Each part's params must be valid for its experiment (checked under the default convention)."""
        if not p["table_conventions"] and not p["phase_conventions"]:
            raise PlasticlabError(f"{self.name}: table_conventions and phase_conventions are both empty; give one")
        for part in PARTS:
            try:
                inner_params(p, part, DEFAULT)
            except PlasticlabError as e:
                raise PlasticlabError(f"{self.name}, {part} part (params {part}_*): {e}") from None

    def chunks(self, p):
        """Per part and convention, the inner experiment's chunks of that convention's params."""
        out = []
        for part in PARTS:
            inner = _inner(part)
            for conv in p[f"{part}_conventions"]:
                out += [Spec(part, conv, inner.spec_dict(s)) for s in inner.chunks(inner_params(p, part, conv))]
        return out

    def run_chunk(self, spec: Spec, ctx: RunContext) -> pd.DataFrame:
        """The inner experiment's chunk, its rows marked with the part and the convention."""
        inner = _inner(spec.part)
        df = inner.run_chunk(inner.spec_of(spec.inner), ctx)
        return df.assign(part=spec.part, convention=spec.convention)

    def claims(self, df, p):
        """Beyond the papers: per Table 1 row, its stationary cells meet the paper's value under some
        convention; per phase model, its stationary claims hold under some convention."""
        return study_claims(robustness(df, p), df, p)

    def tables(self, df, p):
        """The robustness table, Table 1 per convention beside the paper's, γ*/σ² per model × convention."""
        rob = robustness(df, p)
        out = [
            Table(
                rob,
                "Part A claims (hebb-table, hebb-phase) under each convention: the verdict, or 'not stationary' "
                f"(lr·γ·T < {STATIONARY:g} at the claim's γ); robust = reproduced under every convention run",
            )
        ]
        t1 = table1_by_convention(df, p)
        if len(t1):
            out.append(Table(t1, "Table 1 (layer-2 alignment) per convention, beside the paper's value"))
        ratio = ratio_by_convention(df, p)
        if len(ratio):
            out.append(
                Table(
                    ratio,
                    "MLP phase boundary: γ*/σ² per σ used in the slope fit, its median, and the fitted slope of "
                    "log γ* on log σ² ± its standard error (1 for γ ∝ σ²; none from two σ), per convention",
                )
            )
        return out

    def files(self, df, p):
        """robustness.csv: the robustness table, for the scoreboard."""
        return {"robustness.csv": robustness(df, p)}

    def figures(self, df, p):
        """Table 1's rows per convention beside the paper's; γ*/σ² per model and convention."""
        import matplotlib.pyplot as plt

        out = []
        t1 = table1_long(df, p)
        rules = [r for r in p["table_rules"] if r in set(t1.get("rule", []))]
        if rules:
            fig, axes = plt.subplots(1, len(rules), figsize=(3.2 * len(rules), 3.0), squeeze=False, sharey=True)
            for ax, rule in zip(axes[0], rules):
                r = t1[t1.rule == rule]
                gam = sorted(set(r.gamma))
                x = np.arange(len(gam))
                for conv, c in r.groupby("convention", sort=False):
                    c = c.set_index("gamma").reindex(gam)
                    ax.plot(x, c.ours, "o-", label=conv)
                pv = [paper_cell(rule, g) for g in gam]
                if np.isfinite(pv).any():
                    ax.plot(x, pv, "kx--", label="paper")  # marked: a row with one value (Adam) is one point
                ax.set_xticks(x, [f"{g:g}" for g in gam])
                ax.set_title(rule)
                ax.set_xlabel("γ")
            axes[0][0].set_ylabel("layer-2 alignment")
            axes[0][-1].legend(fontsize=7)
            fig.tight_layout()
            out.append(Figure("table_conventions", fig, "Table 1 rows per convention (solid) beside the paper's."))
        ratio = ratio_long(df, p)
        if len(ratio):
            models = list(dict.fromkeys(ratio.model))
            fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.0), squeeze=False)
            for ax, model in zip(axes[0], models):
                for conv, c in ratio[ratio.model == model].groupby("convention", sort=False):
                    ax.plot(c.sigma, c.ratio, "o-", label=conv)
                ax.set(xscale="log", yscale="log", title=model, xlabel="σ")
            axes[0][0].set_ylabel("γ*/σ²")
            axes[0][-1].legend(fontsize=7)
            fig.tight_layout()
            out.append(
                Figure(
                    "boundary_conventions",
                    fig,
                    "γ*/σ² of the MLP phase boundary per σ used in the slope fit, per convention; flat: γ ∝ σ².",
                )
            )
        return out

    def notes(self, p):
        """The conventions, what a verdict here means and what is not scored."""
        t, ph = (inner_params(p, part, DEFAULT) for part in PARTS)
        return (
            "Conventions: half_sum = loss ½‖out − y‖² per sample (summed over outputs), mean = torch's "
            "nn.MSELoss (mean over outputs and batch); plain = bias-free layers at std 1/√fan_in, torch = "
            "nn.Linear's init with biases, decayed like the weights; signal = the noise σ enters the learning "
            "signal rather than the weights of the forward pass. Each part runs hebb-table or hebb-phase as "
            f"they are, with these overrides: Table 1 at {t['steps']} steps (lr {t['lr']}, adaptive rules "
            f"{t['adam_lr']}), the phase diagram at {ph['steps']} steps (lr {ph['lr']}). A claim whose γ has "
            f"lr·γ·T < {STATIONARY:g} has not reached its stationary state and is marked 'not stationary' rather "
            "than scored. The papers' claims are scored by hebb-table and hebb-phase under half_sum/plain; the "
            "checks here are beyond the papers."
        )


def inner_params(p: dict[str, Any], part: str, conv: str) -> dict[str, Any]:
    """The inner experiment's params of ``part`` under convention ``conv`` (validated there)."""
    inner = _inner(part)
    own: dict[str, Any] = {k: p[f"{part}_{k}"] for k in _inner_keys(part) if f"{part}_{k}" in p}
    return inner.params(**own | CONVENTIONS[conv])


def rows_of(df: pd.DataFrame, part: str, conv: str) -> pd.DataFrame:
    """The rows of one part under one convention, without the other part's columns."""
    if "part" not in df:
        return df.iloc[0:0]
    sel = df[(df.part == part) & (df.convention == conv)]
    return sel.dropna(axis=1, how="all").reset_index(drop=True) if len(sel) else sel


def _rule_of(text: str, rules: list[str]) -> str | None:
    """The rule a hebb-table claim is about: the longest rule name (as the claims spell it) it starts with."""
    hits = [(len(name), r) for r in rules if text.startswith(name := RULE_NAMES.get(r, r))]
    return max(hits)[1] if hits else None


_GAMMA = re.compile(r"γ = ([0-9][0-9.e+-]*)")


def claim_stationarity(c: Claim, part: str, ip: dict[str, Any]) -> float:
    """lr·γ·T at the γ a claim rests on (the smallest, when it rests on several); NaN when it cannot tell,
    +inf when the claim handles stationarity itself (the γ ∝ σ² slope leaves non-stationary σ out)."""
    if part == "table":
        rule = _rule_of(c.claim, ip["rules"])
        if rule is None:
            return math.nan
        if "rises with weight decay" in c.claim:
            return stationarity(rule, max(ip["gammas"]), ip)
        m = _GAMMA.search(c.claim)
        return stationarity(rule, float(m.group(1).rstrip(":,")), ip) if m else math.nan
    lr_t = ip["lr"] * ip["steps"]
    if "γ ∝ σ²" in c.claim:
        return 0.0 if c.verdict == "not run" and NOT_STATIONARY in c.note else math.inf
    if "sign flips" in c.claim:
        return lr_t * min(ip["sigmas"]) ** 2 / 4
    text = c.note if "validation loss" in c.claim else c.claim
    m = _GAMMA.search(text)
    return lr_t * float(m.group(1).rstrip(":,")) if m else math.nan


_WHERE = re.compile(r" \((?:σ|γ) = [^()]*\)")


def claim_key(text: str) -> str:
    """A claim's text without the grid cell it was read at ('(σ = 0.03, γ = 0.0144, the highest γ that did
    not collapse)', '(γ = 0 → 0.005)'): that cell is chosen from each convention's data, the claim is the same."""
    return _WHERE.sub("", text)


def claims_by_convention(df: pd.DataFrame, p: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Part A claim of hebb-table / hebb-phase under every convention run: its verdict, or 'not
    stationary' (one dict per claim and convention)."""
    out = []
    for part, name in PARTS.items():
        inner = _inner(part)
        for conv in p[f"{part}_conventions"]:
            ip = inner_params(p, part, conv)
            rows = rows_of(df, part, conv)
            if rows.empty:  # nothing of this convention is in yet (an unfinished sweep): its column reads —
                continue
            for c in inner.claims(rows, ip):
                stat = claim_stationarity(c, part, ip)
                word = c.verdict if not (stat < STATIONARY) else NOT_STATIONARY
                out.append(dict(experiment=name, claim=claim_key(c.claim), convention=conv, verdict=word))
    return out


def summary_word(verdicts: dict[str, str]) -> str:
    """robust / convention-dependent (holds under: …) / fails under every convention / not stationary, over
    the conventions that measured the claim (a 'not run' one measured nothing); 'not run' if none did."""
    scored = {k: v for k, v in verdicts.items() if v not in (NOT_STATIONARY, NOT_RUN)}
    if not scored:
        return NOT_STATIONARY if NOT_STATIONARY in verdicts.values() else NOT_RUN
    holds = [k for k, v in scored.items() if v == REPRODUCED]
    if len(holds) == len(scored):
        return ROBUST
    if not holds:
        return FAILS
    return f"{DEPENDENT} (holds under: {', '.join(holds)})"


def robustness(df: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """One row per Part A claim (matched by its text), a verdict column per convention, and the summary."""
    convs = list(dict.fromkeys([*p["table_conventions"], *p["phase_conventions"]]))
    cols = ["experiment", "claim", *convs, "summary"]
    lines = claims_by_convention(df, p)
    if not lines:
        return pd.DataFrame(columns=cols)
    wide = pd.DataFrame(lines).pivot_table(
        index=["experiment", "claim"], columns="convention", values="verdict", aggfunc="first", sort=False
    )
    wide = wide.reindex(columns=convs)
    wide["summary"] = [
        summary_word({k: v for k, v in row.items() if isinstance(v, str)}) for _, row in wide.iterrows()
    ]
    return wide.reset_index().fillna("—")[cols]


def table1_long(df: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """Layer-2 alignment per (convention, rule, γ), mean over seeds of runs neither diverged nor collapsed."""
    from plasticlab.experiments.hebbian.table import ours_summary

    parts = []
    for conv in p["table_conventions"]:
        sub = rows_of(df, "table", conv)
        if len(sub):
            s = ours_summary(sub, inner_params(p, "table", conv))
            parts.append(s.rename(columns={"mean": "ours"}).assign(convention=conv))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["convention", "rule", "gamma"])


def table1_by_convention(df: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """Rule × γ rows, one column per convention, the paper's value and lr·γ·T beside them."""
    t = table1_long(df, p)
    if not len(t):
        return t
    wide = t.pivot_table(index=["rule", "gamma"], columns="convention", values="ours", sort=False)
    wide = wide.reindex(columns=[c for c in p["table_conventions"] if c in wide.columns]).reset_index()
    ip = inner_params(p, "table", DEFAULT)
    wide["paper"] = [paper_cell(r, g) for r, g in zip(wide.rule, wide.gamma)]
    wide["lr·γ·T"] = [stationarity(r, g, ip) for r, g in zip(wide.rule, wide.gamma)]
    return wide


def ratio_long(df: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """γ*/σ² per (MLP model, convention, σ used in the slope fit)."""
    from plasticlab.experiments.hebbian.phase import mark_collapsed

    parts = []
    for conv in p["phase_conventions"]:
        sub = rows_of(df, "phase", conv)
        if not len(sub):
            continue
        sub, ip = mark_collapsed(sub), inner_params(p, "phase", conv)
        for act in [a for a in ip["activations"] if a != LINREG and a in set(sub.activation)]:
            c = crossings(sub[(sub.activation == act) & (sub.layer == plot_layer(act))], ip)
            parts.append(c[c.used].assign(model=f"{act} MLP", convention=conv))
    cols = ["model", "convention", "sigma", "ratio"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def ratio_by_convention(df: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """Model × convention rows: γ*/σ² per σ used and their median."""
    r = ratio_long(df, p)
    if not len(r):
        return r
    wide = r.pivot_table(index=["model", "convention"], columns="sigma", values="ratio", sort=False)
    wide.columns = [f"σ={s:g}" for s in wide.columns]
    by = r.groupby(["model", "convention"], sort=False)
    wide["median"] = by.ratio.median()
    # the fitted exponent beside the constants: slope of log γ* on log σ² (1 for γ ∝ σ²) ± its standard error
    fits = {key: slope_fit(g.assign(used=True, gamma_star=g.ratio * g.sigma**2)) for key, g in by}
    wide["slope"] = [fits[k][0] for k in wide.index]
    wide["slope se"] = [fits[k][1] for k in wide.index]
    return wide.reset_index()


def study_claims(rob: pd.DataFrame, df: pd.DataFrame, p: dict[str, Any]) -> list[Claim]:
    """Beyond the papers, so the papers' count is not inflated: per Table 1 row (rule), the fraction of its
    stationary cells whose paper value is met (reproduced) under at least one convention; per phase model,
    the fraction of its stationary claims that hold under at least one convention."""
    out = []
    ip = inner_params(p, "table", DEFAULT)
    for rule in p["table_rules"] if p["table_conventions"] else []:
        if paper_row(rule) is None:
            continue
        name = RULE_NAMES.get(rule, rule)
        rows = rob[
            (rob.experiment == PARTS["table"]) & rob.claim.map(lambda t, r=rule: _rule_of(t, ip["rules"]) == r)
        ]
        cells = rows[rows.claim.str.contains(", γ = ") & ~rows.summary.isin([NOT_STATIONARY, NOT_RUN])]
        convs = p["table_conventions"]
        out.append(_some_convention_claim(f"{name}: Table 1 row's stationary cells", cells, convs, "Table 1"))
    for act in p["phase_activations"] if p["phase_conventions"] else []:
        name = act if act == LINREG else f"{act} MLP"
        rows = rob[(rob.experiment == PARTS["phase"]) & rob.claim.str.startswith(f"{name}:")]
        rows, convs = rows[~rows.summary.isin([NOT_STATIONARY, NOT_RUN])], p["phase_conventions"]
        out.append(
            _some_convention_claim(f"{name}: phase diagram's stationary claims", rows, convs, "phase diagram")
        )
    return out


def _some_convention_claim(what: str, rows: pd.DataFrame, convs: list[str], source: str) -> Claim:
    passes = [any(r[c] == REPRODUCED for c in convs) for _, r in rows.iterrows()]
    frac, n = fraction(passes)
    near = sum(any(r[c] == PARTLY for c in convs) for _, r in rows.iterrows())
    return Claim(
        f"{what} are met under at least one convention ({', '.join(convs)})",
        BEYOND,
        f"{source} under each convention (robustness table)",
        math.nan,
        frac,
        math.nan,
        n,
        "",
        AllCells("met under some convention"),
        note="no stationary, measured claim at this size"
        if not n
        else (f"{near} partly under some convention" if near else ""),
    )
