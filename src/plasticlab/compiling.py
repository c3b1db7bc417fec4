"""Opt-in ``torch.compile`` of the engines' step functions, with a one-line fallback to eager.

``plasticlab.run(..., compile=True)`` (CLI: ``--set compile=true``) turns it on for a run; engines also
take ``compile=`` directly. Compiling costs seconds to a minute once per shape (see docs/performance.md);
it pays off on long runs only. Where compilation is unavailable (no C++ toolchain, an unsupported op),
``compiled`` warns once and the step runs eagerly.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from plasticlab.errors import PlasticlabError

_enabled = False


def enabled() -> bool:
    """Whether engines compile their steps when not told otherwise."""
    return _enabled


def as_flag(value: Any) -> bool:
    """``compile=`` from the API (bool) or the CLI ("true"/"false"/"1"/"0"), one-line error otherwise."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise PlasticlabError(f"compile={value!r} is not a boolean; valid: true, false")


@contextlib.contextmanager
def use(flag: Any) -> Iterator[bool]:
    """Turn compilation on or off inside the block; the previous setting is back afterwards."""
    global _enabled
    saved, _enabled = _enabled, as_flag(flag)
    try:
        yield _enabled
    finally:
        _enabled = saved


class Compiled:
    """``fn`` compiled with torch.compile on first use; if compiling fails, one warning line and ``fn``."""

    def __init__(self, fn: Callable, name: str, dynamic: bool | None = False):
        self.fn, self.name, self.dynamic = fn, name, dynamic
        self._compiled: Callable | None = None
        self._failed = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the compiled function (compiling on the first call per shape), or ``fn`` after a failure."""
        if self._failed:
            return self.fn(*args, **kwargs)
        try:
            if self._compiled is None:
                import torch

                # One compiled step serves every rule and shape a process runs (a sweep worker runs many
                # chunks), and each is its own graph: past torch's default of 8 per function, dynamo would
                # quietly run the rest eagerly.
                torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
                from plasticlab import seeding

                seeding.keep_out_of_compiled_graphs()
                self._compiled = torch.compile(self.fn, dynamic=self.dynamic)
            return self._compiled(*args, **kwargs)
        except Exception as e:  # any compiler failure means: run eagerly
            self._failed = True
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            warnings.warn(
                f"torch.compile unavailable for {self.name} ({first[:120]}); running eagerly", stacklevel=2
            )
            return self.fn(*args, **kwargs)
