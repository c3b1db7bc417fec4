"""Declared parameters, checked at the door by one validator (scikit-learn's ``_parameter_constraints``).

An experiment declares its parameters by their defaults (full size), a ``quick`` override, ``choices`` and
``constraints``; :func:`validate_params` checks every key with one message style, and :func:`coerce` turns a
CLI string (``--set gammas=0,5e-4``) and a Python value into the same typed value.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from plasticlab.errors import PlasticlabError, unknown_choice


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
        # an empty list is a value like any other here: the key's ListOf constraint (its min_len) decides,
        # so a manifest's own params (curl-speedup's slow_init_scales: []) read back as they were written
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        elem = like[0] if like else None
        out = [_coerce_scalar(exp, key, v, elem) for v in items]
    else:
        out = _coerce_scalar(exp, key, value, like)
    if choices is not None:
        for v in out if isinstance(out, list) else [out]:
            if v not in choices:
                raise unknown_choice(f"value for {exp} parameter {key!r}", v, choices)
    return out


# -- declared parameter constraints (scikit-learn's `_parameter_constraints`, one validator) -------------
MAX_STEPS = 10_000_000  # steps/epochs: ~a day of the largest chunk; beyond that a typo (1e12) runs forever
MAX_SEED = 2**63 - 1  # seeds are int64 counters (plasticlab.seeding)
SEED_BLOCK = 10


def seed_blocks(seeds: Sequence[int], size: int = SEED_BLOCK) -> list[list[int]]:
    """``seeds`` in consecutive blocks of ``size``, one chunk each. A run extended by more seeds (10 → 20 →
    40) then reuses every block it finished, which is sound because a member's numbers depend on its own
    seed only (the same alone or in a batch)."""
    seeds = list(seeds)
    return [seeds[i : i + size] for i in range(0, len(seeds), size)]


MAX_SIZE = 1_000_000  # widths, batch and data set sizes: far past a laptop's memory, short of overflow


class Constraint:
    """What values a parameter (or each element of a list parameter) may take."""

    kind: type | None = None  # the Python type --set values are coerced to

    def problem(self, value: Any) -> str | None:
        """None if ``value`` is allowed, else a short reason."""
        raise NotImplementedError

    def describe(self) -> str:
        """The allowed values in words: "an integer in [1, 10000000]"."""
        raise NotImplementedError


class Interval(Constraint):
    """A number of type ``kind`` (int or float) between ``lo`` and ``hi``; floats must be finite.
    ``closed`` says which ends are included: "both", "left", "right" or "neither"."""

    def __init__(self, kind: type, lo: float | None = None, hi: float | None = None, closed: str = "both"):
        self.kind, self.lo, self.hi, self.closed = kind, lo, hi, closed

    def problem(self, value: Any) -> str | None:
        """None for a finite ``kind`` number inside the interval, else why not (not a number, out of range …)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "not a number"
        if self.kind is int and not isinstance(value, int):
            return "not an integer"
        if not math.isfinite(value):
            return "not finite"
        lo_ok = self.lo is None or (value >= self.lo if self.closed in ("both", "left") else value > self.lo)
        hi_ok = self.hi is None or (value <= self.hi if self.closed in ("both", "right") else value < self.hi)
        return None if lo_ok and hi_ok else "out of range"

    def describe(self) -> str:
        """The type and interval in words: "an integer in [1, 10000000]", "a finite number > 0"."""
        what = "an integer" if self.kind is int else "a finite number"
        left, right = (
            ("[" if self.closed in ("both", "left") else "("),
            ("]" if self.closed in ("both", "right") else ")"),
        )
        if self.lo is not None and self.hi is not None:
            return f"{what} in {left}{_num(self.lo)}, {_num(self.hi)}{right}"
        if self.lo is not None:
            return f"{what} {'>=' if left == '[' else '>'} {_num(self.lo)}"
        if self.hi is not None:
            return f"{what} {'<=' if right == ']' else '<'} {_num(self.hi)}"
        return what


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


class Options(Constraint):
    """One of a fixed (or live, e.g. the rule registry's names) set of values."""

    def __init__(self, values: Sequence[Any]):
        self.values = values
        first = next(iter(values), None)
        self.kind = type(first) if first is not None else None

    def problem(self, value: Any) -> str | None:
        """None if ``value`` is one of the choices, else why not."""
        return None if value in self.values else "not one of the choices"  # live views check themselves

    def describe(self) -> str:
        """The choices in words: "one of float64, float32"."""
        return "one of " + ", ".join(str(v) for v in self.values)


class Text(Constraint):
    """Any string (a path, a label); ``nonempty`` refuses ""."""

    kind = str

    def __init__(self, nonempty: bool = False):
        self.nonempty = nonempty

    def problem(self, value: Any) -> str | None:
        """None for a string (non-empty if ``nonempty``), else why not."""
        if not isinstance(value, str):
            return "not a string"
        return "empty" if self.nonempty and not value else None

    def describe(self) -> str:
        """The allowed values in words: "a string" or "a non-empty string"."""
        return "a non-empty string" if self.nonempty else "a string"


class Boolean(Constraint):
    """true or false."""

    kind = bool

    def problem(self, value: Any) -> str | None:
        """None for a bool, else why not (1 and 0 are not booleans here)."""
        return None if isinstance(value, bool) else "not true/false"

    def describe(self) -> str:
        """The allowed values in words: "true or false"."""
        return "true or false"


