"""small-roofline: the small-network regime (M=100, N=10, B=10) — achieved FLOP/s vs one core's matmul FLOP/s.

The curl-descent speed-up setting's step is ~20 tiny ops on (64, 10, 100)-sized tensors, so per-op overhead,
not arithmetic, sets its speed. This prints the engine's achieved FLOP/s (matmul FLOPs counted analytically,
as in ``roofline``, over the epoch loop's wall time) as a fraction of one core's measured dense
``torch.matmul`` FLOP/s, eager and (with ``--compile``) through torch.compile, whose one-off compile time
is printed separately. One torch thread throughout: "one core" is the reference.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.common import header, line, load, set_threads
from benchmarks.roofline import matmul_flops_per_s, step_flops
from plasticlab.simulation.curl import DTYPES, CurlConfig, simulate


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; ``argv`` as on the command line."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks small-roofline", description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=64)
    ap.add_argument("--P", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--dtype", choices=list(DTYPES), default="float32")
    ap.add_argument("--square", type=int, default=512, help="size of the square one-core reference matmul")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per mode (median reported)")
    ap.add_argument("--compile", action="store_true", help="also run the engine through torch.compile")
    a = ap.parse_args(argv)
    set_threads(1)
    M, N, B, E = 100, 10, 10, a.members
    cfg = CurlConfig(M=M, N=N, activation="tanh", P=a.P, B=B, epochs=a.epochs, dtype=a.dtype)
    steps, seeds = a.epochs * (a.P // B), list(range(E))
    header("small-roofline", f"curl engine, E={E}, M={M}, N={N}, B={B}, P={a.P}, tanh, {a.dtype}, {steps} steps")
    warm = CurlConfig(**{**cfg.__dict__, "epochs": 1})
    simulate(warm, seeds, k2=1)
    if a.compile:
        t0 = time.perf_counter()
        simulate(warm, seeds, k2=1, compile=True)
        line("compile time for this shape (once per shape and process)", time.perf_counter() - t0, "s")
    peak = statistics.median(
        matmul_flops_per_s((a.square, a.square), (a.square, a.square), DTYPES[a.dtype], number=3) for _ in range(3)
    )
    line(f"one core: dense torch.matmul {a.square}^3 ({a.dtype})", peak / 1e9, "GFLOP/s")
    flops = step_flops(E, B, M, N) * steps
    for mode in [False, True] if a.compile else [False]:
        loops = [simulate(cfg, seeds, k2=1, compile=mode).loop_seconds for _ in range(a.repeat)]
        t = statistics.median(loops)
        name = "compiled" if mode else "eager"
        line(
            f"engine ({name}) epoch loop, median of {a.repeat} (min {min(loops):.3g}, max {max(loops):.3g})",
            t,
            "s",
        )
        line(f"engine ({name}) achieved", flops / t / 1e9, "GFLOP/s")
        line(f"engine ({name}) fraction of one core's matmul FLOP/s", 100 * flops / t / peak, "%", ".1f")
    print(f"load average at the end: {load()} (1/5/15 min)")


if __name__ == "__main__":
    main()
