"""``plasticlab reproduce``: every paper experiment, one scoreboard of every claim.

Each experiment runs (resumably, exactly as ``plasticlab run``) into ``OUT/NAME``, or, with
``collect=True``, its results already in ``OUT/NAME`` are read back (nothing there is rewritten) instead of
recomputed: that is how ``results/SCOREBOARD.md`` is built from the committed paper-size runs. Every
experiment's ``claims(df, params)`` gives rows; the verdicts come from :func:`plasticlab.study.claims.verdict`.
Writes ``OUT/SCOREBOARD.md`` and ``OUT/scoreboard.csv``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from plasticlab.errors import PlasticlabError, unknown_choice
from plasticlab.study.claims import Claim
from plasticlab.study.scoreboard import Outcome, write_scoreboard


def paper_experiments() -> list[str]:
    """The experiments ``reproduce`` covers (every registered one that tests a paper claim)."""
    from plasticlab.study import all_experiments

    return [n for n, e in all_experiments().items() if getattr(e, "paper", True)]


def all_diverged(df: pd.DataFrame) -> bool:
    """True when the table has runs and every one of them diverged."""
    return "diverged" in df.columns and len(df) > 0 and bool(df["diverged"].astype(bool).all())


def _read(out: Path) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """The finished run in ``out``: its table and the params it ran with (the sweep manifest's record).
    A committed result too large to keep whole may keep instead the compact table its report and claims
    also accept (``features.parquet``, one row per run: rule-identify)."""
    from plasticlab.sweeps.store import read_parquet

    table, manifest = out / "results.parquet", out / "manifest.json"
    if not table.exists():
        table = out / "features.parquet"
    if not (table.exists() and manifest.exists()):
        return None
    data = json.loads(manifest.read_text())
    params, chunks = data.get("params"), data.get("chunks", {})
    if not isinstance(params, dict):
        return None
    # A run extended (more seeds, a finer grid) and stopped part-way leaves the table of the earlier, smaller
    # run beside a manifest that records the larger one: that table is not this manifest's run. The chunks'
    # recorded states decide, not their part files: a committed result may keep only its compact table.
    if any((chunks.get(h) or {}).get("state") != "done" for h in data.get("grid", [])):
        return None
    return read_parquet(table), params


@dataclass
class Partial:
    """A sweep stopped part-way (a long run committed as its chunks finish): the table of its finished chunks."""

    df: pd.DataFrame
    params: dict[str, Any]
    done: int
    total: int


def read_partial(out: Path) -> Partial | None:
    """The finished, undamaged chunks of an unfinished sweep in ``out``, in grid order, or None when there
    is no manifest or no finished chunk. Lets the scoreboard show a paper-size run that is still going
    (its size then says how many chunks are in) instead of nothing."""
    from plasticlab.sweeps.store import Manifest, read_parquet

    if not (out / "manifest.json").exists():
        return None
    m = Manifest.load(out)
    params = m.data.get("params")
    done = [h for h in m.grid if m.is_done(h) and m.damage(h) is None]
    if not isinstance(params, dict) or not done:
        return None
    df = pd.concat([read_parquet(m.part(h)) for h in done], ignore_index=True)
    return Partial(df, params, len(done), len(m.grid))


def _chunk_hours(out: Path) -> tuple[int, float, float]:
    """The current grid's finished chunks, their summed compute time in hours, and the hours of finished
    chunks outside that grid, as the sweep manifest recorded them. Earlier, smaller runs' chunks stay in the
    folder (nothing computed is deleted), but they did not make this run's table: counted apart, they
    neither inflate its cost nor vanish."""
    path = out / "manifest.json"
    if not path.exists():
        return 0, math.nan, 0.0
    data = json.loads(path.read_text())
    chunks = data.get("chunks", {})
    grid = set(data.get("grid") or chunks)
    done = {h: float(c.get("seconds") or 0.0) for h, c in chunks.items() if c.get("state") == "done"}
    current = [s for h, s in done.items() if h in grid]
    return len(current), sum(current) / 3600, sum(s for h, s in done.items() if h not in grid) / 3600


def _one(
    name: str, out: Path, quick: bool, collect: bool, run_kw: dict[str, Any], rerender: bool = False
) -> Outcome:
    from plasticlab.api import run as run_api
    from plasticlab.study import get
    from plasticlab.study.report import write_report

    exp = get(name)
    t0 = time.perf_counter()
    part: Partial | None = None
    claims: list[Claim] | None = None
    if collect:
        got = _read(out)
        if got is None:
            part = read_partial(out)
            if part is None:
                return Outcome(
                    name,
                    status="missing",
                    message=f"no finished run (results.parquet or features.parquet + manifest.json) in {out}",
                )
            got = part.df, part.params
        df, p = got
        p = exp.params(**p)  # validates, fills keys added since the run
        # a finished run's report.md and figures are left as its run wrote them (collect only reads) unless
        # ``rerender`` asks for them drawn again by today's code; an unfinished one has none, so it gets one
        # from the chunks that are in
        if part is not None:
            claims = _partial_report(exp, df, p, out, part)
        elif rerender:
            claims = write_report(exp, df, p, out)
    else:
        p = exp.params(quick=quick)
        df = run_api(name, quick=quick, out=out, **run_kw)
    size = exp.size(p) if part is None else _partial_size(exp.size(p), part)
    oc = Outcome(name, seconds=time.perf_counter() - t0, size=size)
    oc.chunks, oc.chunk_hours, oc.earlier_hours = _chunk_hours(out)
    rel = f"{out.name}/report.md"
    if claims is None:
        claims = exp.claims(df, p)  # the run wrote its report already (or collect leaves it as it is)
    oc.claims = [c.with_(experiment=name, report=rel, size=size) for c in claims]
    if all_diverged(df):
        oc.status, oc.message = "all diverged", f"every one of the {len(df)} runs diverged"
    return oc


def _partial_size(size: str, part: Partial) -> str:
    return f"{size}; unfinished: {part.done} of {part.total} chunks in"


def _partial_report(exp: Any, df: pd.DataFrame, p: dict[str, Any], out: Path, part: Partial) -> list[Claim]:
    """report.md (and figures) of an unfinished sweep, headed by how much of it is in; returns its claims."""
    from plasticlab.study.report import write_report

    claims = write_report(exp, df, p, out)
    path = out / "report.md"
    if path.exists():
        head = (
            f"> **Unfinished run: {part.done} of {part.total} chunks are in.** This report is computed from "
            "those chunks only; the sweep resumes from them (`plasticlab run` with the same `--out`).\n\n"
        )
        path.write_text(head + path.read_text())
    return claims


def reproduce(
    out: str | Path,
    *,
    quick: bool = False,
    only: list[str] | None = None,
    collect: bool = False,
    progress: bool = False,
    rerender: bool = False,
    **run_kw: Any,
) -> list[Outcome]:
    """Run (or with ``collect`` read) every paper experiment under ``out`` and write the scoreboard there.

    ``rerender``: a collected finished run's report.md and figures are drawn again from its table (after a
    change to a report or its claims, so report and scoreboard agree); only for the experiments asked for.

    ``only``: run just these; the scoreboard still lists every experiment, the others read from ``out`` as
    they are (missing where nothing is there). Returns the outcomes of the experiments asked for."""
    from plasticlab.study.registry import load_plugins, plugin_name

    load_plugins(plugin_name(n) for n in run_kw.get("plugins", ()))  # a plugin may add a paper experiment
    names = paper_experiments()
    for n in only or []:
        if n not in names:
            raise unknown_choice("experiment for reproduce", n, names)
    from plasticlab.sweeps import executors, store

    # the same door as `run`: bad options and a bad --out are refused before anything is made
    executors.check_options(run_kw.get("executor", "local"), run_kw.get("workers"), run_kw.get("scheduler"))
    out = store.check_collection_out(out)
    out.mkdir(parents=True, exist_ok=True)
    outcomes = []
    # --only runs (or reads) just those; the others are read back from OUT as they are, so the scoreboard
    # written below still covers every experiment instead of shrinking to the ones asked for
    for name in names:
        sub, asked = out / name, not only or name in only
        try:
            kw = dict(run_kw, progress=progress and asked)
            oc = _one(name, sub, quick, collect or not asked, kw, rerender=rerender and asked)
        except PlasticlabError as e:
            oc = Outcome(name, status="failed", message=str(e).splitlines()[0])
        except Exception as e:  # one experiment's bug (e.g. a table from older code) must not sink the board
            oc = Outcome(name, status="failed", message=f"{type(e).__name__}: {e}".splitlines()[0])
        outcomes.append(oc)
        if progress and asked:
            print(f"{name}: {oc.status}, {len(oc.claims)} claims {oc.message}".rstrip(), flush=True)
    write_scoreboard(out, outcomes, quick=quick)
    return [oc for oc in outcomes if not only or oc.name in only]
