"""`plasticlab status DIR`: done / pending / failed chunks of the grid last recorded in DIR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plasticlab.sweeps.store import LOCK, Manifest, holder, is_locked


def summary(path: str | Path) -> dict[str, Any]:
    """Counts and per-chunk states for the current grid; raises PlasticlabError if DIR has no manifest."""
    m = Manifest.load(path, must_exist=True)
    states: list[str] = []
    failed = []
    for i, h in enumerate(m.grid):
        e = m.chunks.get(h, {})
        state = "done" if m.is_done(h) else ("failed" if e.get("state") == "failed" else "pending")
        states.append(state)
        if state == "failed":
            failed.append(dict(index=i, hash=h, **e.get("error", {})))
    stale = len(set(m.chunks) - set(m.grid))
    runs = m.data.get("runs", [])
    return dict(
        experiment=m.data.get("experiment"),
        total=len(states),
        done=states.count("done"),
        pending=states.count("pending"),
        failed=len(failed),
        states=states,
        failures=failed,
        stale=stale,
        runs=len(runs),
        last_run=runs[-1] if runs else None,
        running=is_locked(Path(path)),
        pid=holder(Path(path) / LOCK),
    )


def status(path: str | Path) -> str:
    """A human-readable summary of a run folder: done, pending and failed chunks."""
    s = summary(path)
    lines = [
        f"{s['experiment']} in {path}: {s['done']} done, {s['pending']} pending, {s['failed']} failed "
        f"of {s['total']} chunks"
    ]
    if s["running"]:
        lines.append(f"a run is in progress (pid {s['pid']})")
    elif s["pending"] or s["failed"]:
        lines.append("run the same command again to compute the pending and failed chunks")
    for f in s["failures"]:
        lines.append(f"  chunk {f['index']} failed: {f.get('type', '?')}: {f.get('message', '')}")
    if s["stale"]:
        lines.append(f"{s['stale']} chunks of earlier grids are kept on disk but not in the results")
    if s["last_run"]:
        r = s["last_run"]
        ended = f", ended {r['ended']}" if "ended" in r else " (still running or killed)"
        lines.append(
            f"last run {r['id']}: {r['computed']} computed, {r['failed']} failed "
            f"({r['executor']}, started {r['started']}{ended})"
        )
    return "\n".join(lines)
