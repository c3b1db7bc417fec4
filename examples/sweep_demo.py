"""`sweep-demo`, a plugin: a cheap, CPU-bound toy for exercising the sweep layer (resume, Dask, failures).

    plasticlab run sweep-demo --plugin examples/sweep_demo.py --out runs/sd --workers 2

Each chunk is one gain g; its seeds advance together as one ensemble. Member e iterates
x_{t+1} = g W_t x_t with a fresh W_t ~ N(0, 1/N) every step and measures the growth rate
lambda = log(|x_T| / |x_0|) / T. By rotation invariance |x_{t+1}|^2 / |x_t|^2 = g^2 chi^2_N / N exactly, so
lambda -> log g + (psi(N/2) + log(2/N)) / 2, a closed form the claim checks. Large g overflows float64:
that member is marked diverged (a result, not a failure).

Knobs for testing the sweep layer (they change nothing in the science): ``steps``/``size`` set the CPU cost,
``sleep_s`` adds a fixed wait per chunk, ``fail`` lists chunk indices that raise on purpose unless the file
``heal_file`` exists (so a rerun with the same grid can succeed), and ``slow`` limits ``sleep_s`` to the
listed chunk indices (a run where some chunks finish and one is still running, for Ctrl-C tests).

Chunk specs stay plain dicts (``spec_type = None``): only the failing chunks carry ``fail`` and
``heal_file``, so the other chunks' hashes do not depend on those knobs.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch

from plasticlab import cancel, seeding
from plasticlab.study import Experiment, Interval, ListOf, Require, RunContext, Table, register
from plasticlab.study.claims import BEYOND, AtMost, Claim


def growth_rate_theory(gain: float, n: int) -> float:
    """The exact growth rate of a product of N x N Gaussian matrices with gain ``gain``."""
    from scipy.special import digamma

    return math.log(gain) + 0.5 * (float(digamma(n / 2)) + math.log(2 / n))


@register
class SweepDemo(Experiment):
    """sweep-demo: a cheap random-matrix product for exercising the sweep machinery."""

    name = "sweep-demo"
    summary = "toy random-matrix product, for testing sweeps (resume, Dask, failures)"
    title = "growth rate of a random matrix product"
    paper = False  # a demo of the sweep layer, no claim of either paper
    budget_s = 10
    columns = ("gain", "seed", "growth_rate", "theory", "diverged")
    tiny = dict(gains=[0.5, 2.0], seeds=[0, 1], size=6, steps=4)
    defaults = dict(
        gains=[0.5, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0, 100.0],
        seeds=[0, 1, 2, 3],
        size=64,
        steps=300,
        sleep_s=0.0,
        fail=[],
        heal_file="",
        slow=[],
    )
    quick = dict(steps=100)

    constraints = dict(
        gains=ListOf(Interval(float, 0, None, closed="neither")),
        size=Interval(int, 1, 4096),
        sleep_s=Interval(float, 0, 86400),
        fail=ListOf(Interval(int, 0, None), min_len=0, unique=True),
        slow=ListOf(Interval(int, 0, None), min_len=0, unique=True),
    )
    relations = (
        Require(("fail", "gains"), lambda f, g: all(i < len(g) for i in f), "every fail index < len(gains)"),
        Require(("slow", "gains"), lambda s, g: all(i < len(g) for i in s), "every slow index < len(gains)"),
    )

    def chunks(self, p):
        """One chunk per gain (no chunk index in the spec: inserting a gain keeps the others' hashes)."""
        out = []
        for i, g in enumerate(p["gains"]):
            sleep_s = p["sleep_s"] if not p["slow"] or i in p["slow"] else 0.0
            spec = dict(gain=g, seeds=p["seeds"], size=p["size"], steps=p["steps"], sleep_s=sleep_s)
            if i in p["fail"]:
                spec.update(fail=True, heal_file=p["heal_file"])
            out.append(spec)
        return out

    def run_chunk(self, spec, ctx: RunContext) -> pd.DataFrame:
        """Iterate the gain's random-matrix product for every seed at once; one row per seed."""
        if spec.get("fail") and not (spec["heal_file"] and Path(spec["heal_file"]).exists()):
            raise RuntimeError(f"sweep-demo chunk gain={spec['gain']} failed on purpose")
        if spec["sleep_s"]:
            cancel.sleep(spec["sleep_s"])
        seeds, n, steps, g = spec["seeds"], spec["size"], spec["steps"], spec["gain"]
        x = seeding.normal(seeds, seeding.key_of("x0"), (n, 1))
        x = x / x.norm(dim=1, keepdim=True)
        base = seeding.key_of("W")
        diverged_at = torch.full((len(seeds),), -1, dtype=torch.int64)
        for t in range(steps):
            cancel.check()
            w = seeding.normal(seeds, base + t, (n, n)) / math.sqrt(n)
            x = g * torch.bmm(w, x)
            bad = ~torch.isfinite(x.norm(dim=(1, 2))) & (diverged_at < 0)
            diverged_at[bad] = t
        diverged = diverged_at >= 0
        rate = torch.where(diverged, torch.nan, torch.log(x.norm(dim=(1, 2))) / steps)
        return pd.DataFrame(
            dict(
                gain=g,
                seed=seeds,
                size=n,
                steps=steps,
                growth_rate=rate.tolist(),
                theory=growth_rate_theory(g, n),
                diverged=diverged.tolist(),
                diverged_at=diverged_at.tolist(),
            )
        )

    def claims(self, df, p):
        """The mean growth rate of every non-diverged gain matches the closed form (largest |ours − theory|)."""
        agg = _per_gain(df)
        # Per-seed sd of the estimate is about 1/sqrt(2 N T); allow 4 standard errors of the mean.
        tol = 4 / math.sqrt(2 * p["size"] * p["steps"] * max(1, len(p["seeds"])))
        err = float(agg["ours − theory"].abs().max()) if agg.ours.notna().any() else math.nan
        return [
            Claim(
                "mean growth rate of a random-matrix product matches the closed form (largest |ours − theory|)",
                BEYOND,
                "closed form log g + (ψ(N/2) + log(2/N))/2",
                math.nan,
                err,
                math.nan,
                int(agg.ours.notna().sum()),
                self.size(p),
                AtMost(tol),
                diverged=int(df.diverged.sum()),
            )
        ]

    def tables(self, df, p):
        """Growth rate per gain beside the closed form, and the share of seeds that diverged."""
        caption = "growth rate per step: ours (mean over seeds) vs closed form log g + (ψ(N/2) + log(2/N))/2"
        return [Table(_per_gain(df), caption)]


def _per_gain(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[~df["diverged"]]
    agg = ok.groupby("gain").agg(
        ours=("growth_rate", "mean"),
        sd=("growth_rate", "std"),
        n=("growth_rate", "size"),
        theory=("theory", "first"),
    )
    agg["ours − theory"] = agg["ours"] - agg["theory"]
    div = df.groupby("gain")["diverged"].mean().rename("diverged fraction")
    return agg.join(div, how="outer").reset_index()
