"""Run an experiment's chunks as independent tasks; with ``out``, resumably.

With an output folder every finished chunk is saved (part file, then manifest entry) the moment it
arrives, so a killed run loses only the chunks that were in flight. Running again computes only chunks
of the current grid that are not done (new, failed or never finished); the table returned is always the
current grid's chunks in chunk order.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from plasticlab import compiling, devices
from plasticlab.errors import PlasticlabError
from plasticlab.study.context import RunContext
from plasticlab.study.contract import check_spec
from plasticlab.sweeps import executors
from plasticlab.sweeps.store import (
    CORRUPT,
    MANIFEST,
    DirLock,
    Manifest,
    chunk_hash,
    file_sha256,
    grid_id,
    move_aside,
    now,
    part_hashes,
    read_parquet,
    remove_temp_files,
    verify_part,
    warn,
    write_part,
)


class SweepFailed(PlasticlabError):
    """Some chunks raised. Everything that finished is saved; running the same command again retries
    only the failed chunks. ``failed``: list of (chunk index, error dict); ``partial``: the finished rows."""

    def __init__(
        self, message: str, failed: list[tuple[int, dict]], total: int, out: Path | None, partial: pd.DataFrame
    ):
        super().__init__(message)
        self.failed, self.total, self.out, self.partial = failed, total, out, partial


def hashes_of(exp, specs: list[dict]) -> list[str]:
    """The content hash of each chunk spec (with the experiment's code_version)."""
    version = getattr(exp, "code_version", 0)
    to_dict = getattr(exp, "spec_dict", dict)  # typed specs hash as the plain dicts they travel as
    return [chunk_hash(exp.name, to_dict(spec), version) for spec in specs]


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class _Bar:
    """Progress over chunks with ETA, on stderr so stdout stays clean for scripts: a rich bar on a
    terminal; elsewhere (nohup, a batch job, ``> log 2>&1``), where a bar is drawn only at the end, one
    plain line per finished chunk."""

    def __init__(self, enabled: bool, total: int, skipped: int, name: str):
        self.progress = None
        self.lines = False
        self.failed = self.done = 0
        self.total = total
        self.t0 = time.monotonic()
        if not enabled or total == 0:
            return
        from rich.console import Console

        console = Console(stderr=True)
        self.name = name + (f" ({skipped} already done)" if skipped else "")
        if not console.is_terminal and not console.is_jupyter:  # a notebook draws the bar live itself
            self.lines = True
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(self.name, total=total)
        self.progress.start()

    def advance(self, ok: bool) -> None:
        self.failed += not ok
        self.done += 1
        if self.lines:
            elapsed = time.monotonic() - self.t0
            eta = elapsed / self.done * (self.total - self.done)
            failed = f", {self.failed} failed" if self.failed else ""
            print(
                f"{self.name}: {self.done}/{self.total} chunks{failed}, elapsed {_hms(elapsed)}, ETA {_hms(eta)}",
                file=sys.stderr,
                flush=True,
            )
        if self.progress is None:
            return
        desc = self.name + (f" [red]{self.failed} failed[/red]" if self.failed else "")
        self.progress.update(self.task, advance=1, description=desc)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _failure(
    exp, failed: list[tuple[int, dict]], total: int, out: Path | None, partial: pd.DataFrame
) -> SweepFailed:
    i, err = failed[0]
    where = (
        f"; finished chunks are saved in {out}, run the same command again to retry only the failed "
        f"ones (see `plasticlab status {out}`)"
        if out is not None
        else ""
    )
    msg = (
        f"{len(failed)} of {total} chunks of {exp.name} failed (first: chunk {i}, "
        f"{err['type']}: {err['message']}){where}"
    )
    return SweepFailed(msg, failed, total, out, partial)


def execute(
    exp,
    specs: list[dict[str, Any]],
    out: str | Path | None = None,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    params: dict[str, Any] | None = None,
    finish: Callable[[pd.DataFrame], None] | None = None,
    ctx: RunContext | None = None,
) -> pd.DataFrame:
    """Compute ``specs`` (chunks of ``exp``) and return their rows, in chunk order.

    With ``out``, ``finish(df)`` (e.g. writing results.parquet and the report) runs while the folder is
    still locked, only after every chunk finished and every part was checked. Raises SweepFailed (after
    saving everything that finished) if any chunk raised. ``ctx`` (device, compile flag, plugins) travels with
    every chunk to whichever process computes it.
    """
    for spec in specs:
        check_spec(exp, spec)
    specs = [exp.spec_dict(s) if hasattr(exp, "spec_dict") else dict(s) for s in specs]
    ctx = ctx or RunContext(device=str(devices.current()), compile=compiling.enabled())
    hashes = hashes_of(exp, specs)
    n_workers = executors.check_options(executor, workers, scheduler)  # before any work
    if executor == "local" and n_workers > 1 and len(set(hashes)) > 1:
        executors.check_main_guard(n_workers)
    # A remote scheduler is reached before the output folder is made: a refused run leaves nothing.
    client = executors.connect(scheduler) if executor == "dask" and scheduler and specs else None
    opts = _Options(executor, workers, scheduler, ctx, client)
    try:
        if out is None:
            df = _execute_in_memory(exp, specs, hashes, opts, progress)
            if finish is not None:
                finish(df)
            return df
        out = Path(out)
        with DirLock(out):
            df = _execute_resumable(exp, specs, hashes, out, opts, progress, params)
            if finish is not None:
                finish(df)
                record_results(out, hashes, df)
            return df
    finally:
        if client is not None:
            client.close(timeout=5)


@dataclass
class _Options:
    """Where chunks run: the executor, its worker count, a Dask scheduler and its connected client."""

    executor: str
    workers: int | None
    scheduler: str | None
    ctx: RunContext
    client: Any = None

    def run(self, name: str, specs: list[dict]):
        """The chunks ``specs`` of experiment ``name`` on this executor, as (index, result) pairs."""
        return executors.run(name, specs, self.executor, self.workers, self.scheduler, self.client, self.ctx)


def record_results(out: Path, hashes: list[str], df: pd.DataFrame) -> None:
    """Note in the manifest which grid OUT/results.parquet was built from, so `status` can tell."""
    m = Manifest.load(out)
    path = out / "results.parquet"
    if path.exists():
        m.data["results"] = dict(grid=grid_id(hashes), rows=len(df), sha256=file_sha256(path), written=now())
        m.save()


def _execute_in_memory(exp, specs, hashes, opts: _Options, progress) -> pd.DataFrame:
    first: dict[str, int] = {}  # identical chunks are computed once
    for i, h in enumerate(hashes):
        first.setdefault(h, i)
    todo = list(first.values())
    frames: dict[str, pd.DataFrame] = {}
    failed: list[tuple[int, dict]] = []
    bar = _Bar(progress, len(todo), 0, exp.name)
    try:
        with closing(opts.run(exp.name, [specs[i] for i in todo])) as it:
            for j, res in it:
                if res["ok"]:
                    frames[hashes[todo[j]]] = res["df"]
                else:
                    failed.append((todo[j], res["error"]))
                bar.advance(res["ok"])
    finally:
        bar.close()
    df = _concat([frames.get(h) for h in hashes])
    if failed:
        raise _failure(exp, sorted(failed, key=lambda f: f[0]), len(specs), None, df)
    return df


def _open_manifest(exp, out: Path, hashes: list[str], specs: list[dict], params) -> tuple[Manifest, list[int]]:
    """Load (or repair) the manifest, refuse another experiment's folder, check every done part of the
    grid (a damaged one is moved aside and recomputed) and return the chunk indices still to compute."""
    remove_temp_files(out)
    m = Manifest.load(out, repair=True)
    owner = m.data.get("experiment")
    if owner and owner != exp.name:
        raise PlasticlabError(
            f"{out} holds a run of {owner}, not {exp.name}; choose another --out (nothing was changed)"
        )
    m.data.update(experiment=exp.name, params=params, grid=hashes)
    if m.lost is not None:
        _rebuild(exp, m, out, hashes, specs)
    todo: list[int] = []
    seen = set()
    for i, h in enumerate(hashes):
        if h in seen:
            continue
        seen.add(h)
        entry = m.chunks.setdefault(h, dict(state="pending", attempts=0))
        entry.update(index=i, spec=specs[i])
        if m.is_done(h) and (why := m.damage(h)) is not None:
            dest = move_aside(m.part(h), out / CORRUPT)
            warn(f"chunk {i}: part {m.part(h).name} {why}; moved to {dest}, recomputing it")
        if not m.is_done(h):
            entry["state"] = "pending" if entry.get("state") == "done" else entry.get("state", "pending")
            todo.append(i)
    return m, todo


def _rebuild(exp, m: Manifest, out: Path, hashes: list[str], specs: list[dict]) -> None:
    """A run folder whose manifest was lost (deleted, garbled): every part in OUT/parts named by the hash
    of a chunk of this grid, or of the grid in OUT/config.json (the last finished run's parameters), is
    read whole and checked, then listed as done, so only what is really missing is computed."""
    known = {h: (i, spec) for i, (h, spec) in reversed(list(enumerate(zip(hashes, specs))))}
    try:  # the previous run's grid, so its parts stay listed (and reusable) when this grid differs
        config = json.loads((out / "config.json").read_text())
        # only what differs from the defaults: some defaults (an empty list) cannot be passed back
        old = exp.chunks(exp.params(**{k: v for k, v in config.items() if exp.defaults.get(k, v) != v}))
        for h, spec in zip(hashes_of(exp, old), old):
            known.setdefault(h, (None, spec))
    except Exception:
        pass  # no config.json, or one this code no longer accepts: this grid's parts only
    on_disk = part_hashes(out)
    recovered, bad = 0, []
    for h in sorted(on_disk & set(known)):
        i, spec = known[h]
        try:
            sha, rows = verify_part(m.part(h), getattr(exp, "columns", ()))
        except ValueError as e:
            bad.append(f"{h}.parquet {e}; moved to {move_aside(m.part(h), out / CORRUPT)}")
            continue
        entry = dict(state="done", attempts=1, sha256=sha, rows=rows, spec=spec, recovered=now())
        if i is not None:
            entry["index"] = i
        m.chunks[h] = entry
        recovered += h in set(hashes)
    todo = len(set(hashes)) - recovered
    unknown = len(on_disk - set(known))
    extra = f"; {unknown} part{'s' * (unknown != 1)} of other grids left as they are" if unknown else ""
    extra += f"; damaged: {', '.join(bad)}" if bad else ""
    warn(
        f"{out / MANIFEST} {m.lost}: rebuilt from config.json and parts/: {recovered} of {len(set(hashes))} "
        f"chunks recovered, {todo} to compute{extra}"
    )


def _execute_resumable(exp, specs, hashes, out, opts: _Options, progress, params) -> pd.DataFrame:
    m, todo = _open_manifest(exp, out, hashes, specs, params)
    run_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    run_rec = dict(
        id=run_id,
        started=now(),
        pid=os.getpid(),
        executor=opts.executor,
        workers=opts.workers,
        scheduler=opts.scheduler,
        chunks=len(hashes),
        todo=len(todo),
        computed=0,
        failed=0,
    )
    m.data.setdefault("runs", []).append(run_rec)
    m.save()  # the grid is on disk before any work, so `status` can show what is pending

    failed: list[tuple[int, dict]] = []
    bar = _Bar(progress, len(todo), len(set(hashes)) - len(todo), exp.name)
    try:
        with closing(opts.run(exp.name, [specs[i] for i in todo])) as it:
            for j, res in it:
                ok = _save_result(m, out, todo[j], hashes[todo[j]], res, run_rec)
                if not ok:
                    failed.append((todo[j], m.chunks[hashes[todo[j]]]["error"]))
                bar.advance(ok)
    finally:
        bar.close()
        run_rec["ended"] = now()
        m.save()
    df = _concat([_read_part(m, h, i) if m.is_done(h) else None for i, h in enumerate(hashes)])
    if failed:
        raise _failure(exp, sorted(failed, key=lambda f: f[0]), len(specs), out, df)
    return df


def _save_result(m: Manifest, out: Path, i: int, h: str, res: dict, run_rec: dict) -> bool:
    """Record one chunk's result: part first (a manifest entry never points at nothing), then entry."""
    entry = m.chunks[h]
    entry.update(
        attempts=entry.get("attempts", 0) + 1,
        run=run_rec["id"],
        finished=now(),
        seconds=res["seconds"],
        worker=res["worker"],
    )
    if res["ok"]:
        try:
            entry["sha256"] = write_part(out, h, res["df"])
        except Exception as e:
            error = dict(type=type(e).__name__, message=f"writing part: {e}", traceback=traceback.format_exc())
            res = dict(ok=False, error=error)
    if res["ok"]:
        entry.update(state="done", rows=len(res["df"]))
        entry.pop("error", None)
        run_rec["computed"] += 1
    else:
        entry.update(state="failed", error=res["error"])
        entry.pop("sha256", None)
        run_rec["failed"] += 1
    m.save()
    return res["ok"]


def _read_part(m: Manifest, h: str, i: int) -> pd.DataFrame:
    try:
        return read_parquet(m.part(h))
    except Exception as e:  # checked at the start of the run; damaged since by something outside
        raise PlasticlabError(f"chunk {i}: cannot read {m.part(h)} ({type(e).__name__}); run again") from None
