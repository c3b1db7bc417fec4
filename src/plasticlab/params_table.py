"""`plasticlab params NAME`: every `--set` key of an experiment with its default, quick value, type and
allowed values, read from the same declarations the validator checks."""

from __future__ import annotations

from typing import Any

from plasticlab.study import Constraint, Experiment, ListOf, constraint_for


def _show(value: Any, width: int = 34) -> str:
    text = (",".join(map(str, value)) if value else "[]") if isinstance(value, list) else str(value)
    text = text if text != "" else '""'
    return text if len(text) <= width else text[: width - 1] + "…"


def _type_name(c: Constraint) -> str:
    if isinstance(c, ListOf):
        return f"list[{_type_name(c.elem)}]"
    return c.kind.__name__ if c.kind is not None else "any"


def rows(exp: Experiment) -> list[dict[str, str]]:
    """One row per key: key, default, quick, type, allowed (the validator's own description)."""
    out = []
    for key, default in exp.defaults.items():
        c = constraint_for(exp, key)
        quick = exp.quick.get(key, default)
        out.append(
            dict(
                key=key,
                default=_show(default),
                quick=_show(quick) if key in exp.quick else "(same)",
                type=_type_name(c),
                allowed=c.describe(),
            )
        )
    return out


def params_table(exp: Experiment) -> str:
    """The table `plasticlab params NAME` prints, plus the cross-parameter rules."""
    table = rows(exp)
    cols = ["key", "default", "quick", "type", "allowed"]
    widths = {c: max(len(c), *(len(r[c]) for r in table)) for c in cols[:-1]}
    line = lambda r: "  ".join(r[c].ljust(widths[c]) for c in cols[:-1]) + "  " + r["allowed"]
    lines = [f"{exp.name}: --set KEY=VALUE (lists: a,b,c)", line({c: c for c in cols})]
    lines += [line(r) for r in table]
    from plasticlab.study import COMMON_RELATIONS

    rels = [r.text for r in [*COMMON_RELATIONS, *exp.relations] if all(k in exp.defaults for k in r.keys)]
    if rels:
        lines.append("also: " + "; ".join(rels))
    return "\n".join(lines)
