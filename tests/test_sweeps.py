"""The sweep layer: resume after SIGKILL, changed grids, failures and retries, local pool vs Dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import plasticlab
from plasticlab.errors import PlasticlabError
from plasticlab.experiments import get
from plasticlab.sweeps import SweepFailed, chunk_hash, execute, summary
from plasticlab.sweeps.store import DirLock, atomic_write
from plasticlab.sweeps.worker import threads_per_worker, usable_cores

TINY = dict(seeds=[0, 1], size=6, steps=4)  # milliseconds per chunk


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def entries(out: Path) -> list[dict]:
    m = manifest(out)
    return [m["chunks"][h] for h in m["grid"]]


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_chunk_hash_is_canonical_and_sensitive():
    a = chunk_hash("x", {"g": 1.0, "seeds": [0, 1]})
    assert a == chunk_hash("x", {"seeds": [0, 1], "g": 1.0})  # key order is not identity
    assert a != chunk_hash("x", {"g": 1.5, "seeds": [0, 1]})
    assert a != chunk_hash("y", {"g": 1.0, "seeds": [0, 1]})
    assert a != chunk_hash("x", {"g": 1.0, "seeds": [0, 1]}, code_version=2)


def test_atomic_write_never_leaves_half_a_file(tmp_path):
    target = tmp_path / "x.txt"
    atomic_write(target, lambda tmp: tmp.write_text("old"))

    def crash(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, crash)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_threads_per_worker_never_oversubscribes():
    cores = usable_cores()
    for n in (1, 2, cores, 4 * cores):
        assert threads_per_worker(n) == max(1, cores // n)
        assert n * threads_per_worker(n) <= max(cores, n)


def test_resume_skips_done_and_changed_grid_computes_only_new(tmp_path, sweep_demo):
    out = tmp_path / "run"
    first = plasticlab.run("sweep-demo", plugins=[sweep_demo], out=out, gains=[0.5, 1.0], **TINY)
    run1 = {e["spec"]["gain"]: e["run"] for e in entries(out)}
    stale_tmp = out / "parts" / ".x.parquet.123.abc.tmp"  # as left by a run killed mid-write
    stale_tmp.write_bytes(b"half a file")
    again = plasticlab.run("sweep-demo", plugins=[sweep_demo], out=out, gains=[0.5, 1.0], **TINY)
    pd.testing.assert_frame_equal(first, again)
    assert manifest(out)["runs"][-1]["computed"] == 0 and not stale_tmp.exists()

    (out / "parts" / f"{manifest(out)['grid'][1]}.parquet").unlink()  # a lost part is recomputed
    pd.testing.assert_frame_equal(
        plasticlab.run("sweep-demo", plugins=[sweep_demo], out=out, gains=[0.5, 1.0], **TINY), first
    )
    assert manifest(out)["runs"][-1]["computed"] == 1 and entries(out)[1]["attempts"] == 2
    run1[1.0] = entries(out)[1]["run"]

    grown = plasticlab.run("sweep-demo", plugins=[sweep_demo], out=out, gains=[2.0, 0.5, 1.0], **TINY)
    assert manifest(out)["runs"][-1]["computed"] == 1
    es = {e["spec"]["gain"]: e for e in entries(out)}
    assert es[0.5]["run"] == run1[0.5] and es[1.0]["run"] == run1[1.0] and es[2.0]["run"] != run1[0.5]
    assert [es[g]["attempts"] for g in (2.0, 0.5, 1.0)] == [1, 1, 2]
    # results follow the current grid's chunk order
    assert list(grown["gain"].drop_duplicates()) == [2.0, 0.5, 1.0]
    pd.testing.assert_frame_equal(grown[grown.gain != 2.0].reset_index(drop=True), first)

    shrunk = plasticlab.run("sweep-demo", plugins=[sweep_demo], out=out, gains=[1.0], **TINY)
    assert set(shrunk["gain"]) == {1.0} and len(shrunk) == len(TINY["seeds"])
    s = summary(out)
    assert (s["done"], s["pending"], s["failed"], s["stale"]) == (1, 0, 0, 2)
    assert len(list((out / "parts").glob("*.parquet"))) == 3  # stale parts stay on disk


def test_sigkill_mid_sweep_then_rerun_equals_uninterrupted(tmp_path, sweep_demo):
    out = tmp_path / "killed"
    gains = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0]
    sets = ["gains=" + ",".join(map(str, gains)), "seeds=0,1", "size=6", "steps=4", "sleep_s=0.25"]
    cmd = [
        sys.executable,
        "-m",
        "plasticlab.cli",
        "run",
        "sweep-demo",
        "--plugin",
        sweep_demo,
        "--out",
        str(out),
        "-q",
        "--workers",
        "2",
    ]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done: list[str] = []
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if (out / "manifest.json").exists():
                m = manifest(out)
                done = [h for h in m["grid"] if m["chunks"][h]["state"] == "done"]
                if len(done) >= 1:
                    break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    before = manifest(out)
    done = [h for h in before["grid"] if before["chunks"][h]["state"] == "done"]
    assert 1 <= len(done) < len(gains), "the kill must land mid-sweep"
    assert not (out / "results.parquet").exists()
    pids = {int(before["chunks"][h]["worker"].split(":")[1]) for h in done}
    assert pids and proc.pid not in pids
    gone = time.time() + 15  # pool workers notice their main process died and exit
    while time.time() < gone and any(alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(alive(p) for p in pids)
    s = summary(out)  # the grid was recorded before any work, so the unfinished chunks show as pending
    n_done = len(done)
    assert (s["done"], s["pending"], s["failed"], s["running"]) == (n_done, len(gains) - n_done, 0, False)

    resumed = plasticlab.run(
        "sweep-demo", plugins=[sweep_demo], out=out, gains=gains, seeds=[0, 1], size=6, steps=4, sleep_s=0.25
    )
    after = manifest(out)
    rerun = after["runs"][-1]
    assert rerun["computed"] == len(gains) - len(done)  # only the unfinished chunks were recomputed
    for h in after["grid"]:
        e = after["chunks"][h]
        assert e["attempts"] == 1
        if h in done:  # untouched: same run, same finish time as before the kill
            assert (e["run"], e["finished"]) == (before["chunks"][h]["run"], before["chunks"][h]["finished"])
        else:
            assert e["run"] == rerun["id"]
    assert leftovers(out) == []
    assert sorted(p.stem for p in (out / "parts").glob("*.parquet")) == sorted(after["grid"])

    whole = plasticlab.run(
        "sweep-demo", plugins=[sweep_demo], out=tmp_path / "whole", gains=gains, seeds=[0, 1], size=6, steps=4
    )
    pd.testing.assert_frame_equal(resumed, whole)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), whole)
    assert not resumed.duplicated(["gain", "seed"]).any() and len(resumed) == 2 * len(gains)


def test_failing_chunk_does_not_stop_others_and_is_retried(tmp_path, sweep_demo):
    out, heal = tmp_path / "run", tmp_path / "heal"
    kw = dict(gains=[0.5, 1.0, 2.0], fail=[1], heal_file=str(heal), **TINY)
    with pytest.raises(SweepFailed) as info:
        plasticlab.run("sweep-demo", plugins=[sweep_demo], out=out, workers=2, **kw)  # process pool
    assert [i for i, _ in info.value.failed] == [1] and isinstance(info.value, PlasticlabError)
    assert set(info.value.partial["gain"]) == {0.5, 2.0}
    es = entries(out)
    assert [e["state"] for e in es] == ["done", "failed", "done"]
    assert es[1]["error"]["type"] == "RuntimeError" and "on purpose" in es[1]["error"]["traceback"]
    assert len({es[0]["worker"], es[2]["worker"]} | {es[1]["worker"]}) >= 1
    assert not (out / "results.parquet").exists()

    heal.touch()  # same grid, same command: only the failed chunk runs again
    df = plasticlab.run("sweep-demo", plugins=[sweep_demo], out=out, workers=2, **kw)
    es2 = entries(out)
    assert [e["attempts"] for e in es2] == [1, 2, 1]
    assert [e["state"] for e in es2] == ["done"] * 3 and "error" not in es2[1]
    assert manifest(out)["runs"][-1]["computed"] == 1
    assert list(df["gain"].drop_duplicates()) == [0.5, 1.0, 2.0]


def test_in_memory_failure_still_runs_the_rest(sweep_demo):
    exp = get("sweep-demo")
    specs = exp.chunks(exp.params(gains=[0.5, 1.0], fail=[0], **TINY))
    with pytest.raises(SweepFailed, match="1 of 2 chunks") as info:
        execute(exp, specs)
    assert set(info.value.partial["gain"]) == {1.0}


def test_second_concurrent_run_on_same_dir_is_refused(tmp_path, sweep_demo):
    with DirLock(tmp_path), pytest.raises(PlasticlabError, match="another run"):
        plasticlab.run("sweep-demo", plugins=[sweep_demo], out=tmp_path, gains=[1.0], **TINY)


def test_bad_executor_options_are_user_errors(tmp_path, sweep_demo):
    with pytest.raises(PlasticlabError, match="executor"):
        plasticlab.run("sweep-demo", plugins=[sweep_demo], executor="slurm", gains=[1.0], **TINY)
    with pytest.raises(PlasticlabError, match="workers"):
        plasticlab.run("sweep-demo", plugins=[sweep_demo], workers=0, gains=[1.0], **TINY)
    with pytest.raises(PlasticlabError, match="scheduler"):
        plasticlab.run("sweep-demo", plugins=[sweep_demo], scheduler="tcp://127.0.0.1:1", gains=[1.0], **TINY)


def test_dask_local_cluster_matches_local(tmp_path, sweep_demo):
    pytest.importorskip("distributed")
    kw = dict(gains=[0.5, 1.0, 2.0, 100.0], **TINY)
    local = plasticlab.run("sweep-demo", plugins=[sweep_demo], **kw)
    dask = plasticlab.run("sweep-demo", plugins=[sweep_demo], out=tmp_path, executor="dask", workers=2, **kw)
    pd.testing.assert_frame_equal(dask, local)
    workers = {e["worker"] for e in entries(tmp_path)}
    assert all(w.split(":")[1] != str(os.getpid()) for w in workers)  # computed in worker processes


def test_in_process_run_leaves_callers_threads_and_gives_chunks_one(monkeypatch, sweep_demo):
    """The executor owns thread counts: chunks run with one thread, the caller's setting survives."""
    import torch

    exp = get("sweep-demo")
    seen = []
    real = type(exp).run_chunk

    def spy(self, spec, ctx):
        seen.append(torch.get_num_threads())
        torch.set_num_threads(3)  # a chunk that changes it must not leak the change either
        return real(self, spec, ctx)

    monkeypatch.setattr(type(exp), "run_chunk", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        plasticlab.run("sweep-demo", plugins=[sweep_demo], quick=True, workers=1)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
