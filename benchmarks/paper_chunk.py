"""paper-chunk: the engines on one real chunk of three paper experiments, vs one-run-at-a-time NumPy code.

The papers' sweeps are condition × seed grids whose members of one seed share data and batch order; the
curl engine advances such a group with one wide product per layer (``simulation.curl``, ``group=True``).
Each chunk below is one chunk of the experiment's paper-size grid (the members, shapes, rule, dtype and
checkpoint spacing of the committed run), shortened to a few hundred or thousand updates:

- ``curl-hidden``: the c = 0.886 chunk (M = 102, N = 117), 21 α_h × 10 seeds, linear, P = 250, B = 10,
  float32 (as results/curl-hidden ran), points_per_decade 10;
- ``curl-speedup``: the P = 2000 chunk (M = 100, N = 10, tanh, norm constraint, float32), its 15 conditions
  (GD and curl at r = 2, 3, 6; curl with k = 2..10 at r = 2) × 10 seeds, points_per_decade 50;
- ``hebb-table``: one rule (sgd), 4 γ × 10 seeds, widths [32, 64, 64, 32], batch 256, float32 (as
  results/hebb-table ran), checkpoints every 2500 steps and the late window (last 25 %, every 4th step)
  as the chunk records them.

The NumPy peer is the way the papers' own code runs: one network at a time, the update written out by
hand, with the same checkpoint measurements (errors; for hebb-table the alignment, validation loss and
late-window sums). It runs ``--peer-members`` of the chunk's members, its time scaled to all of them (a
loop over runs is linear in their number). Before timing, engine and peer run a short stretch and their
final weights and errors are compared (``TOL``); the benchmark stops if they disagree.

Per chunk it prints ``… ratio NumPy peer / engine R x`` (epoch loops, median and range over ``--repeat``
repetitions) and ``… P % of matmul FLOP/s``: the training updates' analytic FLOPs (``benchmarks/flops.py``)
over the engine's loop time, against one core's dense ``torch.matmul`` FLOP/s in the chunk's dtype. One
torch thread and one BLAS thread throughout; freed memory kept for reuse as in a sweep worker. ``--ab``
instead times, interleaved in one process, the curl chunks with grouping off (``group=False``, the
per-member step) and on, and hebb-table (500 steps) with phi' recomputed and taken from the forward pass.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.common import header, line, load, set_threads
from benchmarks.flops import curl_step, mlp_step
from benchmarks.roofline import matmul_flops_per_s
from plasticlab import seeding
from plasticlab.simulation.curl import DTYPES, CurlConfig, _key, initial_state, simulate

TOL = {"float64": 1e-9, "float32": 2e-3}  # max weight difference relative to the weights' scale


@dataclass
class Chunk:
    """One chunk: how to run it on the engine, its peer, and its analytic FLOPs per run."""

    name: str
    dtype: str
    members: int
    engine: Callable[[int, bool], float]  # (length, compiled) -> epoch-loop seconds
    peer: Callable[[int, list[int]], float]  # (length, member indices) -> the peer's loop seconds
    check: Callable[[int, list[int]], float]  # (length, member indices) -> max relative weight difference
    flops: Callable[[int], float]  # (length) -> FLOPs of the training updates of all members
    length: int  # timed length (epochs or steps)
    check_length: int
    unit: str


# --------------------------------------------------------------------------------------------------------
# curl-descent chunks
# --------------------------------------------------------------------------------------------------------


def hidden_members() -> tuple[dict, list[tuple]]:
    M, N = 102, 117  # the c = 0.886 chunk of the default 20-c grid at M + N = 219
    rows = [
        ("gd_flip", int(round(a * M)), 0, 1.0, s)
        for a in [round(0.05 * i, 2) for i in range(21)]
        for s in range(10)
    ]
    return dict(M=M, N=N, activation="linear", P=250, B=10, eta=0.1, points_per_decade=10, dtype="float32"), rows


def speedup_members() -> tuple[dict, list[tuple]]:
    conds = {("gd", 0, 2.0), ("gd_flip", 1, 2.0)} | {("gd_flip", k, 2.0) for k in range(1, 11)}
    conds |= {(rule, k, r) for r in (2.0, 3.0, 6.0) for rule, k in (("gd", 0), ("gd_flip", 1))}
    rows = [(rule, 0, k, r, s) for rule, k, r in sorted(conds) for s in range(10)]
    shape = dict(M=100, N=10, activation="tanh", P=2000, B=10, eta=0.1, points_per_decade=50, dtype="float32")
    return shape | dict(threshold=1e-3, stop_when_converged=True), rows


def curl_chunk(name: str, shape: dict, rows: list[tuple], length: int, check_length: int) -> Chunk:
    def cfg(epochs: int) -> CurlConfig:
        return CurlConfig(**shape, epochs=epochs)

    def run(epochs: int, compiled: bool, which=None, group=True):
        sel = rows if which is None else [rows[i] for i in which]
        return simulate(
            cfg(epochs),
            [r[4] for r in sel],
            k1=[r[1] for r in sel],
            k2=[r[2] for r in sel],
            init_scale=[r[3] for r in sel],
            rule=[r[0] for r in sel],
            compile=compiled,
            group=group,
        )

    def peer(epochs: int, which: list[int]) -> float:
        return sum(numpy_curl_run(cfg(epochs), *rows[i])[4] for i in which)

    def check(epochs: int, which: list[int]) -> float:
        res = run(epochs, False)  # the whole chunk, grouped, as timed
        worst = 0.0
        for i in which:
            W1, W2, tr, te, _ = numpy_curl_run(cfg(epochs), *rows[i])
            for mine, theirs in ((res.W1[i], W1), (res.W2[i], W2)):
                worst = max(worst, (mine - theirs).abs().max().item() / theirs.abs().max().item())
            for mine, theirs in ((res.train_error[i], tr), (res.test_error[i], te)):
                theirs = np.asarray(theirs)
                rel = np.abs(mine[: len(theirs)] - theirs) / np.maximum(np.abs(theirs), 1e-30)
                worst = max(worst, float(np.max(rel)) if len(theirs) == len(mine) else math.inf)
        return worst

    steps = shape["P"] // shape["B"]
    per = curl_step(shape["B"], shape["M"], shape["N"])
    return Chunk(
        name,
        shape["dtype"],
        len(rows),
        lambda n, c: run(n, c).loop_seconds,
        peer,
        check,
        lambda n: float(len(rows)) * n * steps * per,
        length,
        check_length,
        "epochs",
    )


def numpy_curl_run(cfg: CurlConfig, rule: str, k1: int, k2: int, init_scale: float, seed: int):
    """One curl-descent run the way the authors' code runs: NumPy, one network, the update by hand (from the
    model's equations; ``benchmarks/ensemble.py``'s peer with both layers' flips and any activation). Same
    seeded teacher, data, init and shuffles as the engine, made before the clock starts. Returns final
    (W1, W2), the train and test errors at ``cfg.checkpoints()`` and the epoch loop's seconds."""
    dt = DTYPES[cfg.dtype]
    npdt = np.float32 if cfg.dtype == "float32" else np.float64
    W1_0, W2_0, X, Y, Xt, Yt, _ = initial_state(cfg, torch.tensor([seed]), torch.tensor([init_scale]), dt)
    W1, W2 = W1_0[0].numpy().copy(), W2_0[0].numpy().copy()
    X, Y, Xt, Yt = X[0].numpy(), Y[0].numpy(), Xt[0].numpy(), Yt[0].numpy()
    perms = seeding.permutations([seed], [_key("shuffle") + e for e in range(1, cfg.epochs + 1)], cfg.P)[0].numpy()
    n1, n2 = np.linalg.norm(W1), np.linalg.norm(W2)
    flip = rule != "gd"
    d1, d2 = np.ones(cfg.M, dtype=npdt), np.ones(cfg.N, dtype=npdt)
    d1[: k1 if flip else 0] = -1.0
    d2[: k2 if flip else 0] = -1.0
    lr = npdt(cfg.eta * cfg.B / cfg.P / cfg.B)
    tanh = cfg.activation == "tanh"
    phi: Callable[[np.ndarray], np.ndarray] = np.tanh if tanh else (lambda a: a)

    def err(A, b):
        return float(0.5 * np.mean((phi(phi(A @ W1.T) @ W2.T) - b) ** 2))

    checkpoints = set(cfg.checkpoints().tolist())
    train_errors, test_errors = [err(X, Y)], [err(Xt, Yt)]
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        perm = perms[epoch - 1]
        for s in range(0, cfg.P, cfg.B):
            idx = perm[s : s + cfg.B]
            x, y = X[idx], Y[idx]
            h = phi(x @ W1.T)
            e = phi(h @ W2.T) - y
            delta = (e @ W2) * (1 - h * h) if tanh else e @ W2
            W2 = W2 - lr * (e.T @ h) * d2
            W1 = W1 - lr * (delta.T @ x) * d1
            if cfg.norm_constraint:
                W1 *= n1 / np.linalg.norm(W1)
                W2 *= n2 / np.linalg.norm(W2)
        if epoch in checkpoints:
            train_errors.append(err(X, Y))
            test_errors.append(err(Xt, Yt))
    return torch.from_numpy(W1), torch.from_numpy(W2), train_errors, test_errors, time.perf_counter() - t0


