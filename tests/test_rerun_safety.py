"""A rerun never loses a result: damaged manifests and parts are caught, moved aside and recomputed;
a failing rerun leaves the previous table in place; `status` says what is really on disk."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import plasticlab
from plasticlab.cli import app
from plasticlab.errors import PlasticlabError
from plasticlab.sweeps import SweepFailed, summary
from plasticlab.sweeps.status import status
from plasticlab.sweeps.store import SweepWarning

TINY = dict(gains=[0.5, 1.0, 2.0], seeds=[0, 1], size=6, steps=4)
pytestmark = pytest.mark.usefixtures("sweep_demo")  # every test here runs the sweep-demo plugin


def parts(out: Path) -> list[Path]:
    grid = json.loads((out / "manifest.json").read_text())["grid"]
    return [out / "parts" / f"{h}.parquet" for h in grid]


def rerun(out: Path, **kw) -> tuple[pd.DataFrame, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = plasticlab.run("sweep-demo", out=out, **{**TINY, **kw})
    return df, [str(w.message) for w in caught if issubclass(w.category, SweepWarning)]


@pytest.fixture
def done_run(tmp_path):
    out = tmp_path / "run"
    first = plasticlab.run("sweep-demo", out=out, **TINY)
    return out, first


def test_corrupt_manifest_is_moved_aside_and_rebuilt_from_the_parts(done_run):
    out, first = done_run
    (out / "manifest.json").write_text('{"format": 1, "experi')
    with pytest.raises(PlasticlabError, match=r"unreadable.*moves it aside"):
        summary(out)  # status does not claim "3 done" from a manifest it cannot read
    assert (out / "results.parquet").exists()
    df, notes = rerun(out)
    pd.testing.assert_frame_equal(df, first)
    assert len(notes) == 1 and "manifest.json was unreadable" in notes[0]
    assert "rebuilt from config.json and parts/: 3 of 3 chunks recovered, 0 to compute" in notes[0]
    assert json.loads((out / "manifest.json").read_text())["runs"][-1]["computed"] == 0  # nothing recomputed
    assert [p.name.split(".")[0] for p in (out / "corrupt").iterdir()] == ["manifest"]
    s = summary(out)
    assert (s["done"], s["results"]) == (3, "current")


def test_deleted_manifest_is_rebuilt_and_only_missing_chunks_are_computed(done_run):
    out, first = done_run
    _, b, c = parts(out)
    (out / "manifest.json").unlink()
    with pytest.raises(PlasticlabError, match="run the same command again to rebuild it"):
        summary(out)
    c.unlink()  # never finished
    b.write_bytes(b.read_bytes()[:200])  # damaged: must not be trusted without its checksum
    df, notes = rerun(out)
    pd.testing.assert_frame_equal(df, first)
    assert len(notes) == 1 and "manifest.json was missing" in notes[0], notes
    assert "1 of 3 chunks recovered, 2 to compute" in notes[0] and f"{b.name} unreadable" in notes[0]
    assert json.loads((out / "manifest.json").read_text())["runs"][-1]["computed"] == 2
    assert summary(out)["done"] == 3


def test_deleted_manifest_keeps_the_previous_grids_parts_when_the_grid_changes(done_run):
    out, first = done_run
    (out / "manifest.json").unlink()
    df, notes = rerun(out, gains=[0.5, 1.0, 3.0])  # config.json says the last run had 2.0, not 3.0
    assert "2 of 3 chunks recovered, 1 to compute" in notes[0] and "other grids" not in notes[0]
    assert summary(out)["stale"] == 1  # the 2.0 chunk is listed again, and reused if it comes back
    df, notes = rerun(out)
    assert notes == [] and json.loads((out / "manifest.json").read_text())["runs"][-1]["computed"] == 0
    pd.testing.assert_frame_equal(df, first)


@pytest.mark.parametrize("name", ["run:1", "my run", "résumé ✓", "a:b c"])
def test_any_folder_name_the_filesystem_accepts_works(sweep_demo, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)  # relative, as typed: pyarrow took "run:1/parts/..." for a URI
    out = Path(name)
    first = plasticlab.run("sweep-demo", out=name, **TINY)
    again = plasticlab.run("sweep-demo", out=out, **TINY)  # read back from its parts
    pd.testing.assert_frame_equal(again, first)
    assert json.loads((out / "manifest.json").read_text())["runs"][-1]["computed"] == 0
    assert summary(out)["results"] == "current"


@pytest.mark.parametrize("damage", ["truncate", "swap", "garbage"])
def test_damaged_part_is_detected_moved_aside_and_recomputed(done_run, damage):
    out, first = done_run
    a, b = parts(out)[:2]
    if damage == "truncate":
        b.write_bytes(b.read_bytes()[:100])
    elif damage == "swap":  # a valid parquet file, but another chunk's rows
        shutil.copy(a, b)
    else:
        b.write_bytes(b"not parquet at all")
    s = summary(out)
    assert (s["done"], [d["index"] for d in s["damaged"]]) == (2, [1])
    assert "1 damaged" in status(out)
    df, notes = rerun(out)
    pd.testing.assert_frame_equal(df, first)  # not the swapped rows
    assert len(notes) == 1 and notes[0].startswith("chunk 1: part") and "recomputing" in notes[0]
    assert json.loads((out / "manifest.json").read_text())["runs"][-1]["computed"] == 1
    assert len(list((out / "corrupt").iterdir())) == 1
    assert summary(out)["damaged"] == []


def test_failing_rerun_keeps_the_previous_table_and_status_says_it_is_stale(done_run, sweep_demo):
    out, _ = done_run
    before = (out / "results.parquet").read_bytes()
    with pytest.raises(SweepFailed):
        plasticlab.run(
            "sweep-demo", plugins=[sweep_demo], out=out, **{**TINY, "gains": [0.5, 1.0, 2.0, 3.0], "fail": [3]}
        )
    assert (out / "results.parquet").read_bytes() == before
    s = summary(out)
    assert (s["done"], s["failed"], s["results"]) == (3, 1, "stale")
    assert "from an earlier run" in status(out)


def test_out_must_be_a_folder_of_the_same_experiment(done_run, tmp_path, sweep_demo):
    out, _ = done_run
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(PlasticlabError, match="holds a run of sweep-demo, not hebb-phase"):
        plasticlab.run("hebb-phase", quick=True, out=out, seeds=[0], steps=4)
    assert sorted(p.name for p in out.rglob("*")) == before
    (tmp_path / "f").write_text("x")
    for bad, msg in [
        ("", "--out is empty"),
        (tmp_path / "f", "is a file"),
        (tmp_path / "f" / "sub", "not a writable folder"),
        ("/proc/plasticlab-x", "not a writable folder"),
        (tmp_path, "other files and no plasticlab run"),
    ]:
        with pytest.raises(PlasticlabError, match=msg):
            plasticlab.run("sweep-demo", plugins=[sweep_demo], out=bad, **TINY)


def test_cli_reports_a_repair_in_one_line_and_exits_0(done_run, sweep_demo):
    out, _ = done_run
    p = parts(out)[0]
    p.write_bytes(p.read_bytes()[:100])
    sets = [x for k in ("gains=0.5,1,2", "seeds=0,1", "size=6", "steps=4") for x in ("--set", k)]
    r = CliRunner().invoke(
        app, ["run", "sweep-demo", "--plugin", sweep_demo, *sets, "-q", "--workers", "1", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    warn_lines = [line for line in r.output.splitlines() if line.startswith("warning:")]
    assert len(warn_lines) == 1 and "chunk 0" in warn_lines[0], r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(app, ["run", "sweep-demo", "--plugin", sweep_demo, "--out", ""])
    assert r.exit_code == 2 and "--out is empty" in r.output
