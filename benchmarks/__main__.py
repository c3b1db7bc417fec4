"""``python -m benchmarks NAME [options]`` with NAME one of ensemble, roofline, small-roofline, probe, quick-suite,
paper-cost, paper-chunk, mlp-step, allocator, all.

``all`` runs each benchmark in its own fresh process (thread settings and allocator state do not leak from
one to the next, and a crash in one does not stop the rest) and exits non-zero if any of them crashed.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time

BENCHMARKS = {  # name -> module (each defines main(argv) except probe, whose main() takes no argv)
    "ensemble": "benchmarks.ensemble",
    "roofline": "benchmarks.roofline",
    "small-roofline": "benchmarks.small_roofline",
    "probe": "benchmarks.probe",
    "quick-suite": "benchmarks.quick_suite",
    "paper-cost": "benchmarks.paper_cost",
    "paper-chunk": "benchmarks.paper_chunk",
    "mlp-step": "benchmarks.mlp_step",
    "allocator": "benchmarks.allocator",
}


def run_one(name: str, argv: list[str]) -> None:
    mod = importlib.import_module(BENCHMARKS[name])
    if name == "probe":  # benchmarks/probe.py (HebbianProbe owner) takes no command-line options
        if argv:
            sys.exit(f"benchmark probe takes no options, got {argv}")
        mod.main()
    else:
        mod.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = list(BENCHMARKS) + ["all"]
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in names:
        print(__doc__.strip())
        print(
            "\nbenchmarks: " + ", ".join(names) + "\n`python -m benchmarks NAME --help` for a benchmark's options "
            "(`--full` for the longer runs)"
        )
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name, rest = argv[0], argv[1:]
    if name != "all":
        run_one(name, rest)
        return 0
    failed = []
    for b in BENCHMARKS:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "benchmarks", b, *([] if b == "probe" else rest)])
        print(
            f"[{b}: {'ok' if r.returncode == 0 else f'CRASHED (exit {r.returncode})'}, "
            f"{time.perf_counter() - t0:.0f} s]\n",
            flush=True,
        )
        if r.returncode:
            failed.append(b)
    if failed:
        print("crashed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
