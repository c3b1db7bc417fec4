"""The experiment contract and the registry.

An experiment turns parameters into *chunks*: self-contained, JSON-serialisable dicts, each a set of runs of
one shape that advance together as one ensemble batch. ``run_chunk(spec)`` is pure (its output depends on
``spec`` only), which is what lets the sweep layer hash, skip, retry and ship chunks to other processes.
Data flows one way: params -> chunks -> results table -> figures/report.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from plasticlab.errors import PlasticlabError, unknown_choice

if TYPE_CHECKING:
    from plasticlab.claims import Claim

_REGISTRY: dict[str, Experiment] = {}


class Experiment:
    """The experiment contract: parameters -> chunks -> ``run_chunk`` tables -> report (see module doc)."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line, shown by `plasticlab list`
    budget_s: ClassVar[float] = 60.0  # the promise for quick=True on 2 cores
    defaults: ClassVar[dict[str, Any]]  # full (paper) size
    quick: ClassVar[dict[str, Any]] = {}  # overrides applied by quick=True
    choices: ClassVar[Mapping[str, Sequence[Any]]] = {}  # allowed values for a key (each element, for lists)
    paper: ClassVar[bool] = True  # part of `plasticlab reproduce` (False for demos)
    columns: ClassVar[tuple[str, ...]] = ()  # columns every run_chunk table has (checked by a contract test)
    tiny: ClassVar[dict[str, Any] | None] = None  # overrides for a run of seconds (the contract test runs it)

    def chunks(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def run_chunk(self, spec: dict[str, Any]) -> pd.DataFrame:
        raise NotImplementedError

    def report(self, df: pd.DataFrame, p: dict[str, Any], out: Path) -> None:
        raise NotImplementedError

    def claims(self, df: pd.DataFrame, p: dict[str, Any]) -> list[Claim]:
        """The papers' claims this experiment tests, with our numbers from ``df`` (pure: no files, no plots)."""
        return []

    def size(self, p: dict[str, Any]) -> str:
        """What size ``p`` is: "paper", "quick", or the exact reduction ("steps 2000 (full 20000); …")."""
        if p == self.defaults:
            return "paper"
        if p == self.params(quick=True):
            return "quick"
        diffs = []
        for key, full in self.defaults.items():
            ours = p.get(key)
            if ours == full:
                continue
            if isinstance(full, list) and isinstance(ours, list):
                diffs.append(
                    f"{key} {len(ours)} of {len(full)}"
                    if set(map(str, ours)) <= set(map(str, full))
                    else f"{key} {_short(ours)} (full {_short(full)})"
                )
            else:
                diffs.append(f"{key} {_short(ours)} (full {_short(full)})")
        return "; ".join(diffs)

    # -- parameters -----------------------------------------------------------------------------------
    def params(self, quick: bool = False, **overrides: Any) -> dict[str, Any]:
        p = copy.deepcopy(self.defaults)
        if quick:
            p.update(copy.deepcopy(self.quick))
        for key, value in overrides.items():
            if key not in p:
                raise unknown_choice(f"parameter for {self.name}", key, p)
            p[key] = coerce(self.name, key, value, p[key], self.choices.get(key))
        self.validate(p)
        return p

    def validate(self, p: dict[str, Any]) -> None:
        """Hook for cross-parameter checks; raise PlasticlabError with a readable message."""


def _short(v: Any) -> str:
    if isinstance(v, list) and len(v) > 4:
        return f"[{', '.join(map(str, v[:2]))}, …, {v[-1]}] ({len(v)})"
    return str(v)


def register(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator adding an Experiment to the registry under its ``name``."""
    _REGISTRY[cls.name] = cls()
    return cls


def _discover() -> None:
    import importlib
    import pkgutil

    import plasticlab.experiments as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_") and mod.name != "base":
            importlib.import_module(f"plasticlab.experiments.{mod.name}")


def get(name: str) -> Experiment:
    """The registered experiment ``name`` (unknown names: one-line error listing the valid ones)."""
    _discover()
    if name not in _REGISTRY:
        raise unknown_choice("experiment", name, _REGISTRY)
    return _REGISTRY[name]


def all_experiments() -> dict[str, Experiment]:
    """Every registered experiment by name, sorted."""
    _discover()
    return dict(sorted(_REGISTRY.items()))


# -- value coercion: `--set gammas=0,5e-5` and run(gammas=[0, 5e-5]) mean the same ------------------------
def parse_value(text: str) -> Any:
    """A CLI value: a Python literal, a comma list of literals, or a bare string."""
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    if "," in text:
        return [parse_value(t) for t in text.split(",") if t.strip()]
    low = text.lower()
    if low in {"true", "false"}:
        return low == "true"
    if low in {"none", "null"}:
        return None
    return text


def _coerce_scalar(exp: str, key: str, value: Any, like: Any) -> Any:
    if isinstance(like, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
            return value.lower() in {"true", "1", "yes", "on"}
        if value in (0, 1):
            return bool(value)
    elif isinstance(like, int):
        if isinstance(value, bool):
            pass
        elif isinstance(value, int):
            return value
        elif isinstance(value, float) and value.is_integer():
            return int(value)
        elif isinstance(value, str):
            try:
                f = float(value)
                if f.is_integer():
                    return int(f)
            except ValueError:
                pass
    elif isinstance(like, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(like, str):
        if isinstance(value, str):
            return value
    elif like is None:
        return value
    raise PlasticlabError(
        f"bad value for {exp} parameter {key!r}: {value!r}; expected {type(like).__name__} like {like!r}"
    )


def coerce(exp: str, key: str, value: Any, like: Any, choices: Sequence[Any] | None = None) -> Any:
    """``value`` (CLI string or Python value) as the type of ``like``, checked against ``choices``."""
    if isinstance(value, str):
        value = parse_value(value)
    if isinstance(like, (list, tuple)):
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not items:
            raise PlasticlabError(f"bad value for {exp} parameter {key!r}: an empty list")
        elem = like[0] if like else None
        out = [_coerce_scalar(exp, key, v, elem) for v in items]
    else:
        out = _coerce_scalar(exp, key, value, like)
    if choices is not None:
        for v in out if isinstance(out, list) else [out]:
            if v not in choices:
                raise unknown_choice(f"value for {exp} parameter {key!r}", v, choices)
    return out
