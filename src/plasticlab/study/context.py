"""The run context: where and how a chunk is computed (never what), passed to ``run_chunk``.

It replaces module globals that once carried the device and compile flag from the CLI to the engines: the
sweep layer builds one context per run and ships it with every chunk, to local workers and to Dask alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunContext:
    """``device`` ("cpu", "cuda", "cuda:1"), ``compile`` (run engine steps through torch.compile), ``threads``
    (torch intra-op threads per worker; None: leave torch's default) and ``plugins`` (modules a worker
    imports before it looks the experiment up, so a user's rule or experiment runs by name anywhere)."""

    device: str = "cpu"
    compile: bool = False
    threads: int | None = None
    plugins: tuple[str, ...] = field(default_factory=tuple)

    def torch_device(self) -> Any:
        """The device as a ``torch.device``."""
        import torch

        return torch.device(self.device)

    def with_(self, **changes: Any) -> RunContext:
        """A copy with some fields replaced."""
        from dataclasses import replace

        return replace(self, **changes)
