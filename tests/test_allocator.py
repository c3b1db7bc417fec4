"""keep_freed_memory: a freed large block is reused, not mapped anew (counted in page faults, not timed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from plasticlab.study import RunContext

# Allocate and free a 40 MB tensor n times and count the minor page faults: with glibc's defaults every
# allocation is a fresh mmap (≈ 10 000 faults each); with freed blocks kept, the count does not grow with n
# (the first allocation or two fault their pages in, depending on what the heap held before).
PROBE = """
import resource, sys, torch
from plasticlab.allocator import keep_freed_memory
on = keep_freed_memory() if sys.argv[1] == "keep" else False
x = torch.ones(5_000_000, dtype=torch.float64)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(int(sys.argv[2])):
    y = x * 2.0  # a new 40 MB result each time; the previous one is freed
    del y
print(int(on), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, env: dict | None = None, n: int = 40) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(n)], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return bool(int(out[0])), int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_freed_blocks_are_reused():
    on, kept = _faults("keep", n=40)
    if not on:
        pytest.skip("this libc has no mallopt (not glibc)")
    _, default = _faults("default", n=40)
    pages = 40e6 / 4096
    assert default > 35 * pages  # the default maps (and faults in) each of the 40 allocations anew
    # kept: one tensor's pages in most runs, up to four seen (where the heap's free space lies at start
    # varies); a bound of 10 of the 40 still separates the two by 4x
    assert kept < 10 * pages


def test_switch_off(monkeypatch):
    import os

    env = dict(os.environ, PLASTICLAB_KEEP_FREED_MEMORY="0")
    on, _ = _faults("keep", env)
    assert not on


def test_worker_turns_it_on(monkeypatch):
    from plasticlab import allocator
    from plasticlab.sweeps import worker

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    worker._run_task("no-such-experiment", {}, RunContext())  # fails to find the experiment, after the setting
    assert calls == [1]
