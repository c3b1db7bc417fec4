"""Analytic FLOP counts of one experiment chunk: which engine runs it, how many members, steps and FLOPs.

What is counted: the matrix products of the training step (a multiply-add is 2 FLOPs), per member and step,
the way ``roofline`` counts the curl step. What is not: element-wise work (activations, their derivatives,
the optimiser's per-weight arithmetic, norm rescaling), data generation, checkpoint evaluations, the
Hebbian measurements of the late window and probes, and anything a chunk does after training (eigenvalue
analyses, tables). So every count is a lower bound on the arithmetic a chunk does; for the small networks of
the papers the element-wise work is a few per cent of it.

Engines and their per-member, per-step count (B batch, widths w_0..w_L for an MLP):

- ``curl`` (curl-descent engine, mini-batch or full batch; x (B, M), W1 (N, M), W2 (1, N)):
  forward 2BMN + readout 2BN + error outer product BN + ΔW2 2BN + ΔW1 2BMN = 4BMN + 5BN.
- ``curl-moments`` (linear network, full batch: the engine steps on the data moments Σ̂ (M, M)):
  W2W1 2NM + (v − v*)Σ̂ 2M² + the error's peak 2M + ΔW2 2NM + ΔW1 2NM = 6NM + 2M² + 2M.
- ``chaos`` (curl-chaos: the moment step in the invariant subspace of dimension N' = min(N, M + 1)):
  6N'M + 2M² per trajectory step; the Lyapunov window (and its warm-up) steps a perturbed twin too.
- ``mlp`` (``train_mlp``): forward 2B·Σ w_l·w_{l+1}, weight gradients 2B·Σ w_l·w_{l+1}, the error carried
  back through every layer but the first 2B·Σ_{l≥1} w_l·w_{l+1}. The back-propagation count is used for every
  rule (DFA and the local rules do less in the backward part: an upper bound of their step).
- ``transformer`` (hebb-transformer, one network per chunk, T tokens of F features, width d, FF width f,
  output o): forward per sample 2TFd + per block (4·2Td² + 2·2T²d + 2·2Tdf) + 2do; backward twice forward,
  less the input gradient of the embedding (2TFd), which autograd does not compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Work:
    """One chunk's training work: ``members`` × ``steps`` steps of ``per_step`` FLOPs (per member)."""

    engine: str  # curl | curl-moments | chaos | mlp | transformer | none
    dtype: str
    members: int
    steps: int
    per_step: float  # FLOPs per member and step
    shape: dict[str, Any] = field(default_factory=dict)  # what a timing run of the engine needs
    note: str = ""

    @property
    def flops(self) -> float:
        return float(self.members) * self.steps * self.per_step

    def key(self) -> tuple:
        """Chunks with equal keys run the same shape (the same measured rate applies)."""
        return (self.engine, self.dtype, self.members, tuple(sorted(self.shape.items())))


def curl_step(B: int, M: int, N: int) -> int:
    from benchmarks.roofline import step_flops

    return step_flops(1, B, M, N)


def moments_step(M: int, N: int) -> int:
    return 6 * N * M + 2 * M * M + 2 * M


def chaos_step(M: int, N: int) -> int:
    Nr = min(N, M + 1)
    return 6 * Nr * M + 2 * M * M


def mlp_step(widths: list[int], B: int) -> int:
    pairs = [a * b for a, b in zip(widths[:-1], widths[1:])]
    return 2 * B * sum(pairs) + 2 * B * sum(pairs) + 2 * B * sum(pairs[1:])


def transformer_step(B: int, T: int, F: int, d: int, layers: int, d_ff: int, d_out: int) -> int:
    block = 4 * 2 * T * d * d + 2 * 2 * T * T * d + 2 * 2 * T * d * d_ff
    forward = 2 * T * F * d + layers * block + 2 * d * d_out
    return 3 * B * forward - 2 * B * T * F * d  # no gradient for the input, so none through the embedding


