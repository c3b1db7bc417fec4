"""The experiment contract: declared params -> typed chunk specs -> ``run_chunk`` tables -> claims, figures.

An experiment turns parameters into *chunks*: each a typed, JSON-serialisable spec (a dataclass) of runs of one
shape that advance together as one ensemble batch. ``run_chunk(spec, ctx)`` is pure (its output depends on
``spec`` only; ``ctx`` says where and how to compute, never what), which is what lets the sweep layer hash,
skip, retry and ship chunks to other processes. ``claims`` and ``figures`` are pure functions of the results
table and the params; the framework (:mod:`plasticlab.study.report`) calls ``claims`` exactly once per report
and writes every report the same way. Data flows one way: params -> chunks -> results table -> report.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from plasticlab.errors import PlasticlabError, unknown_choice
from plasticlab.study.context import RunContext
from plasticlab.study.params import Constraint, Require, coerce, constraint_for, validate_params

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

    from plasticlab.study.claims import Claim


@dataclass
class Figure:
    """One figure of a report: a matplotlib figure saved as ``name``.png under its caption."""

    name: str
    fig: MplFigure
    caption: str


@dataclass
class Table:
    """One table of a report: a DataFrame rendered as markdown under its caption."""

    frame: pd.DataFrame
    caption: str
    digits: int = 3


class Experiment:
    """The contract every experiment implements (see the module doc); the framework does the rest."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line, shown by `plasticlab list`
    title: ClassVar[str] = ""  # the report's heading after the name (default: the summary)
    budget_s: ClassVar[float] = 60.0  # the promise for quick=True on 2 cores
    defaults: ClassVar[dict[str, Any]]  # full (paper) size
    # what ``size`` calls the defaults: "paper", or a stated reduction when the paper's size is out of reach
    default_size: ClassVar[str] = "paper"
    quick: ClassVar[dict[str, Any]] = {}  # overrides applied by quick=True
    choices: ClassVar[Mapping[str, Sequence[Any]]] = {}  # allowed values for a key (each element, for lists)
    paper: ClassVar[bool] = True  # part of `plasticlab reproduce` (False for demos)
    columns: ClassVar[tuple[str, ...]] = ()  # columns every run_chunk table has (checked by a contract test)
    tiny: ClassVar[dict[str, Any] | None] = None  # overrides for a run of seconds (the contract test runs it)
    code_version: ClassVar[Any] = 0  # bump when run_chunk changes its numbers, so saved chunks are not reused
    # Declared constraints per key (keys in params.COMMON and ``choices`` need none) and cross-parameter ones;
    # all checked by params.validate_params with one message style.
    constraints: ClassVar[Mapping[str, Constraint]] = {}
    relations: ClassVar[Sequence[Require]] = ()
    spec_type: ClassVar[type | None] = None  # the chunk spec dataclass (None: plain dict specs)

    # -- compute ----------------------------------------------------------------------------------------
    def chunks(self, p: dict[str, Any]) -> list[Any]:
        """The chunk specs of params ``p`` (instances of ``spec_type``), members that share data together."""
        raise NotImplementedError

    def run_chunk(self, spec: Any, ctx: RunContext) -> pd.DataFrame:
        """Compute one chunk: a tidy table, one row per run (or per run and record)."""
        raise NotImplementedError

    # -- read the table (pure: no files) ------------------------------------------------------------------
    def claims(self, df: pd.DataFrame, p: dict[str, Any]) -> list[Claim]:
        """The papers' claims this experiment tests, with our numbers from ``df``."""
        return []

    def figures(self, df: pd.DataFrame, p: dict[str, Any]) -> list[Figure]:
        """The report's figures, drawn from ``df`` (pyplot imported inside, so workers never load it)."""
        return []

    def tables(self, df: pd.DataFrame, p: dict[str, Any]) -> list[Table]:
        """The report's tables beyond the claims (summaries a reader would look up)."""
        return []

    def notes(self, p: dict[str, Any]) -> str:
        """A few lines of setting and conventions for the report (markdown); no numbers typed in."""
        return ""

    def files(self, df: pd.DataFrame, p: dict[str, Any]) -> dict[str, pd.DataFrame]:
        """Data files written beside the report, by file name (``.csv`` or ``.parquet``); usually none."""
        return {}

    # -- specs on the wire: the sweep layer hashes and ships plain dicts --------------------------------------
    def spec_dict(self, spec: Any) -> dict[str, Any]:
        """``spec`` as the plain dict the sweep layer hashes, stores and ships (a dict stays as it is).
        A :func:`convention` field is left out while it holds its default, so adding one keeps every saved
        chunk's hash."""
        if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
            d = dataclasses.asdict(spec)
            for f in dataclasses.fields(spec):
                if f.metadata.get(OMIT_AT_DEFAULT) and d[f.name] == f.default:
                    del d[f.name]
            return d
        return dict(spec)

    def spec_of(self, data: Mapping[str, Any]) -> Any:
        """The typed spec back from its dict (the inverse of :meth:`spec_dict`; a left-out
        :func:`convention` field takes its default)."""
        return self.spec_type(**data) if self.spec_type is not None else dict(data)

    # -- parameters -------------------------------------------------------------------------------------
    def params(self, quick: bool = False, **overrides: Any) -> dict[str, Any]:
        """The defaults (``quick``: with the quick overrides), then ``overrides`` coerced and validated."""
        p = copy.deepcopy(self.defaults)
        if quick:
            p.update(copy.deepcopy(self.quick))
        for key, value in overrides.items():
            if key not in p:
                raise unknown_choice(f"parameter for {self.name}", key, p)
            like = p[key]
            kind = constraint_for(self, key).kind
            if isinstance(like, list) and not like and kind is not None:
                like = [kind()]  # an empty default list: coerce to the declared element type
            p[key] = coerce(self.name, key, value, like)
        validate_params(self, p)
        self.validate(p)
        return p

    def validate(self, p: dict[str, Any]) -> None:
        """Hook for checks that cannot be declared (prefer ``constraints`` / ``relations``)."""

    def size(self, p: dict[str, Any]) -> str:
        """What size ``p`` is: "paper", "quick", or the exact reduction ("steps 2000 (full 20000); …")."""
        p = {**self.defaults, **p}  # a key added after a run was saved holds its default there
        if p == self.defaults:
            return self.default_size
        if p == self.params(quick=True):
            return "quick"
        diffs = []
        for key, full in self.defaults.items():
            ours = p.get(key)
            if ours != full:
                diffs.append(_difference(key, ours, full))
        return "; ".join(diffs)


