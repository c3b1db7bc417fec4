"""``plasticlab.run``: params -> chunks -> (sweep executor) -> results table -> figures/report."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from plasticlab.study import RunContext, get
from plasticlab.study.claims import Claim


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
    plugins: Sequence[str] = (),
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
    ``plugins``: modules (names or ``.py`` files) that register a user's rules or experiments; imported here
    and in every worker, so they run by name at any ``workers`` and on Dask.
    """
    return run_with_claims(
        name,
        quick,
        out,
        executor=executor,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        device=device,
        compile=compile,
        plugins=plugins,
        **overrides,
    )[0]


def run_with_claims(
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
    plugins: Sequence[str] = (),
    **overrides: Any,
) -> tuple[pd.DataFrame, list[Claim]]:
    """:func:`run`, also returning the claims its report was written with (``[]`` without ``out``)."""
    from plasticlab import compiling, devices
    from plasticlab.study.registry import load_plugins, plugin_name
    from plasticlab.sweeps import execute
    from plasticlab.sweeps.executors import check_options
    from plasticlab.sweeps.store import check_out

    plugin_names = tuple(plugin_name(n) for n in plugins)
    load_plugins(plugin_names)
    ctx = RunContext(
        device=str(devices.resolve(device)),  # a bad device is a user error before any work
        compile=compiling.as_flag(compile),
        plugins=plugin_names,
    )
    exp = get(name)
    p = exp.params(quick=quick, **overrides)
    specs = exp.chunks(p)
    check_options(executor, workers, scheduler)  # every refusal comes before the folder is made
    if out is not None:
        out = check_out(out, exp.name, keys=exp.defaults)
    claims: list[Claim] = []
    finish = None if out is None else _finisher(exp, p, out, claims)
    with devices.use(ctx.device), compiling.use(ctx.compile):
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
            ctx=ctx,
        )
    return df, claims


def _finisher(exp: Any, p: dict[str, Any], out: Path, claims: list[Claim]) -> Callable[[pd.DataFrame], None]:
    """What runs once every chunk is in and checked: results.parquet, then the report (its claims into
    ``claims``), then the all-diverged mark."""
    from plasticlab.study.report import write_report
    from plasticlab.sweeps.store import write_parquet

    def finish(df: pd.DataFrame) -> None:
        # Only now, with every chunk computed and checked, is the previous table replaced (atomically).
        write_parquet(df, out / "results.parquet")
        with warnings.catch_warnings():
            # all-NaN groups (every run of a cell diverged) are reported as such, not as numpy noise
            warnings.filterwarnings("ignore", r"All-NaN|Mean of empty slice|Degrees of freedom", RuntimeWarning)
            claims.extend(write_report(exp, df, p, out))
        if (note := diverged_note(df)) is not None:
            _mark_report(out / "report.md", note)

    return finish


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
