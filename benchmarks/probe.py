"""HebbianProbe overhead: a 3-layer MLP training step (batch 256, width 512) with and without the probe
measuring every step, timed side by side in the same process (interleaved rounds, median per round)."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from plasticlab.probe import HebbianProbe

BATCH, WIDTH, D_OUT = 256, 512, 10


def _setup(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, D_OUT)
    )
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(BATCH, WIDTH), torch.randn(BATCH, D_OUT)

    def step():
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()

    return model, opt, step


def _time(step, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def measure(rounds: int = 11, steps: int = 10, every: tuple[int, ...] = (1, 10)) -> dict[str, float]:
    """Median step time per round, plain and probed (each ``every``), rounds interleaved so that drifts in
    machine load hit every variant alike."""
    variants = {"plain": _setup(0)[2]}
    probes = {}
    for k in every:
        model, opt, step = _setup(0)
        probes[k] = HebbianProbe(model, every=k).attach_optimizer(opt)
        variants[f"every {k}"] = step
    times = {name: [] for name in variants}
    for step in variants.values():  # warm-up: allocator, kernels
        _time(step, 5)
    for _ in range(rounds):
        for name, step in variants.items():
            times[name].append(_time(step, steps))
    for p in probes.values():
        p.remove()
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def main(threads: int = 1) -> None:
    # one intra-op thread: on a shared 2-core box OpenMP spin-waits turn other jobs' load into noise
    torch.set_num_threads(threads)
    r = measure()
    plain = r.pop("plain")
    print(
        f"train step without probe (3-layer MLP, batch {BATCH}, width {WIDTH}, {threads} thread): {plain:.2f} ms"
    )
    for name, ms in r.items():
        print(f"train step with probe measuring {name} step(s): {ms:.2f} ms")
        print(f"probe overhead, {name}: {100 * (ms / plain - 1):.1f} %")
    print(f"ratio probed/plain, every step: {r['every 1'] / plain:.3f} x")


if __name__ == "__main__":
    main()