def _difference(key: str, ours: Any, full: Any) -> str:
    if isinstance(full, list) and isinstance(ours, list):
        if sorted(map(str, ours)) == sorted(map(str, full)):
            return f"{key} in another order"  # the same runs; only for e.g. widths is it a change
        if len(ours) < len(full) and set(map(str, ours)) <= set(map(str, full)):
            return f"{key} {len(ours)} of {len(full)}"  # a subset of the runs (seeds 2 of 10)
    return f"{key} {_short(ours)} (full {_short(full)})"


def _short(v: Any) -> str:
    if v == "":
        return '""'  # an empty path or label, shown as such rather than as nothing
    if isinstance(v, list) and len(v) > 4:
        return f"[{', '.join(map(str, v[:2]))}, …, {v[-1]}] ({len(v)})"
    return str(v)


OMIT_AT_DEFAULT = "omit_at_default"


def convention(default: str) -> Any:
    """A chunk-spec field for a modelling convention added after results were saved (loss normalisation,
    layer init, where noise enters): ``loss: str = convention("half_sum")``. ``Experiment.spec_dict`` leaves
    it out while it equals ``default`` (the convention every saved chunk ran under), so saved chunks keep
    their hashes; any other value is part of the hash. The dataclass fills the default back in
    ``spec_of``."""
    return dataclasses.field(default=default, metadata={OMIT_AT_DEFAULT: True})


def shared_fields(spec_type: type, p: dict[str, Any], *varied: str) -> dict[str, Any]:
    """The params that every chunk of ``spec_type`` takes as they are: its fields found in ``p``, less the
    ``varied`` ones each chunk sets itself (``Spec(rule=r, **shared_fields(Spec, p, "rule"))``)."""
    return {f.name: p[f.name] for f in dataclasses.fields(spec_type) if f.name in p and f.name not in varied}


def check_spec(exp: Experiment, spec: Any) -> None:
    """A chunk spec must be an instance of the experiment's ``spec_type`` (when it declares one)."""
    if exp.spec_type is not None and not isinstance(spec, exp.spec_type):
        raise PlasticlabError(
            f"{exp.name}.chunks returned a {type(spec).__name__}, expected {exp.spec_type.__name__}"
        )


def run_chunks(exp: Experiment, specs: Sequence[Any], ctx: RunContext | None = None) -> pd.DataFrame:
    """Every chunk of ``specs`` in this process, one after another, rows in chunk order (no folder, no
    workers: for tests and notebooks; ``plasticlab.run`` is the resumable way)."""
    ctx = ctx or RunContext()
    frames = [exp.run_chunk(spec, ctx) for spec in specs]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
