"""`plasticlab params NAME`: every `--set` key of an experiment with its default, quick value, type, allowed
values and which chunks it is in, read from the same declarations the validator checks.

Which chunks a key is in is measured, not declared: the experiment's chunks are built at its defaults and
again with that one key changed (a list loses its last value or gains one; a number, flag or choice takes
another valid value), and their hashes compared. ``splits``: the key sets how many chunks there are (one per
value or block of values), so adding a value computes only the new chunks; ``every``: it is in every chunk,
so changing it recomputes them all; ``some``: it is in some; ``none``: it is read by the report only, so
changing it reuses every finished chunk; ``?``: no other valid value was found to try.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

from plasticlab.study import Constraint, Experiment, ListOf, Options, constraint_for

WIDTH = 34  # default and quick cells wrap at this width (whole values, never cut)

# Keys every experiment takes that are not parameters of the experiment itself (`--set compile=true` is
# passed to plasticlab.run): key -> (default, type, allowed)
RUN_KEYS = {
    "compile": ("false", "bool", "true or false: run the engines' steps through torch.compile (same numbers)"),
}

LEGEND = (
    "chunks: splits = one chunk per value (or block), so adding one computes only the new chunks; every = in "
    "every chunk (changing it recomputes all); some = in some; none = report only (every finished chunk is reused)"
)


def _text(value: Any) -> str:
    text = (",".join(map(str, value)) if value else "[]") if isinstance(value, list) else str(value)
    return text if text != "" else '""'


def _wrap(text: str, width: int = WIDTH) -> list[str]:
    """``text`` in lines of at most ``width``, broken after commas (a single longer token stays whole)."""
    lines, line = [], ""
    for token in text.replace(",", ",\0").split("\0"):
        if line and len(line) + len(token) > width:
            lines.append(line)
            line = ""
        line += token
    return [*lines, line]


def _type_name(c: Constraint) -> str:
    if isinstance(c, ListOf):
        return f"list[{_type_name(c.elem)}]"
    return c.kind.__name__ if c.kind is not None else "any"


def _candidates(c: Constraint, value: Any) -> Iterator[Any]:
    """Other values for a key, in order of preference (the validator decides which are allowed)."""
    if isinstance(value, list):
        if len(value) >= 2:
            yield value[:-1]
        elem = c.elem if isinstance(c, ListOf) else None
        for extra in _candidates(elem, value[-1] if value else None) if elem is not None else ():
            if extra not in value:
                yield [*value, extra]
        return
    if isinstance(c, Options):
        yield from (v for v in c.values if v != value)
    elif isinstance(value, bool):
        yield not value
    elif isinstance(value, int) or (value is None and c.kind is int):
        n = int(value or 0)
        yield from (n + 1, n - 1, n + 2, n * 2)
    elif isinstance(value, float) or (value is None and c.kind is float):
        x = float(value or 0.0)
        yield from (x * 2, x / 2, x + 0.5, x + 1.0, 0.5, 0.1) if x else (0.5, 0.1, 1.0)
    elif isinstance(value, str):
        yield value + "x"


def chunk_role(exp: Experiment, key: str) -> str:
    """splits | every | some | none | ? (see the module doc)."""
    from plasticlab.sweeps.execute import hashes_of

    try:
        base = set(hashes_of(exp, exp.chunks(exp.params())))
    except Exception:
        return "?"
    for other in _candidates(constraint_for(exp, key), exp.defaults[key]):
        try:
            changed = set(hashes_of(exp, exp.chunks(exp.params(**{key: other}))))
        except Exception:  # not allowed (a relation, a range): try the next value
            continue
        if len(changed) != len(base):
            return "splits"
        if changed == base:
            return "none"
        return "some" if changed & base else "every"
    return "?"


def rows(exp: Experiment) -> list[dict[str, str]]:
    """One row per key: key, default, quick, type, chunks, allowed (the validator's own description)."""
    out = []
    for key, default in exp.defaults.items():
        c = constraint_for(exp, key)
        out.append(
            dict(
                key=key,
                default=_text(default),
                quick=_text(exp.quick[key]) if key in exp.quick else "(same)",
                type=_type_name(c),
                chunks=chunk_role(exp, key),
                allowed=c.describe(),
            )
        )
    for key, (default, kind, allowed) in RUN_KEYS.items():
        out.append(dict(key=key, default=default, quick="(same)", type=kind, chunks="none", allowed=allowed))
    return out


def params_table(exp: Experiment) -> str:
    """The table `plasticlab params NAME` prints, plus the cross-parameter rules."""
    table = rows(exp)
    cols = ["key", "default", "quick", "type", "chunks", "allowed"]
    cells = [{c: _wrap(r[c]) if c in ("default", "quick") else [r[c]] for c in cols} for r in table]
    head = {c: [c] for c in cols}
    widths = {c: max(len(line) for r in [head, *cells] for line in r[c]) for c in cols[:-1]}

    def render(r: dict[str, list[str]]) -> list[str]:
        height = max(len(v) for v in r.values())
        out = []
        for i in range(height):
            parts = [(r[c][i] if i < len(r[c]) else "").ljust(widths[c]) for c in cols[:-1]]
            out.append(("  ".join(parts) + "  " + (r["allowed"][i] if i < len(r["allowed"]) else "")).rstrip())
        return out

    lines = [f"{exp.name}: --set KEY=VALUE (lists: a,b,c)", *render(head)]
    for r in cells:
        lines += render(r)
    from plasticlab.study import COMMON_RELATIONS

    rels = [r.text for r in [*COMMON_RELATIONS, *exp.relations] if all(k in exp.defaults for k in r.keys)]
    if rels:
        lines.append("also: " + "; ".join(rels))
    lines += textwrap.wrap(LEGEND, 110, subsequent_indent="  ")
    return "\n".join(lines)