# --------------------------------------------------------------------------------------------------------
# hebb-table chunk (train_mlp)
# --------------------------------------------------------------------------------------------------------

HEBB = dict(
    widths=[32, 64, 64, 32], gammas=[0.0, 5e-5, 5e-4, 5e-3], seeds=list(range(10)), lr=0.1, batch_size=256,
    n_train=20000, n_val=2000, record_every=2500, average_from=0.75, late_every=4, dtype="float32",
)  # fmt: skip


def hebb_setup():
    from plasticlab.rules import make_rule
    from plasticlab.tasks import teacher_regression
    from plasticlab.tasks.shared import share

    dt = DTYPES[HEBB["dtype"]]
    members = [(g, s) for g in HEBB["gammas"] for s in HEBB["seeds"]]  # seeds fastest, as the experiment
    w = HEBB["widths"]
    data = teacher_regression(
        HEBB["seeds"], d_in=w[0], d_out=w[-1], n_train=HEBB["n_train"], n_val=HEBB["n_val"], dtype=dt
    )
    shared = share(data, [HEBB["seeds"].index(s) for _, s in members])
    rule = make_rule("sgd", gamma=np.array([g for g, _ in members]))
    return members, data, shared, rule


def hebb_chunk(length: int, check_length: int) -> Chunk:
    from plasticlab.networks.mlp import init_mlp
    from plasticlab.simulation.train_mlp import train_mlp

    members, data, shared, rule = hebb_setup()
    dt = DTYPES[HEBB["dtype"]]
    seeds = [s for _, s in members]

    def run(steps: int, compiled: bool):
        net = init_mlp(seeds, HEBB["widths"], "tanh", dtype=dt)
        t0 = time.perf_counter()
        res = train_mlp(
            net,
            rule,
            shared,
            seeds,
            steps=steps,
            lr=HEBB["lr"],
            batch_size=HEBB["batch_size"],
            record_every=HEBB["record_every"],
            average_from=int(HEBB["average_from"] * steps),
            late_every=HEBB["late_every"],
            compile=compiled,
        )
        return res, time.perf_counter() - t0

    def peer(steps: int, which: list[int]) -> float:
        return sum(numpy_mlp_run(steps, *members[i], data)[3] for i in which)

    def check(steps: int, which: list[int]) -> float:
        res, _ = run(steps, False)
        worst = 0.0
        for i in which:
            Ws, late, val, _ = numpy_mlp_run(steps, *members[i], data)
            for l, W in enumerate(Ws):
                mine = res.net.weights[l][i].double().numpy()
                worst = max(worst, float(np.abs(mine - W).max() / np.abs(W).max()))
            worst = max(worst, float(np.nanmax(np.abs(res.alignment_late[:, i].double().numpy() - late))))
            worst = max(worst, abs(float(res.val_loss_final[i]) - val) / abs(val))
        return worst

    return Chunk(
        "hebb-table",
        HEBB["dtype"],
        len(members),
        lambda n, c: run(n, c)[1],
        peer,
        check,
        lambda n: float(len(members)) * n * mlp_step(HEBB["widths"], HEBB["batch_size"]),
        length,
        check_length,
        "steps",
    )


