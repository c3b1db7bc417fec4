"""paper-cost: each paper experiment at its paper size — FLOPs, CPU hours here, GPU hours at a stated rate.

For every experiment ``plasticlab reproduce`` runs, each chunk of its default (paper-size) grid is counted
analytically (``benchmarks/flops.py`` says what is and is not counted: the training step's matrix products).
The CPU time is predicted per chunk as FLOPs / the rate this machine sustains on that chunk's shape, measured
by a short timed run of the real engine step at that shape (same members, widths, batch and dtype; a few
hundred ms; one torch thread, as sweep chunks run one per core). A curl timing run has the chunk's member
structure: its conditions × seeds, condition-major, flipping the layer the conditions flip, so members that
share a seed run grouped (one wide product per layer) as in the real chunk. Rates differ by orders of
magnitude between shapes (the small networks are bound by per-op overhead, not arithmetic), so one rate per
engine would be wrong by as much.

The GPU time is stated, not measured (no GPU here): max(FLOPs / R, steps × ops per step × 10 µs), with R the
sustained rate of a data-centre GPU (A100 class: 19.5 TFLOP/s fp32 and 9.7 fp64 peak without tensor cores)
taken as **10 TFLOP/s float32 and 5 TFLOP/s float64** — optimistic for batched small products — and 10 µs per
eager op (launch plus PyTorch dispatch) as the floor for the tiny steps. The ops per step are counted on the
CPU run with a dispatch counter. Chunks are assumed to run one after another on the GPU.

``--manifests`` compares the prediction with the measured ``seconds`` of finished chunks in sweep manifests.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.common import header, load, set_threads
from benchmarks.flops import Work, chunk_work

GPU_RATE = {"float32": 10e12, "float64": 5e12}  # FLOP/s sustained, A100 class (see module doc)
GPU_OP_SECONDS = 10e-6  # per eager op: launch + dispatch


class _OpCount(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def _count_ops(fn: Callable[[], object]) -> int:
    with _OpCount() as c:
        fn()
    return c.n


def _stepper(w: Work) -> tuple[Callable[[int], float | None], int]:
    """(run(k): k steps of the real engine at ``w``'s shape, steps per unit of k). A run that returns a
    float reports the seconds of its steps alone (set-up excluded); otherwise its wall time is used."""
    dt = {"float32": torch.float32, "float64": torch.float64}[w.dtype]
    E, sh = w.members, w.shape
    if w.engine in ("curl", "curl-moments"):
        from plasticlab.simulation.curl import CurlConfig, simulate

        def run_curl(k: int) -> float:
            cfg = CurlConfig(
                M=sh["M"],
                N=sh["N"],
                activation=sh["activation"],
                P=sh["P"],
                B=sh["B"],
                epochs=k,
                init=sh.get("init", "random"),
                norm_constraint=sh.get("norm", True),
                points_per_decade=1,
                dtype=w.dtype,
            )
            # the loop's own time: set-up (data, teacher, start) can take longer than many epochs (20 s for
            # curl-readout's 420-member shapes), and charged to a 1-epoch run it made the rate ~100x too low
            return simulate(cfg, seeds, k1=k1, k2=k2, threads=1).loop_seconds

        # the chunk's members: ``group`` conditions × E/group seeds, condition-major as the experiments
        # order them, so members sharing a seed run grouped as in the real chunk
        g = sh.get("group", 1)
        seeds = [s for _ in range(g) for s in range(E // g)] if E % g == 0 else list(range(E))
        k1: int | list[int] = 0
        k2 = 1
        if sh.get("flip") == "hidden":  # flip fractions 0..1 of the inputs over the conditions
            k1, k2 = [round((i // max(E // g, 1)) / max(g - 1, 1) * sh["M"]) for i in range(E)], 0

        return run_curl, sh["P"] // sh["B"]
    if w.engine == "chaos":
        from plasticlab.simulation import chaos as sim

        M, N = sh["M"], sh["N"]
        W1, W2, Sigma, vstar = sim.start(M, N, list(range(E)))
        norms = sim.layer_norms(W1, W2)
        A, b, _ = sim.reduce(W1, W2)
        d1 = sim.flip_diagonal([M // 2] * E, M)
        lr = sim.as_lr([0.1] * E)

        def run_chaos(k: int) -> None:
            s = (A, b)
            for _ in range(k):
                s = sim.step(s, Sigma, vstar, d1, lr, norms)

        return run_chaos, 1
    if w.engine == "mlp":
        import numpy as np

        from plasticlab.networks.mlp import init_mlp
        from plasticlab.rules import make_rule
        from plasticlab.simulation.train_mlp import init_fn, step_fn
        from plasticlab.tasks import teacher_regression

        widths = list(sh["widths"])
        seeds = list(range(E))
        data = teacher_regression(seeds, d_in=widths[0], d_out=widths[-1], n_train=2000, n_val=10, dtype=dt)
        net = init_mlp(seeds, widths, "tanh", dtype=dt)
        try:
            rule = make_rule(sh["rule"], gamma=np.zeros(E))
        except Exception:  # a rule needing extra arguments: time the back-propagation step instead
            rule = make_rule("sgd", gamma=np.zeros(E))
        seeds_t = torch.tensor(seeds)
        state0 = init_fn(net, rule, seeds_t)

        def run_mlp(k: int) -> None:
            s = state0
            with torch.no_grad():
                for _ in range(k):
                    s, _ = step_fn(s, rule, data, seeds_t, lr=1e-3, batch_size=sh["B"], check=False)

        return run_mlp, 1
    if w.engine == "transformer":
        from plasticlab.networks.transformer import TinyTransformer

        model = TinyTransformer(sh["T"], sh["F"], sh["d"], sh["heads"], sh["layers"], sh["f"], 32)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(sh["B"], sh["T"] * sh["F"], generator=g)
        y = torch.randn(sh["B"], 32, generator=g)

        def run_tf(k: int) -> None:
            for _ in range(k):
                opt.zero_grad()
                (0.5 * (model(x) - y).pow(2).sum(1).mean()).backward()
                opt.step()

        return run_tf, 1
    raise ValueError(f"no timing run for engine {w.engine!r}")


def measure(w: Work, budget: float = 0.3) -> tuple[float, float]:
    """(FLOP/s sustained on ``w``'s shape, eager ops per step), from short timed runs of the real engine.

    The step count grows until a run takes ``budget`` seconds; the rate is the best of two runs of that
    length minus a 1-unit run (which carries the setup), so setup is not charged to the steps."""
    run, per_unit = _stepper(w)
    run(1)  # warm-up (allocations, lazy imports)
    k, t = 1, 0.0
    while True:
        t = _time(run, k)
        if t >= budget or k >= 1 << 16:
            break
        k = max(2 * k, int(k * 1.2 * budget / max(t, 1e-6)))
    t1 = min(_time(run, 1) for _ in range(2))
    tk = min(t, _time(run, k))
    steps = (k - 1) * per_unit
    dt = tk - t1 if k > 1 and tk > t1 else tk
    steps = steps if k > 1 and tk > t1 else k * per_unit
    ops = (_count_ops(lambda: run(2)) - _count_ops(lambda: run(1))) / per_unit
    return w.per_step * w.members * steps / dt, ops


def _time(run: Callable[[int], float | None], k: int) -> float:
    t0 = time.perf_counter()
    own = run(k)
    return own if isinstance(own, float) else time.perf_counter() - t0


class Rates:
    """Measured (rate, ops per step) per shape, each shape measured once. With ``limit`` set, at most that
    many shapes per experiment are timed (those with the most FLOPs, which dominate the total); any other
    chunk takes the rate of the timed shape of the same engine whose per-step FLOPs are nearest in log
    scale."""

    def __init__(self, budget: float, limit: int | None = None, timing: bool = True):
        self.budget, self.limit, self.timing = budget, limit, timing
        self.cache: dict[tuple, tuple[float, float]] = {}
        self.per_step: dict[tuple, float] = {}

    def plan(self, works: list[Work]) -> None:
        """Time the shapes of ``works`` that will be measured (the largest ``limit`` ones, or all)."""
        if not self.timing:
            return
        shapes: dict[tuple, Work] = {}
        for w in sorted(works, key=lambda w: -w.flops):
            if w.engine != "none" and w.flops > 0:
                shapes.setdefault(w.key(), w)
        for key, w in list(shapes.items())[: self.limit]:
            if key not in self.cache:
                self.cache[key] = measure(w, self.budget)
                self.per_step[key] = w.members * w.per_step

    def __call__(self, w: Work) -> tuple[float, float]:
        if w.engine == "none" or w.flops <= 0 or not self.timing:
            return math.nan, math.nan
        key = w.key()
        if key not in self.cache:
            same = [k for k in self.cache if k[0] == w.engine and k[1] == w.dtype]
            if self.limit is None or not same:
                self.cache[key] = measure(w, self.budget)
                self.per_step[key] = w.members * w.per_step
            else:
                x = math.log(w.members * w.per_step)
                return self.cache[min(same, key=lambda k: abs(math.log(self.per_step[k]) - x))]
        return self.cache[key]


def gpu_seconds(w: Work, ops: float) -> tuple[float, float]:
    """(compute-bound, launch-bound) seconds of ``w`` on the stated GPU."""
    return w.flops / GPU_RATE[w.dtype], w.steps * ops * GPU_OP_SECONDS


def paper_table(names: list[str], rates: Rates, log: Callable[[str], None] = print) -> list[dict]:
    from plasticlab.experiments import get

    rows = []
    for name in names:
        exp = get(name)
        works = [chunk_work(name, exp.spec_dict(spec)) for spec in exp.chunks(exp.params())]
        rates.plan(works)
        flops = cpu = gpu_c = gpu_l = 0.0
        gf: list[float] = []
        for w in works:
            if w.engine == "none":
                continue
            rate, ops = rates(w)
            flops += w.flops
            c, l = gpu_seconds(w, ops)
            gpu_c, gpu_l = gpu_c + c, gpu_l + max(c, l)
            if not math.isnan(rate):
                cpu += w.flops / rate
                gf.append(rate / 1e9)
        engines = sorted({w.engine for w in works})
        notes = sorted({w.note for w in works if w.note})
        row = dict(
            experiment=name,
            chunks=len(works),
            engine="+".join(engines),
            dtype="+".join(sorted({w.dtype for w in works})),
            flops=flops,
            gflops_min=min(gf) if gf else math.nan,
            gflops_max=max(gf) if gf else math.nan,
            cpu_hours=cpu / 3600 if gf else math.nan,
            gpu_compute_hours=gpu_c / 3600 if flops else math.nan,
            gpu_hours=gpu_l / 3600 if gf else math.nan,
            note="; ".join(notes),
        )
        rows.append(row)
        log(
            f"{name}: {row['chunks']} chunks, {flops:.3g} FLOP, {row['cpu_hours']:.3g} CPU core-hours, "
            f"GPU {row['gpu_hours']:.3g} h (compute-bound {row['gpu_compute_hours']:.3g} h)"
        )
    return rows


def _fmt(x: float, unit_small: str = "") -> str:
    if isinstance(x, float) and math.isnan(x):
        return "—"
    return f"{x:.3g}{unit_small}"


def markdown(rows: list[dict]) -> str:
    head = (
        "| experiment | chunks | engine | dtype | FLOPs (counted) | CPU rate here, GFLOP/s (range over shapes) "
        "| CPU core-hours (predicted) | GPU hours, compute-bound | GPU hours, with 10 µs/op floor | note |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        rate = "—" if math.isnan(r["gflops_min"]) else f"{r['gflops_min']:.2g}–{r['gflops_max']:.2g}"
        lines.append(
            f"| {r['experiment']} | {r['chunks']} | {r['engine']} | {r['dtype']} | {r['flops']:.3g} | {rate} | "
            f"{_fmt(r['cpu_hours'])} | {_fmt(r['gpu_compute_hours'])} | {_fmt(r['gpu_hours'])} | {r['note']} |"
        )
    return "\n".join(lines)


def manifest_check(paths: list[str], rates: Rates) -> str:
    """Predicted vs measured seconds for every finished chunk (with ``seconds``) of the given manifests."""
    lines = [
        "| manifest | experiment | chunks done | predicted s (sum) | measured s (sum) | measured / predicted, "
        "median (range) over chunks |",
        "|---|---|---|---|---|---|",
    ]
    for path in paths:
        try:
            m = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        name = m.get("experiment", "")
        done = [c for c in m.get("chunks", {}).values() if c.get("state") == "done" and c.get("seconds")]
        pred, meas = [], []
        works = [chunk_work(name, c["spec"]) for c in done]
        rates.plan(works)
        for c, w in zip(done, works):
            rate, _ = rates(w)
            if math.isnan(rate):
                continue
            pred.append(w.flops / rate)
            meas.append(float(c["seconds"]))
        if not pred:
            lines.append(f"| {path} | {name} | {len(done)} | — | — | — |")
            continue
        ratio = [b / a for a, b in zip(pred, meas)]
        lines.append(
            f"| {path} | {name} | {len(pred)} | {sum(pred):.4g} | {sum(meas):.4g} | "
            f"{statistics.median(ratio):.2f} ({min(ratio):.2f}–{max(ratio):.2f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; ``argv`` as on the command line."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks paper-cost", description=__doc__.split("\n")[0])
    ap.add_argument("--experiments", default="", help="comma list (default: every experiment reproduce runs)")
    ap.add_argument("--budget", type=float, default=0.3, help="seconds per timing run of one shape")
    ap.add_argument(
        "--shapes",
        type=int,
        default=3,
        help="shapes timed per experiment (the largest; the others take the nearest timed rate); 0 = all",
    )
    ap.add_argument("--no-timing", action="store_true", help="FLOPs and compute-bound GPU time only (seconds)")
    ap.add_argument(
        "--manifests",
        nargs="*",
        default=None,
        help="sweep manifest.json files to check the prediction against (default: results/*/manifest.json)",
    )
    a = ap.parse_args(argv)
    from plasticlab.allocator import keep_freed_memory
    from plasticlab.reproduce import paper_experiments

    set_threads(1)
    keep_freed_memory()  # as in a sweep worker, whose chunk times this predicts
    names = [n for n in a.experiments.split(",") if n] or paper_experiments()
    header(
        "paper-cost", "FLOPs of each paper experiment at its paper size; CPU time predicted; GPU at a stated rate"
    )
    rates = Rates(a.budget, a.shapes or None, timing=not a.no_timing)
    t0 = time.perf_counter()
    rows = paper_table(names, rates)
    print()
    print(markdown(rows))
    paths = sorted(glob.glob("results/*/manifest.json")) if a.manifests is None else a.manifests
    if paths and not a.no_timing:
        print()
        print(manifest_check(paths, rates))
    print(
        f"\n{len(rates.cache)} shapes timed in {time.perf_counter() - t0:.0f} s; "
        f"load average at the end: {load()} (1/5/15 min)"
    )


if __name__ == "__main__":
    main()
