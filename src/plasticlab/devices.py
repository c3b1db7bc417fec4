"""Where tensors are made: ``device="auto" | "cpu" | "cuda" | "cuda:1"`` resolved once, and a current device.

``plasticlab.run(..., device=...)`` makes its device current for the run (in-process, and in every worker
it starts); engines, tasks and networks create their tensors on ``current()`` unless given a device.
Random draws stay device-independent: ``plasticlab.seeding`` makes them from integer and exactly
rounded float64 arithmetic (the normal transform on the CPU), so a member's numbers are the same
wherever it runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from plasticlab.errors import PlasticlabError

_current: torch.device = torch.device("cpu")


def resolve(device: str | torch.device | None = "auto") -> torch.device:
    """A torch.device from ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``."""
    if isinstance(device, torch.device):
        return device
    name = "auto" if device is None else str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    valid = "auto, cpu, cuda, cuda:N"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise PlasticlabError(f"device {device!r} is not a device; valid: {valid}") from None
    if dev.type not in ("cpu", "cuda"):
        raise PlasticlabError(f"device {device!r} is not supported; valid: {valid}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise PlasticlabError(f"device {device!r}: this torch build has no usable CUDA; valid here: auto, cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            n = torch.cuda.device_count()
            raise PlasticlabError(f"device {device!r}: only {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
    return dev


def current() -> torch.device:
    """The device new tensors go to when a function is not given one (CPU unless inside ``use``)."""
    return _current


def pick(device: str | torch.device | None) -> torch.device:
    """``device`` resolved, or the current device when it is None."""
    return _current if device is None else resolve(device)


@contextlib.contextmanager
def use(device: str | torch.device | None) -> Iterator[torch.device]:
    """Make ``device`` (resolved) current inside the block; the previous one is back afterwards."""
    global _current
    saved, _current = _current, resolve(device)
    try:
        yield _current
    finally:
        _current = saved


def available() -> list[str]:
    """The devices this machine can run on: "cpu" and, when CUDA works, "cuda" (for parametrised tests)."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
