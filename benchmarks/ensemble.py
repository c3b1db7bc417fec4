"""ensemble: the curl-descent student–teacher simulation, plasticlab's batched engine vs research-style code.

Setting: SPEC B.5 "speed-up" (M = 100, N = 10, B = 10, tanh, η = 0.1, one flipped readout neuron, r = 2,
norm constraint on), P = 100 (one of the paper's training-set sizes; 10 updates per epoch, so per-epoch
work — reshuffling, divergence checks — counts), 64 members (seeds 0..63), 3000 updates each, train and test
errors recorded at the engine's default log-spaced checkpoints (20 per decade) by both.

- engine: ``plasticlab.simulation.curl.simulate`` — all members advance together as one ensemble batch.
- reference: how such research code is usually written — one run at a time, plain tensors with
  ``requires_grad``, ``loss.backward()`` every step, a manual flipped update and norm rescale, Python loops
  over runs, epochs and steps. Each run builds its own teacher, data and init (with plasticlab's seeded
  draws, so that both compute the same trajectories) and ends with its final errors, as the engine does.

Both do the same number of updates; the final weights and errors of every member the reference ran are
compared, and the benchmark fails loudly if they disagree. The engine is timed three times, interleaved with
the two halves of the reference run (so drifts in machine load hit both), and the ratio uses the engine's
median. By default the reference runs 8 of the 64 members and its time is scaled to 64 (its cost is a
Python loop over runs, linear in their number by construction); ``--full`` runs all 64. Wall-clock and
CPU-time (``time.process_time``: both paths are single-threaded, and CPU time is far less disturbed by other
jobs on a shared machine) ratios are both printed; the target is checked on wall time.

Threads: 1 by default for both. The tensors are far too small for a second intra-op thread to help (the
engine itself drops to 1 thread at these sizes), and on a loaded machine a second OpenMP thread makes the
one-run-at-a-time reference many times slower, which would flatter the ratio.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from benchmarks.common import header, line, set_threads
from plasticlab import seeding
from plasticlab.simulation.curl import DTYPES, CurlConfig, _key, initial_state, simulate

TOL = {"float64": 1e-9, "float32": 2e-3}  # max |Δ| relative to the weights' scale / relative error change


def config(P: int = 100, epochs: int = 300, dtype: str = "float32") -> CurlConfig:
    return CurlConfig(
        M=100, N=10, activation="tanh", P=P, B=10, epochs=epochs, eta=0.1, norm_constraint=True, dtype=dtype
    )


def reference_run(cfg: CurlConfig, seed: int, k2: int, init_scale: float):
    """One run, research-code style. Returns final (W1 (N, M), W2 (1, N), train errors, test errors, seconds
    spent in the epoch loop), the errors as lists over ``cfg.checkpoints()``."""
    dt = DTYPES[cfg.dtype]
    # this run's teacher, data and student init (the same seeded draws the engine uses)
    W1_0, W2_0, X, Y, Xt, Yt, _ = initial_state(cfg, torch.tensor([seed]), torch.tensor([init_scale]), dt)
    X, Y, Xt, Yt = X[0], Y[0], Xt[0], Yt[0]
    W1 = W1_0[0].clone().requires_grad_(True)
    W2 = W2_0[0].clone().requires_grad_(True)
    n1, n2 = W1.detach().norm(), W2.detach().norm()
    d1 = torch.ones(cfg.M, dtype=dt)
    d2 = torch.ones(cfg.N, dtype=dt)
    d2[:k2] = -1.0  # anti-Hebbian readout synapses of the first k2 hidden
    lr = cfg.eta * cfg.B / cfg.P

    def err(A, b):
        with torch.no_grad():
            return (0.5 * (torch.tanh(torch.tanh(A @ W1.T) @ W2.T) - b).pow(2).mean()).item()

    checkpoints = set(cfg.checkpoints().tolist())
    train_errors, test_errors = [err(X, Y)], [err(Xt, Yt)]
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        perm = seeding.permutation(torch.tensor([seed]), _key("shuffle") + epoch, cfg.P)[0]
        for s in range(cfg.P // cfg.B):
            idx = perm[s * cfg.B : (s + 1) * cfg.B]
            x, y = X[idx], Y[idx]
            h = torch.tanh(x @ W1.T)
            z = h @ W2.T
            out = z + (torch.tanh(z) - z).detach()  # output delta omits tanh' (SPEC B.2)
            loss = 0.5 * ((out - y) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                W1 -= lr * W1.grad * d1  # flipped update: columns (presynaptic)
                W2 -= lr * W2.grad * d2
                W1 *= n1 / W1.norm()  # norm constraint
                W2 *= n2 / W2.norm()
            W1.grad = None
            W2.grad = None
        if epoch in checkpoints:
            train_errors.append(err(X, Y))
            test_errors.append(err(Xt, Yt))
    return W1.detach(), W2.detach(), train_errors, test_errors, time.perf_counter() - t0


def run_reference(cfg, seeds, k2, init_scale):
    return [reference_run(cfg, s, k2, init_scale) for s in seeds]


def run_engine(cfg, seeds, k2, init_scale):
    return simulate(cfg, seeds, k2=k2, init_scale=init_scale, rule="curl")


def compare(cfg, res, ref, seeds) -> tuple[float, float]:
    """(max final-weight difference relative to the weights' scale, max relative difference of the train
    and test errors at every checkpoint) over the members the reference ran."""
    dw, de = 0.0, 0.0
    for i, (W1, W2, tr, te, _) in enumerate(ref):
        scale1, scale2 = W1.abs().max().item(), W2.abs().max().item()
        dw = max(dw, (res.W1[i] - W1).abs().max().item() / scale1, (res.W2[i] - W2).abs().max().item() / scale2)
        for mine, theirs in ((res.train_error[i], tr), (res.test_error[i], te)):
            theirs = np.asarray(theirs)
            if mine.shape != theirs.shape:
                return dw, math.inf
            de = max(de, float(np.max(np.abs(mine - theirs) / np.maximum(np.abs(theirs), 1e-30))))
    return dw, de


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks ensemble", description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=64)
    ap.add_argument(
        "--ref-members",
        type=int,
        default=None,
        help="members the reference runs (its time is scaled to --members); default 8, all with --full",
    )
    ap.add_argument("--P", type=int, default=100, help="training-set size (P/B updates per epoch)")
    ap.add_argument("--epochs", type=int, default=300, help="default 300 (3000 updates at P=100)")
    ap.add_argument(
        "--dtype", choices=list(DTYPES), default="float32", help="float32 is what curl-speedup runs in (default)"
    )
    ap.add_argument("--full", action="store_true", help="the reference runs all members (about 8x longer)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both paths (default 1, see above)")
    a = ap.parse_args(argv)
    threads = set_threads(a.threads)
    epochs = a.epochs
    n_ref = min(a.members, a.ref_members or (a.members if a.full else 8))
    cfg = config(a.P, epochs, a.dtype)
    seeds, k2, r = list(range(a.members)), 1, 2.0
    steps = epochs * (cfg.P // cfg.B)
    header(
        "ensemble",
        f"curl-descent student–teacher (M={cfg.M}, N={cfg.N}, B={cfg.B}, P={cfg.P}, tanh, "
        f"k2={k2}, r={r:g}, norm constraint, {cfg.dtype}), {a.members} members × {steps} updates",
    )
    print(
        f"threads: {threads} torch thread(s) for both paths; reference runs {n_ref} of the {a.members} members"
        + (f", its time scaled by {a.members / n_ref:g}" if n_ref < a.members else "")
    )

    # warm-up both paths (lazy initialisation, allocator) on a tiny run
    small = config(a.P, 1, a.dtype)
    run_engine(small, seeds[:2], k2, r), run_reference(small, seeds[:1], k2, r)

    half = n_ref // 2
    t_eng, c_eng, l_eng, ref, t_ref, c_ref = [], [], [], [], 0.0, 0.0
    for part in (seeds[:half], seeds[half:n_ref], None):
        t0, c0 = time.perf_counter(), time.process_time()
        res = run_engine(cfg, seeds, k2, r)
        t_eng.append(time.perf_counter() - t0)
        c_eng.append(time.process_time() - c0)
        l_eng.append(getattr(res, "loop_seconds", math.nan))
        if part:
            t0, c0 = time.perf_counter(), time.process_time()
            ref += run_reference(cfg, part, k2, r)
            t_ref += time.perf_counter() - t0
            c_ref += time.process_time() - c0
    dw, de = compare(cfg, res, ref, seeds)
    t_ref_measured, t_ref, c_ref = t_ref, t_ref * a.members / n_ref, c_ref * a.members / n_ref
    l_ref = sum(run[4] for run in ref) * a.members / n_ref
    ok = dw < TOL[cfg.dtype] and de < TOL[cfg.dtype]
    eng = statistics.median(t_eng)
    line("engine wall time (median of 3)", eng, "s")
    line("engine wall time (min of 3)", min(t_eng), "s")
    line("engine time per update, all members together", 1e6 * eng / steps, "µs")
    line(f"reference wall time, {n_ref} runs one at a time (measured)", t_ref_measured, "s")
    if n_ref < a.members:
        line(f"reference wall time scaled to {a.members} runs", t_ref, "s")
    line("reference time per update per member", 1e6 * t_ref / (steps * a.members), "µs")
    line(f"max weight difference engine vs reference over {n_ref} members (relative to max |w|)", dw, "", ".2e")
    line("max relative train/test-error difference over all checkpoints", de, "", ".2e")
    print(f"agreement within {TOL[cfg.dtype]:g}: {'yes' if ok else 'NO'}")
    line("engine epoch-loop time (data generation excluded, median of 3)", statistics.median(l_eng), "s")
    line(f"reference epoch-loop time scaled to {a.members} runs", l_ref, "s")
    line(
        f"epoch-loop ratio reference / engine ({a.members} members)", l_ref / statistics.median(l_eng), "x", ".1f"
    )
    line(f"CPU-time ratio reference / engine ({a.members} members)", c_ref / statistics.median(c_eng), "x", ".1f")
    line(f"ratio reference / engine ({a.members} members, wall time, same process)", t_ref / eng, "x", ".1f")
    print(f"target >= 50x (for 64 members, wall time): {'met' if t_ref / eng >= 50 else 'MISSED'}")
    if not ok:
        raise SystemExit("engine and reference disagree beyond tolerance")
    if not math.isfinite(res.table().train_error.sum()):
        raise SystemExit("non-finite final errors")


if __name__ == "__main__":
    main()