def numpy_mlp_run(steps: int, gamma: float, seed: int, data):
    """One hebb-table run as research code runs it: NumPy, one MLP (tanh hidden layers, linear output, no
    biases), SGD with decoupled decay ΔW = lr·(g − γW), g = −(1/B) δᵀh_a. It measures what the chunk
    measures: at checkpoints the Hebbian alignment of every layer and the validation loss, over the late
    window (every ``late_every``-th step) the alignment mean and the sums of g, H, W and ‖h_b‖². The batch
    indices, data and init are plasticlab's seeded draws (made before the clock starts). Returns the final
    weights, the late-window alignment per layer, the final validation loss and the loop's seconds."""
    from plasticlab.networks.mlp import init_mlp

    npdt = np.float32 if HEBB["dtype"] == "float32" else np.float64
    dt = DTYPES[HEBB["dtype"]]
    u = HEBB["seeds"].index(seed)
    X, Y = data.x_train[u].numpy(), data.y_train[u].numpy()
    Xv, Yv = data.x_val[u].numpy(), data.y_val[u].numpy()
    Ws = [W[0].numpy().copy() for W in init_mlp([seed], HEBB["widths"], "tanh", dtype=dt).weights]
    B, lr, g = HEBB["batch_size"], npdt(HEBB["lr"]), npdt(gamma)
    idx = [
        seeding.randint([seed], seeding.key_of("batch", t), (B,), HEBB["n_train"])[0].numpy() for t in range(steps)
    ]
    start, every, late_every = int(HEBB["average_from"] * steps), HEBB["record_every"], HEBB["late_every"]
    L = len(Ws)
    sums = dict(G=[0.0 * W for W in Ws], H=[0.0 * W for W in Ws], W=[0.0 * W for W in Ws], P=[0.0] * L)
    align_sum, align_n = np.zeros(L), np.zeros(L)

    def cos(a, b):
        na, nb = np.sqrt((a * a).sum()), np.sqrt((b * b).sum())
        return float((a * b).sum() / (na * nb)) if na * nb > 1e-30 else math.nan

    def forward(x):
        pre, post, h = [], [], x
        for l, W in enumerate(Ws):
            z = h @ W.T
            pre.append(h)
            post.append(z)
            h = np.tanh(z) if l < L - 1 else z
        return pre, post, h

    def val_loss():
        return float(0.5 * ((forward(Xv)[2] - Yv) ** 2).sum(-1).mean())

    t0 = time.perf_counter()
    for t in range(steps):
        x, y = X[idx[t]], Y[idx[t]]
        pre, post, out = forward(x)
        delta = out - y
        grads = [None] * L
        for l in range(L - 1, -1, -1):
            grads[l] = -(delta.T @ pre[l]) / npdt(B)
            if l:
                delta = (delta @ Ws[l]) * (1 - pre[l] * pre[l])
        checkpoint = t % every == 0 or t == steps - 1
        late = t >= start and (t - start) % late_every == 0
        if checkpoint or late:
            Hs = [post[l].T @ pre[l] / npdt(B) for l in range(L)]
            al = [cos(grads[l], Hs[l]) for l in range(L)]
            if late:
                for l in range(L):
                    if not math.isnan(al[l]):
                        align_sum[l] += al[l]
                        align_n[l] += 1
                    sums["G"][l] += grads[l]
                    sums["H"][l] += Hs[l]
                    sums["W"][l] += Ws[l]
                    sums["P"][l] += float((post[l] ** 2).sum(-1).mean())
            if checkpoint:
                val_loss()
        for l in range(L):
            Ws[l] = Ws[l] + lr * (grads[l] - g * Ws[l])
    seconds = time.perf_counter() - t0
    late_align = np.where(align_n > 0, align_sum / np.maximum(align_n, 1), np.nan)
    return Ws, late_align, val_loss(), seconds


