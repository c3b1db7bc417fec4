"""ensemble: the curl-descent student–teacher simulation, plasticlab's batched engine vs research-style code.

Setting: Ninou et al. 2025 "speed-up" (M = 100, N = 10, B = 10, tanh, η = 0.1, one flipped readout neuron, r = 2,
norm constraint on), P = 100 (one of the paper's training-set sizes; 10 updates per epoch, so per-epoch
work — reshuffling, divergence checks — counts), 64 members (seeds 0..63), 3000 updates each, train and test
errors recorded at the engine's default log-spaced checkpoints (20 per decade) by both.

- engine: ``plasticlab.simulation.curl.simulate`` — all members advance together as one ensemble batch.
- NumPy peer: the way the curl-descent authors' code runs — one run at a time, NumPy, the update written
  out by hand (``numpy_run``, written from the model's equations). This is the ratio a user feels.
- reference: how such research code is often written — one run at a time, plain tensors with
  ``requires_grad``, ``loss.backward()`` every step, a manual flipped update and norm rescale, Python loops
  over runs, epochs and steps. Each run builds its own teacher, data and init (with plasticlab's seeded
  draws, so that both compute the same trajectories) and ends with its final errors, as the engine does.

All three do the same number of updates; the final weights and errors of every member the peers ran are
compared, and the benchmark fails loudly if they disagree. ``--compile`` also times the engine with
torch.compile (its one-off compile time for the shape is printed separately). The engine is timed three
times, interleaved with the two halves of the peers' runs (so drifts in machine load hit all), and the
ratios use the engine's median epoch-loop time against the peers' epoch loops. By default the peers run
8 of the 64 members and their time is scaled to 64 (their cost is a Python loop over runs, linear in their
number by construction); ``--full`` runs all 64. The load average is printed at the start and the end.

Threads: 1 by default for all paths (and one BLAS thread for NumPy). The tensors are far too small for a
second intra-op thread to help, and on a loaded machine a second thread makes the one-run-at-a-time peers
many times slower, which would flatter the ratios.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from benchmarks.common import header, line, load, set_threads
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
            out = z + (torch.tanh(z) - z).detach()  # output delta omits tanh' (Ninou et al. 2025)
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


def numpy_run(cfg: CurlConfig, seed: int, k2: int, init_scale: float):
    """One run the way the curl-descent authors' code runs: NumPy, one network at a time, the update
    written out by hand (written here from the model's equations, not copied). Same outputs as
    ``reference_run``; the teacher, data, init and shuffles are plasticlab's seeded draws so that the
    trajectories can be compared, and are made before the clock starts (the shuffles in one draw).

    Per step, on a batch x (B, M), y (B, 1): h = tanh(x W1ᵀ), ŷ = tanh(h W2ᵀ), e = ŷ − y (no tanh' at the
    output); W2 ← W2 − lr·(eᵀh/B)·D2, W1 ← W1 − lr·(((e W2) ⊙ (1 − h²))ᵀ x / B)·D1 (D1 = I here), then each
    layer is rescaled to its initial Frobenius norm."""
    dt = DTYPES[cfg.dtype]
    npdt = np.float32 if cfg.dtype == "float32" else np.float64
    W1_0, W2_0, X, Y, Xt, Yt, _ = initial_state(cfg, torch.tensor([seed]), torch.tensor([init_scale]), dt)
    W1, W2 = W1_0[0].numpy().copy(), W2_0[0].numpy().copy()
    X, Y, Xt, Yt = X[0].numpy(), Y[0].numpy(), Xt[0].numpy(), Yt[0].numpy()
    perms = seeding.permutations([seed], [_key("shuffle") + e for e in range(1, cfg.epochs + 1)], cfg.P)[0].numpy()
    n1, n2 = np.linalg.norm(W1), np.linalg.norm(W2)
    d2 = np.ones(cfg.N, dtype=npdt)
    d2[:k2] = -1.0
    lr = npdt(cfg.eta * cfg.B / cfg.P / cfg.B)  # the batch mean's 1/B folded into the rate

    def err(A, b):
        return float(0.5 * np.mean((np.tanh(np.tanh(A @ W1.T) @ W2.T) - b) ** 2))

    checkpoints = set(cfg.checkpoints().tolist())
    train_errors, test_errors = [err(X, Y)], [err(Xt, Yt)]
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        perm = perms[epoch - 1]
        for s in range(0, cfg.P, cfg.B):
            idx = perm[s : s + cfg.B]
            x, y = X[idx], Y[idx]
            h = np.tanh(x @ W1.T)
            e = np.tanh(h @ W2.T) - y
            delta = (e @ W2) * (1 - h * h)
            W2 = W2 - lr * (e.T @ h) * d2
            W1 = W1 - lr * (delta.T @ x)
            W1 *= n1 / np.linalg.norm(W1)
            W2 *= n2 / np.linalg.norm(W2)
        if epoch in checkpoints:
            train_errors.append(err(X, Y))
            test_errors.append(err(Xt, Yt))
    return torch.from_numpy(W1), torch.from_numpy(W2), train_errors, test_errors, time.perf_counter() - t0


def run_numpy(cfg, seeds, k2, init_scale):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # one BLAS thread, like the engine and the reference
        return [numpy_run(cfg, s, k2, init_scale) for s in seeds]


def run_reference(cfg, seeds, k2, init_scale):
    return [reference_run(cfg, s, k2, init_scale) for s in seeds]


def run_engine(cfg, seeds, k2, init_scale, compile=False):
    return simulate(cfg, seeds, k2=k2, init_scale=init_scale, rule="gd_flip", compile=compile)


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
    ap.add_argument("--compile", action="store_true", help="also time the engine with torch.compile (opt-in)")
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

    # warm-up every path (lazy initialisation, allocator; for --compile the compilation, timed) on a tiny run
    small = config(a.P, 1, a.dtype)
    run_engine(small, seeds[:2], k2, r), run_reference(small, seeds[:1], k2, r), run_numpy(small, seeds[:1], k2, r)
    if a.compile:
        t0 = time.perf_counter()
        run_engine(config(a.P, 1, a.dtype), seeds, k2, r, compile=True)
        line("compile time for this shape (paid once per shape and process)", time.perf_counter() - t0, "s")

    modes = [False, True] if a.compile else [False]
    half = n_ref // 2
    t_eng: dict[bool, list[float]] = {m: [] for m in modes}
    l_eng: dict[bool, list[float]] = {m: [] for m in modes}
    ref, peer, t_ref, t_peer = [], [], 0.0, 0.0
    for part in (seeds[:half], seeds[half:n_ref], None):  # peers interleaved with the engine runs
        for m in modes:
            t0 = time.perf_counter()
            res = run_engine(cfg, seeds, k2, r, compile=m)
            t_eng[m].append(time.perf_counter() - t0)
            l_eng[m].append(res.loop_seconds)
            if not m:
                res_eager = res
        if part:
            t0 = time.perf_counter()
            ref += run_reference(cfg, part, k2, r)
            t_ref += time.perf_counter() - t0
            t0 = time.perf_counter()
            peer += run_numpy(cfg, part, k2, r)
            t_peer += time.perf_counter() - t0
    report(a, cfg, steps, n_ref, res_eager, ref, peer, t_ref, t_peer, t_eng, l_eng)


def report(a, cfg, steps, n_ref, res, ref, peer, t_ref, t_peer, t_eng, l_eng) -> None:
    """Print every figure, the load beside them, and fail loudly if the paths disagree."""
    scale = a.members / n_ref
    dw, de = compare(cfg, res, ref, list(range(a.members)))
    pw, pe = compare(cfg, res, peer, list(range(a.members)))
    ok = max(dw, de, pw, pe) < TOL[cfg.dtype]
    l_ref, l_peer = (sum(run[4] for run in runs) * scale for runs in (ref, peer))
    line(f"reference (autograd, one run at a time) wall time scaled to {a.members} runs", t_ref * scale, "s")
    line(f"NumPy peer (one run at a time) wall time scaled to {a.members} runs", t_peer * scale, "s")
    line("NumPy peer time per update per member", 1e6 * l_peer / (steps * a.members), "µs")
    line(f"max weight difference engine vs reference over {n_ref} members (relative to max |w|)", dw, "", ".2e")
    line("max weight difference engine vs NumPy peer (relative to max |w|)", pw, "", ".2e")
    line("max relative train/test-error difference, reference / NumPy peer", max(de, pe), "", ".2e")
    print(f"agreement within {TOL[cfg.dtype]:g}: {'yes' if ok else 'NO'}")
    for m, ts in t_eng.items():
        name = "compiled" if m else "eager"
        loop = statistics.median(l_eng[m])
        line(
            f"engine ({name}) wall time, median of {len(ts)} (min {min(ts):.3g}, max {max(ts):.3g})",
            statistics.median(ts),
            "s",
        )
        line(f"engine ({name}) epoch-loop time, median", loop, "s")
        line(f"engine ({name}) time per update, all members together", 1e6 * loop / steps, "µs")
        line(f"ratio NumPy peer / engine ({name}), epoch loops", l_peer / loop, "x", ".3g")
        line(f"ratio autograd reference / engine ({name}), epoch loops", l_ref / loop, "x", ".3g")
    print(f"load average at the end: {load()} (1/5/15 min)")
    if not ok:
        raise SystemExit("engine, reference and NumPy peer disagree beyond tolerance")
    if not math.isfinite(res.table().train_error.sum()):
        raise SystemExit("non-finite final errors")


if __name__ == "__main__":
    main()
