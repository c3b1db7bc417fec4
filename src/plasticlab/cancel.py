"""Cooperative cancellation of a running chunk.

Long loops call :func:`check` between blocks of steps. In the main process Ctrl-C already interrupts
Python code directly, and local pool workers are terminated by the main process; but a chunk running in
a Dask worker's thread can only stop itself, so there the sweep layer installs a checker that asks the
scheduler whether the run was cancelled (at most once a second: the question is a network round trip).
"""

from __future__ import annotations

import time
from collections.abc import Callable

_checker: Callable[[], bool] | None = None
_every_s = 1.0
_last = 0.0


class Cancelled(Exception):
    """The run this chunk belongs to was interrupted; the chunk's partial work is discarded."""


def set_checker(checker: Callable[[], bool] | None, every_s: float = 1.0) -> None:
    """Install (or with None remove) the function that says whether the current chunk is cancelled."""
    global _checker, _every_s, _last
    _checker, _every_s, _last = checker, every_s, 0.0


def check() -> None:
    """Raise :class:`Cancelled` if the run was cancelled; cheap enough to call every step."""
    global _last
    if _checker is None:
        return
    t = time.monotonic()
    if t - _last < _every_s:
        return
    _last = t
    if _checker():
        raise Cancelled("the run was interrupted; this chunk was cancelled")


def sleep(seconds: float) -> None:
    """``time.sleep`` that notices a cancellation within a fraction of a second."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 0.2))
        check()