# --------------------------------------------------------------------------------------------------------


def measure(chunk: Chunk, repeat: int, n_peer: int, compiled: bool, peak: float) -> None:
    """Check, then time ``chunk`` ``repeat`` times (engine eager [and compiled] beside the peer each time)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    which = sorted(rng.choice(chunk.members, size=min(n_peer, chunk.members), replace=False).tolist())
    print(f"-- {chunk.name}: {chunk.members} members, {chunk.length} {chunk.unit}, {chunk.dtype}, load {load()}")
    with threadpool_limits(1):
        worst = chunk.check(chunk.check_length, which)
        ok = worst < TOL[chunk.dtype]
        print(
            f"{chunk.name}: engine vs NumPy peer over {len(which)} members, {chunk.check_length} {chunk.unit}: "
            f"max relative difference {worst:.2e} ({'within' if ok else 'NOT within'} {TOL[chunk.dtype]:g})"
        )
        if not ok:
            raise SystemExit(f"{chunk.name}: engine and NumPy peer disagree")
        modes = [False, True] if compiled else [False]
        if compiled:  # compile outside the timed runs (once per shape and process)
            t0 = time.perf_counter()
            chunk.engine(1 if chunk.unit == "epochs" else 2, True)
            line(f"{chunk.name}: compile time for this shape", time.perf_counter() - t0, "s")
        chunk.engine(1 if chunk.unit == "epochs" else 2, False)
        t_eng: dict[bool, list[float]] = {m: [] for m in modes}
        ratios: dict[bool, list[float]] = {m: [] for m in modes}
        for i in range(repeat):
            for m in modes:
                t_eng[m].append(chunk.engine(chunk.length, m))
            t_peer = chunk.peer(chunk.length, which) * chunk.members / len(which)
            for m in modes:
                ratios[m].append(t_peer / t_eng[m][-1])
            # the machine may be shared: each repetition's numbers beside the load they were taken at
            engines = ", ".join(f"{'compiled' if m else 'eager'} {t_eng[m][-1]:.3g} s" for m in modes)
            print(
                f"{chunk.name}: repetition {i + 1}: engine {engines}, peer {t_peer:.3g} s, load {load()}",
                flush=True,
            )
    flops = chunk.flops(chunk.length)
    for m in modes:
        name = "compiled" if m else "eager"
        ts, rs = t_eng[m], ratios[m]
        fr = [100 * flops / t / peak for t in ts]
        line(
            f"{chunk.name}: engine ({name}) loop, median of {len(ts)} (min {min(ts):.3g}, max {max(ts):.3g})",
            statistics.median(ts),
            "s",
        )
        print(
            f"{chunk.name}: ratio NumPy peer / engine ({name}) {statistics.median(rs):.3g} x "
            f"(range {min(rs):.3g}–{max(rs):.3g})"
        )
        print(
            f"{chunk.name}: engine ({name}) {statistics.median(fr):.1f} % of matmul FLOP/s "
            f"(range {min(fr):.1f}–{max(fr):.1f}; {flops / statistics.median(ts) / 1e9:.3g} GFLOP/s)"
        )
    print(f"{chunk.name}: load average at the end {load()} (1/5/15 min)", flush=True)


def group_ab(repeat: int, scale: float, chunks: list[str]) -> None:
    """The curl chunks with grouping off (the per-member step) and on, interleaved in this process."""
    for name, (shape, rows), epochs in (
        ("curl-hidden", hidden_members(), 10),
        ("curl-speedup", speedup_members(), 20),
    ):
        if name not in chunks:
            continue
        epochs = max(1, int(round(epochs * scale)))
        kw = dict(k1=[r[1] for r in rows], k2=[r[2] for r in rows], init_scale=[r[3] for r in rows])
        seeds, rules = [r[4] for r in rows], [r[0] for r in rows]
        simulate(CurlConfig(**shape, epochs=1), seeds, rule=rules, **kw)
        t: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(repeat):
            for g in (False, True):
                t[g].append(
                    simulate(CurlConfig(**shape, epochs=epochs), seeds, rule=rules, group=g, **kw).loop_seconds
                )
        r = [a / b for a, b in zip(t[False], t[True])]
        print(
            f"{name} ({epochs} epochs): per-member {statistics.median(t[False]):.3g} s, grouped "
            f"{statistics.median(t[True]):.3g} s, ratio per-member / grouped {statistics.median(r):.2f} x "
            f"(range {min(r):.2f}–{max(r):.2f}), load {load()}",
            flush=True,
        )


def hebb_ab(repeat: int, scale: float) -> None:
    """hebb-table's chunk with phi' recomputed from the pre-activation (the forward's trace marked as not
    holding phi(z), so ``Context.backprop`` takes the path it took before) and taken from the forward's
    output (tanh's factor fused), interleaved in this process."""
    import dataclasses

    from plasticlab.networks.mlp import MLP

    steps = max(2, int(round(500 * scale)))
    chunk = hebb_chunk(steps, 2)
    forward = MLP.forward

    def recomputed(self, x, weights=None):
        return dataclasses.replace(forward(self, x, weights), chained=False)

    chunk.engine(2, False)
    t: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeat):
        for fused in (False, True):
            MLP.forward = forward if fused else recomputed  # type: ignore[method-assign]
            try:
                t[fused].append(chunk.engine(steps, False))
            finally:
                MLP.forward = forward  # type: ignore[method-assign]
            print(
                f"hebb-table: {'from the output' if fused else 'recomputed'} {t[fused][-1]:.3g} s, load {load()}"
            )
    r = [a / b for a, b in zip(t[False], t[True])]
    print(
        f"hebb-table ({steps} steps): phi' recomputed {statistics.median(t[False]):.3g} s, from the output "
        f"{statistics.median(t[True]):.3g} s, ratio {statistics.median(r):.2f} x "
        f"(range {min(r):.2f}–{max(r):.2f}), load {load()}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; ``argv`` as on the command line."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks paper-chunk", description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", default="curl-hidden,curl-speedup,hebb-table")
    ap.add_argument("--repeat", type=int, default=5, help="timed repetitions (median and range reported)")
    ap.add_argument("--peer-members", type=int, default=4, help="members the NumPy peer runs (time scaled)")
    ap.add_argument("--compile", action="store_true", help="also time the engines through torch.compile")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every chunk's timed length")
    ap.add_argument("--square", type=int, default=512, help="size of the one-core reference matmul")
    ap.add_argument(
        "--ab",
        action="store_true",
        help="only: the --chunks' before/after, interleaved (curl: grouped vs per-member, group=False; "
        "hebb-table: phi' from the forward's output vs recomputed)",
    )
    a = ap.parse_args(argv)
    from plasticlab.allocator import keep_freed_memory

    set_threads(1)
    keep_freed_memory()
    if a.ab:
        header("paper-chunk --ab", "curl: shared-batch grouping off and on; hebb-table: phi' recomputed or not")
        chunks = [c for c in a.chunks.split(",") if c]
        group_ab(a.repeat, a.scale, chunks)
        if "hebb-table" in chunks:
            hebb_ab(a.repeat, a.scale)
        return
    header(
        "paper-chunk", "one chunk of curl-hidden, curl-speedup and hebb-table: engine vs one-run-at-a-time NumPy"
    )
    n = lambda x: max(1, int(round(x * a.scale)))
    build = {
        "curl-hidden": lambda: curl_chunk("curl-hidden", *hidden_members(), n(40), 4),
        "curl-speedup": lambda: curl_chunk("curl-speedup", *speedup_members(), n(100), 3),
        "hebb-table": lambda: hebb_chunk(n(2000), 100),
    }
    peaks: dict[str, float] = {}
    for name in [c for c in a.chunks.split(",") if c]:
        chunk = build[name]()
        if chunk.dtype not in peaks:
            dt = DTYPES[chunk.dtype]
            sq = (a.square, a.square)
            peaks[chunk.dtype] = statistics.median(matmul_flops_per_s(sq, sq, dt, number=3) for _ in range(3))
            line(f"one core: dense torch.matmul {a.square}^3 ({chunk.dtype})", peaks[chunk.dtype] / 1e9, "GFLOP/s")
        measure(chunk, a.repeat, a.peer_members, a.compile, peaks[chunk.dtype])


if __name__ == "__main__":
    main()
