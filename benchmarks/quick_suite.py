"""quick-suite: wall time of every registered experiment's ``--quick`` run against its stated budget.

Each experiment runs in a fresh subprocess, exactly as a user would start it,
``python -m plasticlab.cli run NAME --quick --quiet --out TMP``, so that one crash (or hang: a timeout of
``--timeout-factor`` × budget) does not stop the rest and every run pays its own start-up and imports.
One line per experiment: wall seconds, CPU seconds (user + sys of the child: much less sensitive to other
jobs on the machine than wall time), the budget and pass/fail (exit 0 and wall ≤ budget). The machine's load
average is printed before and after, since wall times on a shared machine scale with it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from benchmarks.common import cores, load


def run_one(name: str, out: str, timeout: float, plugins: Sequence[str] = ()) -> tuple[int | None, float, str]:
    """(exit code or None on timeout, wall s, last stderr line)."""
    cmd = [sys.executable, "-m", "plasticlab.cli", "run", name, "--quick", "--quiet", "--out", out]
    cmd += [arg for p in plugins for arg in ("--plugin", p)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        code = None
    return code, time.perf_counter() - t0, (err.strip().splitlines() or [""])[-1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks quick-suite", description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated experiment names (default: all registered)")
    ap.add_argument("--timeout-factor", type=float, default=4.0, help="kill a run after this × its budget")
    ap.add_argument("--full", action="store_true", help="(no effect: the suite is the --quick runs)")
    ap.add_argument("--plugin", action="append", default=[], help="a plugin module or .py file (repeatable)")
    a = ap.parse_args(argv)
    import resource

    from plasticlab.study import all_experiments, load_plugins

    load_plugins(a.plugin)
    exps = all_experiments()
    names = [n for n in a.only.split(",") if n] or list(exps)
    unknown = [n for n in names if n not in exps]
    if unknown:
        raise SystemExit(f"unknown experiment(s) {unknown}; registered: {', '.join(exps)}")
    print(f"== quick-suite: `plasticlab run NAME --quick` for {len(names)} experiments, each in a fresh process")
    print(
        f"machine: {cores()} cores available (runs use torch's default threads), "
        f"load average {load()} (1/5/15 min) at start"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="plasticlab-quick-") as tmp:
        for name in names:
            budget = float(exps[name].budget_s)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            code, wall, last = run_one(name, os.path.join(tmp, name), a.timeout_factor * budget, a.plugin)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child was reaped: its usage is in
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            ok = code == 0 and wall <= budget
            status = (
                ("pass" if ok else "FAIL (over budget)")
                if code == 0
                else (
                    f"FAIL (timeout after {wall:.0f} s)" if code is None else f"FAIL (exit {code}: {last[:120]})"
                )
            )
            print(
                f"{name}: wall {wall:.1f} s, cpu {cpu:.1f} s, budget {budget:.0f} s, "
                f"wall/budget {wall / budget:.2f}, {status}  [load {load()}]",
                flush=True,
            )
            rows.append((name, wall, cpu, budget, code, ok))
    n_ok = sum(r[-1] for r in rows)
    worst = max(rows, key=lambda r: r[1] / r[3])
    print(f"load average at end: {load()}")
    print(
        f"within budget: {n_ok}/{len(rows)}; cpu within budget: "
        f"{sum(r[4] == 0 and r[2] <= r[3] for r in rows)}/{len(rows)}"
    )
    print(f"worst ratio wall/budget: {worst[1] / worst[3]:.2f} ({worst[0]})")


if __name__ == "__main__":
    main()
