"""User-facing errors: the CLI prints them as one line and exits 2, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PlasticlabError(ValueError):
    """Bad input from the user (unknown name, bad value). Its message is meant to be read as-is."""


class PlasticlabWarning(UserWarning):
    """Something the user should know but that does not stop the run (the CLI prints one line)."""


def unknown_choice(kind: str, value: object, choices: Iterable[str]) -> PlasticlabError:
    """A PlasticlabError naming the bad value, the valid choices and the closest one."""
    choices = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return PlasticlabError(f"unknown {kind} {value!r}; valid choices: {', '.join(choices)}.{hint}")


def check_choice(kind: str, value: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else an unknown_choice error."""
    choices = list(choices)
    if value not in choices:
        raise unknown_choice(kind, value, choices)
    return value


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """``value`` if it is > 0 (>= 0 with allow_zero), else a one-line error naming ``name``."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise PlasticlabError(f"{name} must be {bound}, got {value!r}")
    return value
