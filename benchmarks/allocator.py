"""Freed memory kept for reuse vs glibc's defaults, on the step it matters most for: the curl moment step
(linear, full batch) at curl-readout's paper shape with the most weights per member (420 members, float64).

Each setting runs in its own fresh process, alternating, because the setting is process-wide and cannot be
undone. Per run: ms per epoch = the simulation's own timing of its epoch loop (``loop_seconds``, as
``paper-cost`` times it) / epochs, so the set-up (data, teacher, initial state) is not charged to the step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from benchmarks.common import header, load, set_threads


def _shape() -> dict:
    from plasticlab.experiments import get

    exp = get("curl-readout")
    return max(exp.chunks(dict(exp.defaults)), key=lambda c: c["M"] * c["N"])


def child(keep: bool, epochs: int) -> float:
    """ms per epoch of the moment step in this process, with or without freed memory kept."""
    from benchmarks.flops import chunk_work
    from benchmarks.paper_cost import _stepper, _time
    from plasticlab.allocator import keep_freed_memory

    set_threads(1)
    if keep and not keep_freed_memory():
        raise SystemExit("keeping freed memory is unavailable here (not Linux with glibc)")
    run, _ = _stepper(chunk_work("curl-readout", _shape()))
    run(1)  # imports and first allocations
    return _time(run, epochs) / epochs * 1e3


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks allocator", description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--child", choices=["default", "keep"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child == "keep", a.epochs)))
        return
    s = _shape()
    header(
        "allocator", f"curl moment step, M={s['M']}, N={s['N']}, 420 members, float64: freed memory kept vs not"
    )
    loads = [load()]
    ms: dict[str, list[float]] = {"default": [], "keep": []}
    for _ in range(a.repeats):
        for mode in ms:
            cmd = [sys.executable, "-m", "benchmarks", "allocator", "--child", mode, "--epochs", str(a.epochs)]
            ms[mode].append(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))
    loads.append(load())
    for mode, v in ms.items():
        print(f"{mode}: {statistics.median(v):.1f} ms per epoch (range {min(v):.1f}–{max(v):.1f}, n = {len(v)})")
    ratio = statistics.median(ms["default"]) / statistics.median(ms["keep"])
    print(f"speed-up from keeping freed memory: {ratio:.2f}× (median over median); load before/after {loads}")


if __name__ == "__main__":
    main()
