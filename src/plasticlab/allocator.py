"""Keep freed memory in the process instead of handing each large block back to the OS.

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and returns it
with ``munmap`` on free. An engine that makes a new 40 MB weight tensor at every step (curl-readout's
largest shapes: 420 members × 99 × 120 in float64) then pays for the kernel zero-filling ~10 000 fresh
pages per tensor. Beside two running sweeps (load ≈ 3) that cost more than the arithmetic: the moment step
of that shape took 189 ms per epoch with glibc's defaults and 74 ms with freed blocks kept. On a quiet
machine the two are equal (≈ 8.9 ms; docs/performance.md), so this helps under contention and costs nothing
otherwise.
Turning glibc's mmap off and raising its trim threshold lets a freed block be reused by the next
allocation of its size.

It is process-wide, so plasticlab sets it only where it runs its own chunks (``sweeps.worker``), not on
import; ``PLASTICLAB_KEEP_FREED_MEMORY=0`` turns it off. A process's peak memory is unchanged; what it has
freed is kept for reuse rather than returned.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4
_TRIM_BYTES = 2**31 - 1  # mallopt takes an int: keep up to 2 GB of freed top-of-heap memory

_state: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse (idempotent). True if the setting is in effect; False where
    it is switched off or unavailable (not Linux, a libc without ``mallopt`` such as musl)."""
    global _state
    if _state is None:
        _state = _apply()
    return _state


def _apply() -> bool:
    if not sys.platform.startswith("linux") or os.environ.get("PLASTICLAB_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; set the trim threshold first so that a failure leaves mmap as it was
    return bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES)) and bool(mallopt(_M_MMAP_MAX, 0))
