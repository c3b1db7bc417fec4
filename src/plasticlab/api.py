"""``plasticlab.run``: params -> chunks -> (sweep executor) -> results table -> figures/report."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from plasticlab.experiments import get


def run(name: str, quick: bool = False, out: str | Path | None = None, *, executor: str = "local",
        workers: int = 1, scheduler: str | None = None, progress: bool = False,
        **overrides: Any) -> pd.DataFrame:
    """Run experiment ``name``; return its tidy results table and, with ``out``, write
    ``out/results.parquet``, the figures and ``out/report.md``.

    Finished chunks are kept under ``out`` so that running the same call again only computes what is
    missing (see :mod:`plasticlab.sweeps`).
    """
    from plasticlab.sweeps import execute

    exp = get(name)
    p = exp.params(quick=quick, **overrides)
    specs = exp.chunks(p)
    df = execute(exp, specs, out=out, executor=executor, workers=workers, scheduler=scheduler,
                 progress=progress)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        df.to_parquet(out / "results.parquet", index=False)
        exp.report(df, p, out)
    return df
