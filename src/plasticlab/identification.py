"""Which learning rule is this network following? Classifiers on summaries of observable trajectories.

Input: a *trajectory table* with one row per (run, units, step) and one column per observable and layer,
``{observable}_l{layer}`` (see :mod:`plasticlab.metrics.observables`), plus ``run`` (an id), ``units`` (how
many units per layer were recorded) and ``step``; the training table of the ``rule-identify`` experiment
also has ``rule``, ``weight_decay``, ``noise``, ``seed`` and, per run, the final ``nongradient_fraction``.

Features are per-run summaries of each trajectory over the observed window: its mean, its last value and
its slope (per unit of the window's length); activity and weight statistics first go through a signed
log, sign(x) log(1 + |x|), so that runs whose weights explode stay on a usable scale. Values missing
because a run diverged are imputed (median of the training runs) inside the classifier pipeline.

Observation budgets (:class:`Budget`): the fraction of training seen (checkpoints with step ≤ f × last
step), the number of units recorded per layer, and Gaussian measurement noise added to every recorded
observable after the signed log (sd = level × that observable's sd over the whole table).

:func:`evaluate` runs grouped cross-validation (groups = seeds: a seed's teacher, initialisation and noise
never sit in both train and test). :func:`train_identifier` fits one classifier on a whole table;
:func:`identify` returns rule probabilities for a user's recorded trajectories.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from plasticlab.errors import PlasticlabError, unknown_choice
from plasticlab.metrics.observables import ACTIVITY, FAMILIES, WEIGHTS

FEATURE_SETS = {
    "alignment only": ("alignment",),
    "activity only": ("activity",),
    "weights only": ("weights",),
    "all": ("alignment", "activity", "weights"),
}
CLASSIFIERS = ("logistic", "forest")
SUMMARIES = ("mean", "last", "slope")
RUN_KEYS = ("run",)
NONGRADIENT = "nongradient_fraction"


@dataclass(frozen=True)
class Budget:
    """How much of the training an experimenter observes: fraction of training, units per layer (None =
    all) and measurement noise (in sd's of each observable)."""

    fraction: float = 1.0
    units: int | None = None
    noise: float = 0.0

    @property
    def label(self) -> str:
        """``full`` or the one axis that is reduced, e.g. ``fraction 0.25``."""
        parts = []
        if self.fraction < 1:
            parts.append(f"fraction {self.fraction:g}")
        if self.units is not None:
            parts.append(f"units {self.units}")
        if self.noise > 0:
            parts.append(f"noise {self.noise:g}")
        return ", ".join(parts) or "full"


def budgets(fractions, units, noises, full_units: int) -> list[Budget]:
    """The full budget (every unit: the largest recorded count), then one axis reduced at a time."""
    out = [Budget()]
    out += [Budget(fraction=f) for f in fractions if f < 1]
    out += [Budget(units=u) for u in sorted(units, reverse=True) if u < full_units]
    out += [Budget(noise=s) for s in noises if s > 0]
    return out


def observable_columns(df: pd.DataFrame, families=("alignment", "activity", "weights")) -> list[str]:
    """Trajectory columns of the given observable families present in ``df`` (e.g. ``align_l0``)."""
    names = {n for f in families for n in FAMILIES[f]}
    return [c for c in df.columns if "_l" in c and c.rsplit("_l", 1)[0] in names]


def _slog(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _summaries(A: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, last finite value and least-squares slope over time of A (runs, T, C) with NaNs."""
    ok = np.isfinite(A)
    n = ok.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, A, 0).sum(1) / n
        idx = np.where(ok, np.arange(A.shape[1])[None, :, None], -1).max(1)
        last = np.take_along_axis(A, np.clip(idx, 0, None)[:, None, :], 1)[:, 0]
        last = np.where(idx >= 0, last, np.nan)
        tt = np.where(ok, t[None, :, None], np.nan)
        tm = np.nanmean(tt, 1, keepdims=True) if ok.any() else tt
        num = np.nansum((tt - tm) * (A - mean[:, None]), 1)
        den = np.nansum((tt - tm) ** 2, 1)
        slope = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    mean = np.where(n > 0, mean, np.nan)
    return dict(mean=mean, last=last, slope=slope)


def features(traj: pd.DataFrame, budget: Budget = Budget(), seed: int = 0) -> pd.DataFrame:
    """One row per run (index ``run``): summaries of every observable column under ``budget``, plus the
    final non-gradient fraction when the table has it and the whole of training is seen. ``traj`` may
    also be a compact table of :func:`feature_table`; its stored features are then returned as they are."""
    if is_feature_table(traj):
        return _stored_features(traj, budget, seed)
    d = traj if budget.units is None else traj[traj.units == budget.units]
    if budget.units is None and "units" in d and d.units.nunique() > 1:
        d = d[d.units == d.units.max()]
    if not len(d):
        raise PlasticlabError(f"no trajectories recorded at units={budget.units}; have {sorted(set(traj.units))}")
    cols = observable_columns(d)
    last_step = d.groupby("run").step.transform("max")
    d = d[d.step <= budget.fraction * last_step + 1e-9].sort_values(["run", "step"])
    runs = d.run.unique()
    T = d.groupby("run").size().max()
    A = np.full((len(runs), T, len(cols)), np.nan)
    pos = d.groupby("run").cumcount().to_numpy()
    ri = pd.Index(runs).get_indexer(d.run)
    A[ri, pos] = d[cols].to_numpy(dtype=float)
    logged = np.array([c.rsplit("_l", 1)[0] in ACTIVITY + WEIGHTS for c in cols])
    A[:, :, logged] = _slog(A[:, :, logged])
    A[~np.isfinite(A)] = np.nan
    if budget.noise > 0:
        # after the signed log: on activity and weight statistics the noise is a relative error
        sd = np.nanstd(A.reshape(-1, len(cols)), 0)
        rng = np.random.default_rng(_noise_seed(budget, seed))
        A = A + rng.normal(size=A.shape) * budget.noise * np.nan_to_num(sd)[None, None]
    t = np.arange(T) / max(T - 1, 1)
    S = _summaries(A, t)
    out = pd.DataFrame(
        np.concatenate([S[s] for s in SUMMARIES], axis=1),
        index=pd.Index(runs, name="run"),
        columns=[f"{c}:{s}" for s in SUMMARIES for c in cols],
    )
    if NONGRADIENT in traj and budget.fraction >= 1:
        ng = traj.groupby("run")[NONGRADIENT].first().reindex(runs).to_numpy(dtype=float)
        out[f"{NONGRADIENT}_final"] = _slog(np.log10(np.clip(ng, 1e-16, None)))
    return out


# -- the compact per-run table: the features of every budget, so a result folder need not keep trajectories
SEP = "|"
LABEL_KEYS = ("rule", "weight_decay", "noise", "seed", "diverged", "diverged_at", "final_loss")


def feature_table(traj: pd.DataFrame, budget_list: list[Budget]) -> pd.DataFrame:
    """One row per run: its labels, ``units`` (the most units recorded), ``checkpoints`` (distinct steps
    of the table) and ``{budget label}|{feature}`` for every budget, exactly as :func:`features` computes
    them (noise seed 0, as :func:`evaluate` uses). :func:`features` and :func:`labels` accept it in place
    of ``traj``, so the classifiers give the same numbers from either."""
    keys = [k for k in LABEL_KEYS if k in traj]
    out = traj.groupby("run")[keys].first()
    out["units"] = int(traj.units.max())
    out["checkpoints"] = int(traj.step.nunique())
    blocks = [out]
    for b in budget_list:
        X = features(traj, b)
        if not X.index.equals(out.index):
            raise PlasticlabError(f"budget {b.label!r} does not observe every run; a feature table needs all")
        blocks.append(X.add_prefix(f"{b.label}{SEP}"))
    return pd.concat(blocks, axis=1).reset_index()


def is_feature_table(df: pd.DataFrame) -> bool:
    """True for a compact table of :func:`feature_table` (no ``step`` column, budget-prefixed features)."""
    return "step" not in df and any(SEP in str(c) for c in df.columns)


def n_checkpoints(df: pd.DataFrame) -> int:
    """Distinct recorded steps of a trajectory table or of the one a feature table was made from."""
    return int(df.checkpoints.iloc[0]) if is_feature_table(df) else int(df.step.nunique())


def _stored_features(table: pd.DataFrame, budget: Budget, seed: int) -> pd.DataFrame:
    if seed != 0 and budget.noise > 0:
        raise PlasticlabError(f"a feature table holds measurement noise of seed 0 only, got seed={seed}")
    if budget.units is not None and budget.units == int(table.units.max()):
        budget = Budget(fraction=budget.fraction, noise=budget.noise)  # all units recorded = the full count
    prefix = f"{budget.label}{SEP}"
    cols = [c for c in table.columns if str(c).startswith(prefix)]
    if not cols:
        have = sorted({str(c).split(SEP)[0] for c in table.columns if SEP in str(c)})
        raise PlasticlabError(f"the feature table has no budget {budget.label!r}; it has {have}")
    X = table.set_index("run")[cols].astype(float)
    X.columns = [c[len(prefix) :] for c in cols]
    return X


def _noise_seed(budget: Budget, seed: int) -> int:
    h = hashlib.sha256(f"{budget.label}|{seed}".encode()).digest()
    return int.from_bytes(h[:8], "little")


def feature_columns(X: pd.DataFrame, feature_set: str) -> list[str]:
    """The columns of ``X`` that belong to ``feature_set`` (the non-gradient fraction needs weights)."""
    if feature_set not in FEATURE_SETS:
        raise unknown_choice("feature set", feature_set, FEATURE_SETS)
    fams = FEATURE_SETS[feature_set]
    names = {n for f in fams for n in FAMILIES[f]}
    cols = [c for c in X.columns if c.split(":")[0].rsplit("_l", 1)[0] in names]
    if "weights" in fams:
        cols += [c for c in X.columns if c.startswith(NONGRADIENT)]
    return cols


def make_classifier(kind: str, seed: int = 0, trees: int = 100):
    """A scikit-learn pipeline: median imputation, then standardised logistic regression or a forest of
    ``trees`` trees."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    imp = SimpleImputer(strategy="median", keep_empty_features=True)
    if kind == "logistic":
        return make_pipeline(imp, StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
    if kind == "forest":
        return make_pipeline(imp, RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=1))
    raise unknown_choice("classifier", kind, CLASSIFIERS)


def labels(traj: pd.DataFrame, runs) -> pd.DataFrame:
    """Per-run labels (rule, weight_decay, noise, seed) aligned with ``runs``."""
    keys = [k for k in ("rule", "weight_decay", "noise", "seed") if k in traj]
    return traj.groupby("run")[keys].first().reindex(runs)


def evaluate(
    traj: pd.DataFrame,
    budget_list: list[Budget],
    n_splits: int = 5,
    classifiers=CLASSIFIERS,
    feature_sets=tuple(FEATURE_SETS),
    keep_predictions=("full",),
    trees: int = 100,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Grouped cross-validated accuracy (groups = seed) per (feature set, budget, classifier, fold).

    Returns (accuracy table with columns feature_set, budget, classifier, fold, accuracy, chance, n_test;
    out-of-fold predictions for the budgets named in ``keep_predictions``: run, rule, predicted, ...).
    Chance is the test accuracy of always answering the training fold's most frequent rule."""
    from sklearn.model_selection import GroupKFold

    rows, preds = [], []
    for b in budget_list:
        X = features(traj, b)
        lab = labels(traj, X.index)
        y, groups = lab.rule.to_numpy(), lab.seed.to_numpy()
        k = min(n_splits, len(np.unique(groups)))
        if k < 2:
            raise PlasticlabError(f"grouped cross-validation needs at least 2 seeds, got {len(np.unique(groups))}")
        splits = list(GroupKFold(n_splits=k).split(X, y, groups))
        for fs in feature_sets:
            Xs = X[feature_columns(X, fs)].to_numpy()
            for clf in classifiers:
                for fold, (tr, te) in enumerate(splits):
                    model = make_classifier(clf, trees=trees).fit(Xs[tr], y[tr])
                    p = model.predict(Xs[te])
                    vals, cnt = np.unique(y[tr], return_counts=True)
                    chance = float(np.mean(y[te] == vals[np.argmax(cnt)]))
                    rows.append(
                        dict(
                            feature_set=fs,
                            budget=b.label,
                            classifier=clf,
                            fold=fold,
                            accuracy=float(np.mean(p == y[te])),
                            chance=chance,
                            n_test=len(te),
                        )
                    )
                    if b.label in keep_predictions:
                        preds.append(
                            lab.iloc[te]
                            .assign(predicted=p, feature_set=fs, budget=b.label, classifier=clf, fold=fold)
                            .reset_index()
                        )
    return pd.DataFrame(rows), (pd.concat(preds, ignore_index=True) if preds else pd.DataFrame())


@dataclass
class Identifier:
    """A classifier trained on the ``rule-identify`` table: ``predict_proba(trajectories)`` -> rule
    probabilities (one row per run, one column per rule)."""

    model: Any
    columns: list[str]
    budget: Budget
    feature_set: str

    @property
    def rules(self) -> list[str]:
        """The rules the classifier can answer, in the probability columns' order."""
        return list(self.model.classes_)

    def predict_proba(self, trajectories: pd.DataFrame) -> pd.DataFrame:
        """Rule probabilities for every run of ``trajectories`` (same layout as the training table)."""
        traj = _as_trajectories(trajectories, self.budget)
        X = features(traj, Budget(fraction=1.0, units=None))
        missing = [c for c in self.columns if c not in X]
        if len(missing) == len(self.columns):
            raise PlasticlabError(
                f"the trajectories have none of the observables the classifier uses, e.g. {self.columns[:3]}"
            )
        X = X.reindex(columns=self.columns)  # a missing observable is imputed like a diverged run's
        P = self.model.predict_proba(X.to_numpy())
        return pd.DataFrame(P, index=X.index, columns=self.rules)


def _as_trajectories(traj: pd.DataFrame, budget: Budget) -> pd.DataFrame:
    if not isinstance(traj, pd.DataFrame) or "step" not in traj:
        raise PlasticlabError("trajectories must be a DataFrame with a 'step' column and observable columns")
    d = traj.copy()
    if "run" not in d:
        d["run"] = 0
    if "units" not in d:
        d["units"] = budget.units if budget.units is not None else 0
    return d


def train_identifier(
    traj: pd.DataFrame,
    feature_set: str = "all",
    classifier: str = "forest",
    units: int | None = None,
    trees: int = 100,
) -> Identifier:
    """Fit one classifier on every run of a ``rule-identify`` table (whole training, ``units`` recorded)."""
    budget = Budget(units=units)
    X = features(traj, budget)
    cols = [c for c in feature_columns(X, feature_set) if not c.startswith(NONGRADIENT)]
    y = labels(traj, X.index).rule.to_numpy()
    return Identifier(
        make_classifier(classifier, trees=trees).fit(X[cols].to_numpy(), y), cols, budget, feature_set
    )


def identify(
    trajectories: pd.DataFrame,
    reference: pd.DataFrame | str | Path | Identifier | None = None,
    *,
    feature_set: str = "all",
    classifier: str = "forest",
) -> pd.DataFrame:
    """Probabilities of each rule for a user's recorded observables.

    ``trajectories``: one row per (run, step) — or per step for a single run — with observable columns
    ``{observable}_l{layer}`` (``align``, ``align_noise``, ``act_mean`` … ``w_median``; see
    :mod:`plasticlab.metrics.observables`, which computes them from a network). ``reference``: a trained
    :class:`Identifier`, a ``rule-identify`` results or feature table, or its output folder (default:
    ``results/rule-identify`` of a source checkout, whose committed ``features.parquet`` suffices).
    Returns a DataFrame, one row per run, one column per rule, rows sum to 1. The non-gradient fraction
    needs the weights' full vector field, so it is not used here."""
    if isinstance(reference, Identifier):
        return reference.predict_proba(trajectories)
    if reference is None:
        reference = Path(__file__).resolve().parents[2] / "results" / "rule-identify"
    table = reference if isinstance(reference, pd.DataFrame) else _read_table(Path(reference))
    units = int(table.units.max()) if "units" in table else None
    model = train_identifier(table, feature_set, classifier, units)
    return model.predict_proba(trajectories)


def _read_table(path: Path) -> pd.DataFrame:
    """The folder's trajectory table, else its compact feature table (what a committed result keeps)."""
    f = path
    if path.is_dir():
        f = next((path / n for n in ("results.parquet", "features.parquet") if (path / n).exists()), path)
    if not f.is_file():
        raise PlasticlabError(
            f"no rule-identify table (results.parquet or features.parquet) at {path}; run "
            "`plasticlab run rule-identify --quick --out DIR` and pass reference=DIR"
        )
    return pd.read_parquet(f)


def mean_sd(acc: pd.DataFrame) -> pd.DataFrame:
    """Accuracy mean ± sd over folds per (feature set, budget, classifier), with chance."""
    g = acc.groupby(["feature_set", "budget", "classifier"], sort=False)
    out = g.agg(
        accuracy=("accuracy", "mean"), sd=("accuracy", "std"), chance=("chance", "mean"), folds=("fold", "size")
    )
    return out.reset_index()


def confusion(pred: pd.DataFrame, order: list[str]) -> np.ndarray:
    """Row-normalised confusion matrix (true rule × predicted rule) of out-of-fold predictions."""
    from sklearn.metrics import confusion_matrix

    M = confusion_matrix(pred.rule, pred.predicted, labels=order).astype(float)
    with np.errstate(invalid="ignore"):
        return M / M.sum(1, keepdims=True)


def confused_pairs(M: np.ndarray, order: list[str], top: int = 3) -> list[tuple[str, str, float]]:
    """The rule pairs most often mistaken for each other: (a, b, mean of the two off-diagonal rates)."""
    pairs = []
    for i in range(len(order)):
        for j in range(i + 1, len(order)):
            v = np.nanmean([M[i, j], M[j, i]])
            if math.isfinite(v) and v > 0:
                pairs.append((order[i], order[j], float(v)))
    return sorted(pairs, key=lambda p: -p[2])[:top]
