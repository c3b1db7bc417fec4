"""mlp-step: the MLP trainer (``train_mlp``) eager vs compiled at hebb-table's chunk shape; what compiling costs.

Setting: hebb-table's paper chunk — widths 32-64-64-32, tanh, 4 decays × 10 seeds = 40 members, batch 256,
one rule — for ``--steps`` steps, one torch thread (as sweep chunks run). Prints the compile time (the first
compiled run minus an eager run of the same length: paid once per shape, rule and process; the on-disk
cache makes later processes cheaper), the median of ``--repeat`` runs per mode, their ratio, and the largest
weight difference between the two (compiled must equal eager to rounding).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from benchmarks.common import header, line, load, set_threads


def run(rule: str, dtype: torch.dtype, steps: int, compile: bool, members: int = 40):
    from plasticlab.networks.mlp import init_mlp
    from plasticlab.rules import make_rule
    from plasticlab.simulation.train_mlp import train_mlp
    from plasticlab.tasks import teacher_regression

    seeds = list(range(members))
    data = teacher_regression(seeds, d_in=32, d_out=32, n_train=20000, n_val=2000, dtype=dtype)
    net = init_mlp(seeds, [32, 64, 64, 32], "tanh", dtype=dtype)
    r = make_rule(rule, gamma=np.resize([0.0, 5e-5, 5e-4, 5e-3], members))
    t0 = time.perf_counter()
    res = train_mlp(net, r, data, seeds, steps=steps, lr=0.01, record_every=max(steps // 40, 1), compile=compile)
    return time.perf_counter() - t0, res


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; ``argv`` as on the command line."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks mlp-step", description=__doc__.split("\n")[0])
    ap.add_argument("--rule", default="adam")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    set_threads(1)
    dt = getattr(torch, a.dtype)
    what = f"train_mlp, widths 32-64-64-32, 40 members, batch 256, {a.rule}, {a.dtype}, {a.steps} steps"
    header("mlp-step", what)
    t_eager0, _ = run(a.rule, dt, a.steps, False)
    t_first, _ = run(a.rule, dt, a.steps, True)
    line("compile time (first compiled run minus an eager run)", t_first - t_eager0, "s")
    times: dict[bool, list[float]] = {False: [], True: []}
    out = {}
    for _ in range(a.repeat):
        for mode in (False, True):
            t, out[mode] = run(a.rule, dt, a.steps, mode)
            times[mode].append(t)
    for mode, name in ((False, "eager"), (True, "compiled")):
        ts = times[mode]
        line(f"{name}, median of {a.repeat} (min {min(ts):.3g}, max {max(ts):.3g})", statistics.median(ts), "s")
    line("ratio eager / compiled", statistics.median(times[False]) / statistics.median(times[True]), "x", ".2f")
    diff = max((x - y).abs().max().item() for x, y in zip(out[True].net.weights, out[False].net.weights))
    line("max |compiled - eager| weight difference", diff, "", ".2e")
    print(f"load average at the end: {load()} (1/5/15 min)")


if __name__ == "__main__":
    main()
