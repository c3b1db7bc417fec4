"""Ctrl-C / SIGTERM with a real signal: the run stops within seconds, finished chunks stay saved, the
chunk still running is cancelled, no worker process outlives the run, and the message says how to resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plasticlab.sweeps import summary

# Chunk 3 sleeps a minute; chunks 0-2 finish in milliseconds.
SETS = ["gains=0.5,1,2,3", "seeds=0,1", "size=6", "steps=4", "sleep_s=60", "slow=3"]


def done_count(out: Path) -> int:
    try:
        m = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return 0
    return sum(e.get("state") == "done" for e in m["chunks"].values())


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(("sig", "workers"), [(signal.SIGINT, 2), (signal.SIGTERM, 2), (signal.SIGINT, 1)])
def test_signal_stops_the_run_promptly_and_keeps_finished_chunks(tmp_path, sig, workers, sweep_demo):
    out = tmp_path / "run"
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
    ]
    cmd += ["--workers", str(workers)] + [x for s in SETS for x in ("--set", s)]
    # Own session: the signal goes to this run only; afterwards its process group must be empty.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while done_count(out) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert done_count(out) == 3, proc.stderr.read() if proc.poll() is not None else "chunks too slow"
        time.sleep(0.5)  # the slow chunk is now running
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert took < 10, f"took {took:.1f} s to stop"  # < 5 s unloaded; the margin is for a busy CI machine
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "3 of 4 chunks are saved" in lines[0] and "resume" in lines[0], err
    assert "Traceback" not in err
    s = summary(out)
    assert (s["done"], s["pending"], s["failed"]) == (3, 1, 0)
    t1 = time.monotonic()
    while group_alive(proc.pid) and time.monotonic() - t1 < 5:
        time.sleep(0.1)
    assert not group_alive(proc.pid), "a worker process outlived the run"