def _curl(spec: dict, members: int, *, B: int, moments_ok: bool = True, **extra: Any) -> Work:
    M, N, P, act = spec["M"], spec["N"], spec["P"], spec.get("activation", "tanh")
    dtype = spec.get("dtype", "float64")
    steps = spec["epochs"] * (P // B)
    shape = dict(M=M, N=N, P=P, B=B, activation=act, **extra)
    if moments_ok and B == P and act == "linear":
        return Work("curl-moments", dtype, members, steps, moments_step(M, N), shape)
    return Work("curl", dtype, members, steps, curl_step(B, M, N), shape)


def _mlp(spec: dict, members: int, widths: list[int], rule: str = "sgd", dtype: str = "float64", **kw) -> Work:
    B = spec["batch_size"]
    return Work(
        "mlp", dtype, members, spec["steps"], mlp_step(widths, B), dict(widths=tuple(widths), B=B, rule=rule), **kw
    )


def chunk_work(name: str, spec: dict) -> Work:
    """The training work of one chunk ``spec`` of experiment ``name`` (engine ``none`` if not modelled)."""
    n = len
    # ``group``: members per seed (they share data and batch order, so the engine runs them as one group);
    # ``flip``: which layer's columns the conditions flip (the timing run flips the same one)
    if name == "curl-hidden":
        a = n(spec["alphas"])
        return _curl(spec, a * n(spec["seeds"]), B=spec["B"], group=a, flip="hidden")
    if name == "curl-readout":
        a = n(spec["alphas"])
        return _curl(spec, a * n(spec["seeds"]), B=spec["P"], init="teacher", group=a, flip="readout")
    if name == "curl-speedup":
        c = n(spec["conditions"])
        w = _curl(spec, c * n(spec["seeds"]), B=spec["B"], norm=spec["norm"], group=c, flip="readout")
        note = "upper bound: runs stop once every member is below the threshold"
        return Work(w.engine, w.dtype, w.members, w.steps, w.per_step, w.shape, note)
    if name == "curl-chaos":
        eta = float(spec["eta"])

        def steps(x: int) -> int:
            return int(round(x * 0.1 / eta))

        S, L, Wu = steps(spec["epochs"]), steps(spec["lyap_window"]), steps(spec["lyap_warmup"])
        M, N = spec["M"], spec["N"]
        return Work(
            "chaos", "float64", n(spec["alphas"]) * n(spec["seeds"]), S + L + Wu, chaos_step(M, N), dict(M=M, N=N)
        )
    if name == "curl-theory":
        return Work("none", "float64", 0, 0, 0.0, note="eigenvalue analysis, no training steps")
    if name == "hebb-conventions":  # each chunk is a hebb-table or hebb-phase chunk under one convention
        from plasticlab.experiments.hebbian.conventions import PARTS

        return chunk_work(PARTS[spec["part"]], spec["inner"])
    if name in ("hebb-table", "hebb-theorem", "hebb-transient", "hebb-adam"):
        m = n(spec["gammas"]) * n(spec["seeds"])
        return _mlp(spec, m, spec["widths"], spec["rule"], spec.get("dtype", "float64"))
    if name == "hebb-dfa":
        widths = [spec["d"], *[spec["width"]] * (spec["depth"] - 1), spec["d"]]
        return _mlp(spec, n(spec["scales"]) * n(spec["seeds"]), widths, "dfa", spec.get("dtype", "float64"))
    if name == "hebb-phase":
        d = spec["d_in"]
        widths = [d, 1] if spec["activation"] == "linear-regression" else [d, spec["hidden"], d]
        return _mlp(spec, n(spec["gammas"]) * n(spec["seeds"]), widths, "sgd", "float64")
    if name == "hebb-classify":
        d_in, d_out = (64, 10) if spec["dataset"] == "digits" else (3072, 10)
        return _mlp(
            spec, n(spec["gammas"]) * n(spec["seeds"]), [d_in, spec["hidden"], d_out], spec["rule"], spec["dtype"]
        )
    if name == "hebb-valopt":
        d, h, s = spec["d"], spec["hidden"], spec["setting"]
        widths = {"linreg": [d, 1], "digits": [64, h, 10]}.get(s, [d, h, d])
        m = n(spec["sigmas"]) * n(spec["gammas"]) * n(spec["seeds"])
        return _mlp(spec, m, widths, "sgd", "float64")
    if name in ("rule-atlas", "rule-identify"):
        m = n(spec["gammas"]) * n(spec["sigmas"]) * n(spec["seeds"])
        note = "training only; the per-rule analysis after it is not counted"
        return _mlp(spec, m, [spec["d_in"], spec["hidden"], spec["d_out"]], spec["rule"], "float64", note=note)
    if name == "hebb-transformer":
        T, F, d = spec["tokens"], spec["features"], spec["d_model"]
        per = transformer_step(spec["batch_size"], T, F, d, spec["layers"], spec["d_ff"], 32)
        shape = dict(
            B=spec["batch_size"], T=T, F=F, d=d, heads=spec["heads"], layers=spec["layers"], f=spec["d_ff"]
        )
        return Work("transformer", "float32", 1, spec["steps"], per, shape, "one network per chunk")
    if name == "rule-transfer" and spec["family"] != "cnn":
        m = n(spec["gammas"]) * n(spec["sigmas"]) * n(spec["seeds"])
        return _mlp(
            spec, m, spec["widths"], spec["rule"], "float64", note="training only; the classifier after it"
        )
    if name in ("hebb-cnn", "rule-transfer"):
        return Work("none", "float32", 0, 0, math.nan, note=TORCH_MODEL)
    return Work("none", "float64", 0, 0, math.nan, note="not modelled")


TORCH_MODEL = "a torch model trained by RuleOptimizer, one network at a time: its FLOPs are not modelled"
