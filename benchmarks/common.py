"""Helpers shared by the benchmarks: thread setup, machine/load description, robust timing."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def set_threads(n: int | None = None) -> int:
    """torch intra-op threads = the cores available (or ``n``); returns the number set."""
    n = n or cores()
    torch.set_num_threads(n)
    return n


def load() -> str:
    """The 1/5/15-minute load averages, e.g. '7.9/7.4/5.2' (other jobs competing for the cores)."""
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or "unknown CPU"


def header(name: str, what: str) -> None:
    print(f"== {name}: {what}")
    print(
        f"machine: {cpu_model()}, {cores()} cores available, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch thread(s), load average {load()} (1/5/15 min)"
    )


def line(label: str, value: float, unit: str = "", fmt: str = ".4g") -> None:
    """One figure per line: ``label: value unit``."""
    print(f"{label}: {value:{fmt}}{(' ' + unit) if unit else ''}", flush=True)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best_of(fn: Callable[[], object], repeat: int, number: int = 1) -> tuple[float, float]:
    """(minimum, median) seconds per call of ``fn`` over ``repeat`` rounds of ``number`` calls.

    On a shared machine the minimum is the least-disturbed estimate; the median shows the spread."""
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        ts.append((time.perf_counter() - t0) / number)
    return min(ts), statistics.median(ts)
