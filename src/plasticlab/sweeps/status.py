"""`plasticlab status DIR`: done / pending / failed / damaged chunks of the grid last recorded in DIR, and
whether OUT/results.parquet is the table of that grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plasticlab.sweeps.store import LOCK, Manifest, file_sha256, grid_id, holder, is_locked


def _results_state(m: Manifest, out: Path) -> str:
    """'current', 'missing', 'stale' (an earlier grid or run) or 'modified' (bytes changed since written)."""
    path = out / "results.parquet"
    rec = m.data.get("results")
    if not path.exists():
        return "missing"
    if not rec or rec.get("grid") != grid_id(m.grid):
        return "stale"
    return "current" if file_sha256(path) == rec.get("sha256") else "modified"


def summary(path: str | Path) -> dict[str, Any]:
    """Counts and per-chunk states for the current grid; raises PlasticlabError if DIR has no readable
    manifest. Every done part is checked against its checksum, so "done" means usable."""
    m = Manifest.load(path, must_exist=True)
    states: list[str] = []
    failed, damaged = [], []
    for i, h in enumerate(m.grid):
        e = m.chunks.get(h, {})
        state = "done" if m.is_done(h) else ("failed" if e.get("state") == "failed" else "pending")
        if state == "done" and (why := m.damage(h)) is not None:
            state = "damaged"
            damaged.append(dict(index=i, hash=h, why=why))
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
        damaged=damaged,
        states=states,
        failures=failed,
        stale=stale,
        runs=len(runs),
        last_run=runs[-1] if runs else None,
        running=is_locked(Path(path)),
        pid=holder(Path(path) / LOCK),
        results=_results_state(m, Path(path)),
    )


_RESULTS = {
    "current": "results.parquet is the table of this grid",
    "missing": "no results.parquet yet (written when every chunk is done)",
    "stale": "results.parquet and the report are from an earlier run, not this grid",
    "modified": "results.parquet was changed after the run wrote it",
}


def status(path: str | Path) -> str:
    """The human-readable form of :func:`summary`, as `plasticlab status DIR` prints it."""
    s = summary(path)
    dmg = f", {len(s['damaged'])} damaged" if s["damaged"] else ""
    lines = [
        f"{s['experiment']} in {path}: {s['done']} done, {s['pending']} pending, {s['failed']} failed{dmg} "
        f"of {s['total']} chunks; {_RESULTS[s['results']]}"
    ]
    if s["running"]:
        lines.append(f"a run is in progress (pid {s['pid']})")
    elif s["pending"] or s["failed"] or s["damaged"]:
        lines.append("run the same command again to compute the pending, failed and damaged chunks")
    for d in s["damaged"]:
        lines.append(f"  chunk {d['index']} damaged: part {d['hash']}.parquet {d['why']}")
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