class ListOf(Constraint):
    """A list whose every element satisfies ``elem``. ``unique`` (the default) refuses repeats: a list whose
    values index runs (seeds, γ, rules …) with a value twice is one run counted twice, which shrinks every
    standard error. Only a list that is a shape, not a set of runs (layer widths), passes ``unique=False``."""

    def __init__(self, elem: Constraint, min_len: int = 1, max_len: int | None = None, unique: bool = True):
        self.elem, self.min_len, self.max_len, self.unique = elem, min_len, max_len, unique
        self.kind = elem.kind

    def problem(self, value: Any) -> str | None:
        """None for a list of allowed length whose elements all pass ``elem`` (and differ, if ``unique``)."""
        if not isinstance(value, list):
            return "not a list"
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            return f"{len(value)} elements"
        for v in value:
            if (why := self.elem.problem(v)) is not None:
                return f"element {v!r} is {why}"
        keys = [repr(v) for v in value]  # repr: lists of lists (shapes) have no hash
        if self.unique and len(set(keys)) < len(keys):
            dup = next(v for v, k in zip(value, keys) if keys.count(k) > 1)
            return f"{dup!r} appears {keys.count(repr(dup))} times (each value is a run; a repeat counts it twice)"
        return None

    def describe(self) -> str:
        """The list in words: "a list of 1+ distinct values, each an integer in [0, …]"."""
        n = f"{self.min_len}+" if self.max_len is None else f"{self.min_len}..{self.max_len}"
        distinct = "distinct " if self.unique else ""
        return f"a list of {n} {distinct}values, each {self.elem.describe()}"


class Require:
    """A cross-parameter constraint: ``test(*values of keys)`` must hold; ``text`` states it for users."""

    def __init__(self, keys: Sequence[str], test: Callable[..., bool], text: str):
        self.keys, self.test, self.text = tuple(keys), test, text

    def problem(self, p: Mapping[str, Any]) -> str | None:
        """``text`` if the test fails on ``p``'s values of ``keys``, else None (None too while a key is absent)."""
        if not all(k in p for k in self.keys):
            return None
        return None if self.test(*(p[k] for k in self.keys)) else self.text


POSITIVE = Interval(float, 0, None, closed="neither")
NONNEG = Interval(float, 0, None)
FRACTION = Interval(float, 0, 1)
STEPS = Interval(int, 1, MAX_STEPS)
SIZE = Interval(int, 1, MAX_SIZE)
SEEDS = ListOf(Interval(int, 0, MAX_SEED), max_len=100_000)
DTYPE = Options(["float64", "float32"])

# Keys that mean the same in every experiment; an experiment's own ``constraints`` take precedence.
COMMON: dict[str, Constraint] = dict(
    seeds=SEEDS,
    steps=STEPS,
    epochs=STEPS,
    batch_size=SIZE,
    n_train=SIZE,
    n_val=SIZE,
    d_in=SIZE,
    d_out=SIZE,
    hidden=SIZE,
    widths=ListOf(SIZE, min_len=2, unique=False),  # a shape: [32, 64, 64, 32] repeats by design
    lr=POSITIVE,
    adam_lr=POSITIVE,
    local_lr=POSITIVE,
    lr_adam=POSITIVE,
    lr_sgd=POSITIVE,
    eta=POSITIVE,
    gammas=ListOf(NONNEG),
    sigmas=ListOf(NONNEG),
    alphas=ListOf(FRACTION),
    dtype=DTYPE,
)
COMMON_RELATIONS = [
    Require(("batch_size", "n_train"), lambda b, n: b <= n, "batch_size <= n_train (a batch is drawn from it)"),
]


def _inferred(default: Any) -> Constraint:
    """The loosest constraint a default's type implies (floats still must be finite)."""
    if isinstance(default, bool):
        return Boolean()
    if isinstance(default, (int, float)):
        return Interval(type(default))
    if isinstance(default, str):
        return Text()
    if isinstance(default, list):
        elem = _inferred(default[0]) if default else Interval(int)
        return ListOf(elem, min_len=1 if default else 0)
    raise TypeError(f"no constraint can be inferred from {default!r}")


def constraint_for(exp: Any, key: str) -> Constraint:
    """Declared (``constraints``), then ``choices``, then COMMON by name, then inferred from the default."""
    if key in exp.constraints:
        return exp.constraints[key]
    default = exp.defaults[key]
    if key in exp.choices:
        opts = Options(exp.choices[key])
        return ListOf(opts) if isinstance(default, list) else opts
    return COMMON.get(key) or _inferred(default)


def validate_params(exp: Any, p: dict[str, Any]) -> None:
    """Check every parameter against its constraint, then every relation: one message style,
    ``bad value for EXP parameter 'KEY': VALUE (why); must be DESCRIPTION``."""
    for key, value in p.items():
        c = constraint_for(exp, key)
        if (why := c.problem(value)) is not None:
            if isinstance(c, Options) or (isinstance(c, ListOf) and isinstance(c.elem, Options)):
                bad = value if isinstance(c, Options) else next((v for v in value if c.elem.problem(v)), None)
                if bad is not None or isinstance(c, Options):
                    raise unknown_choice(f"value for {exp.name} parameter {key!r}", bad, list(_options(c).values))
            raise PlasticlabError(
                f"bad value for {exp.name} parameter {key!r}: {_brief(value)} ({why}); must be {c.describe()}"
            )
    for rel in [*COMMON_RELATIONS, *exp.relations]:
        if (text := rel.problem(p)) is not None:
            got = ", ".join(f"{k}={_brief(p[k])}" for k in rel.keys)
            raise PlasticlabError(f"bad values for {exp.name}: {got}; must satisfy {text}")


def _options(c: Constraint) -> Options:
    return c if isinstance(c, Options) else c.elem  # type: ignore[attr-defined]


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
