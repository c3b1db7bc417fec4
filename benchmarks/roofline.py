"""roofline: how close the curl engine runs to the machine's dense matmul throughput on a large ensemble.

Setting: M = N = 1000 (tanh, curl rule with 10 % flipped inputs and readout neurons, norm constraint on),
full batch B = P = 250 (the chaos-measurement regime: one step = one epoch), E = 4 members, float64.

Achieved FLOP/s = (matmul FLOPs of one step, counted analytically) × steps / wall time of ``simulate``
(everything included: setup — seeded teacher, data and init draws —, divergence checks, error measurements at
the checkpoints; the FLOPs of those measurements are not counted). The steady-state figure subtracts the time
of a 1-epoch run (setup + one step) and divides the rest among the other steps. Per step and member, with
x (B, M), W1 (N, M), W2 (1, N):

    a1 = x W1ᵀ          2·B·M·N      forward, hidden layer
    z  = h W2ᵀ          2·B·N        forward, readout
    δ  = e ⊗ W2         B·N          back-propagated error (outer product)
    ΔW2 = eᵀ h          2·B·N
    ΔW1 = δᵀ x          2·B·M·N

The machine's dense matmul throughput is measured in the same process with ``torch.matmul`` on the same
dtype and thread count: square 1000 × 1000 × 1000 products (the headline denominator) and, for reference,
the step's own product shape (E × (B × M) @ (M × N)) in isolation. Matmul and simulation timings are
interleaved (3 rounds each) so that drifts in machine load hit both; medians are used.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import best_of, header, line, set_threads
from plasticlab.simulation.curl import DTYPES, CurlConfig, simulate


def step_flops(E: int, B: int, M: int, N: int) -> int:
    return E * (4 * B * M * N + 5 * B * N)


def matmul_flops_per_s(shape_a, shape_b, dtype, number: int) -> float:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(*shape_a, dtype=dtype, generator=g)
    b = torch.randn(*shape_b, dtype=dtype, generator=g)
    out = torch.matmul(a, b)
    flops = 2 * out.numel() * a.shape[-1]
    torch.matmul(a, b, out=out)  # warm-up
    t_min, _ = best_of(lambda: torch.matmul(a, b, out=out), repeat=3, number=number)
    return flops / t_min


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks roofline", description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--M", type=int, default=1000)
    ap.add_argument("--N", type=int, default=1000)
    ap.add_argument("--P", type=int, default=250, help="training-set size")
    ap.add_argument("--B", type=int, default=None, help="mini-batch (default P: full batch)")
    ap.add_argument("--epochs", type=int, default=None, help="default 20; 100 with --full")
    ap.add_argument("--dtype", choices=list(DTYPES), default="float64")
    ap.add_argument("--full", action="store_true", help="5x more epochs")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores available)")
    ap.add_argument("--square", type=int, default=1000, help="size of the square reference matmul")
    a = ap.parse_args(argv)
    threads = set_threads(a.threads)
    E, M, N, P = a.members, a.M, a.N, a.P
    B = a.B or P
    epochs = a.epochs or (100 if a.full else 20)
    dt = DTYPES[a.dtype]
    cfg = CurlConfig(
        M=M,
        N=N,
        activation="tanh",
        P=P,
        B=B,
        epochs=epochs,
        norm_constraint=True,
        points_per_decade=2,
        dtype=a.dtype,
    )
    steps = epochs * (P // B)
    seeds = list(range(E))
    kw = dict(k1=M // 10, k2=N // 10, rule="gd_flip")
    header("roofline", f"curl engine, E={E} members, M={M}, N={N}, B={B}, P={P}, tanh, {a.dtype}, {steps} steps")
    print(f"threads: {threads} (set here; the engine leaves them as it finds them)")

    simulate(CurlConfig(M=M, N=N, P=P, B=B, epochs=1, dtype=a.dtype), seeds[:1], **kw)  # warm-up
    one = CurlConfig(**{**cfg.__dict__, "epochs": 1})
    sq, own, sim, sim1 = [], [], [], []
    for _ in range(3):
        sq.append(matmul_flops_per_s((a.square, a.square), (a.square, a.square), dt, number=3))
        own.append(matmul_flops_per_s((E, B, M), (E, M, N), dt, number=2))
        t0 = time.perf_counter()
        simulate(one, seeds, **kw)
        sim1.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = simulate(cfg, seeds, **kw)
        sim.append(time.perf_counter() - t0)
    if res.diverged.any():
        raise SystemExit("members diverged: the FLOP count would not match the work done")
    t_sim, t_one = statistics.median(sim), statistics.median(sim1)
    achieved = step_flops(E, B, M, N) * steps / t_sim
    # (noisy for tiny runs, where the two times are close: NaN rather than a meaningless huge number)
    steady = (
        step_flops(E, B, M, N) * (steps - P // B) / (t_sim - t_one)
        if epochs > 1 and t_sim > 1.2 * t_one
        else float("nan")
    )
    peak, peak_own = statistics.median(sq), statistics.median(own)
    line("matmul FLOPs per step (analytic)", step_flops(E, B, M, N) / 1e9, "GFLOP")
    line("simulation wall time (median of 3)", t_sim, "s")
    line("1-epoch run (setup + one epoch, median of 3)", t_one, "s")
    line("simulation achieved, whole run", achieved / 1e9, "GFLOP/s")
    line("simulation achieved, steady state (run minus 1-epoch run)", steady / 1e9, "GFLOP/s")
    line(f"dense torch.matmul {a.square}^3 ({a.dtype}, median of 3 rounds, best of 3 each)", peak / 1e9, "GFLOP/s")
    line(f"torch.matmul of the step's own shape ({E}x{B}x{M} @ {E}x{M}x{N})", peak_own / 1e9, "GFLOP/s")
    line("fraction of the step-shape matmul throughput, whole run", 100 * achieved / peak_own, "%", ".1f")
    line("steady-state fraction of dense matmul throughput", 100 * steady / peak, "%", ".1f")
    line(
        "fraction of dense matmul throughput (whole simulation / torch.matmul, same process)",
        100 * achieved / peak,
        "%",
        ".1f",
    )
    print(f"target >= 30 %: {'met' if achieved / peak >= 0.30 else 'MISSED'}")


if __name__ == "__main__":
    main()
