"""``plasticlab.run``: params -> chunks -> (sweep executor) -> results table -> figures/report."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from plasticlab.experiments import get


def run(
    name: str,
    quick: bool = False,
    out: str | Path | None = None,
    *,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    device: str = "auto",
    compile: bool | str = False,
    **overrides: Any,
) -> pd.DataFrame:
    """Run experiment ``name``; return its tidy results table and, with ``out``, write
    ``out/results.parquet``, the figures and ``out/report.md``.

    Each chunk is an independent task (``executor="local"`` with ``workers`` processes, 1 = in-process,
    or ``executor="dask"`` on ``scheduler`` / a loopback LocalCluster). With ``out``, finished chunks are
    kept under ``out`` so that running the same call again only computes what is missing (see
    :mod:`plasticlab.sweeps`). If chunks raise, the others still finish and are saved, then
    :class:`plasticlab.sweeps.SweepFailed` is raised; calling again retries only the failed chunks.
    ``device``: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N" — where every chunk's
    tensors are made (results agree across devices within float tolerance). ``compile=True`` (CLI:
    ``--set compile=true``) runs the engines' steps through torch.compile (see :mod:`plasticlab.compiling`).
    """
    from plasticlab import compiling, devices
    from plasticlab.sweeps import execute
    from plasticlab.sweeps.executors import check_options
    from plasticlab.sweeps.store import check_out, write_parquet

    dev = devices.resolve(device)  # a bad device is a user error before any work
    compile_flag = compiling.as_flag(compile)
    exp = get(name)
    p = exp.params(quick=quick, **overrides)
    specs = exp.chunks(p)
    check_options(executor, workers, scheduler)  # every refusal comes before the folder is made
    if out is not None:
        out = check_out(out, exp.name, keys=exp.defaults)

    def finish(df: pd.DataFrame) -> None:
        # Only now, with every chunk computed and checked, is the previous table replaced (atomically).
        if out is not None:
            write_parquet(df, out / "results.parquet")
            with warnings.catch_warnings():
                # all-NaN groups (every run of a cell diverged) are reported as such, not as numpy noise
                warnings.filterwarnings(
                    "ignore", r"All-NaN|Mean of empty slice|Degrees of freedom", RuntimeWarning
                )
                exp.report(df, p, out)
            if (note := diverged_note(df)) is not None:
                _mark_report(out / "report.md", note)

    with devices.use(dev), compiling.use(compile_flag):
        df = execute(
            exp,
            specs,
            out=out,
            executor=executor,
            workers=workers,
            scheduler=scheduler,
            progress=progress,
            params=p,
            finish=finish,
        )
    return df


def diverged_note(df: pd.DataFrame) -> str | None:
    """A one-line note if the table has runs and every one of them diverged, else None."""
    if "diverged" not in df or len(df) == 0 or not bool(df["diverged"].astype(bool).all()):
        return None
    first = ""
    if "diverged_at" in df and df["diverged_at"].notna().any():
        first = f", the first at step {int(df['diverged_at'].min())}"
    return f"every run diverged ({len(df)} of {len(df)}{first}): no claim could be measured; try a smaller lr"


def _mark_report(path: Path, note: str) -> None:
    """Put the all-diverged note right under the report's title, where the verdicts start."""
    if not path.exists():
        return
    title, _, rest = path.read_text().partition("\n")
    path.write_text(f"{title}\n\n> **Verdict: not reproduced — {note}.**\n{rest}")
