"""A run in which every member diverged says so: a verdict line in its report, exit 1 from the CLI, and no
numpy All-NaN warnings; the Python API still returns the (all-diverged) table."""

from __future__ import annotations

import warnings

from typer.testing import CliRunner

import plasticlab
from plasticlab.api import diverged_note
from plasticlab.cli import app

SETS = ["gains=1e300", "seeds=0,1", "size=6", "steps=4"]  # 1e300 overflows float64 at the first steps


def test_all_diverged_run_says_so_and_exits_1(tmp_path, sweep_demo):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an All-NaN slice warning would fail here
        df = plasticlab.run(
            "sweep-demo", plugins=[sweep_demo], out=tmp_path / "api", gains=[1e300], seeds=[0, 1], size=6, steps=4
        )
    assert df.diverged.all() and "every run diverged (2 of 2" in diverged_note(df)
    assert "Verdict: not reproduced — every run diverged" in (tmp_path / "api" / "report.md").read_text()
    args = ["run", "sweep-demo", "--plugin", sweep_demo, "--workers", "1", "-q", "--out", str(tmp_path / "cli")]
    r = CliRunner().invoke(app, args + [x for s in SETS for x in ("--set", s)])
    assert r.exit_code == 1, r.output
    assert "every run diverged" in r.output and "All-NaN" not in r.output and "Traceback" not in r.output


def test_a_partly_diverged_run_is_not_flagged(sweep_demo):
    df = plasticlab.run("sweep-demo", plugins=[sweep_demo], gains=[1.0, 1e300], seeds=[0], size=6, steps=4)
    assert df.diverged.any() and not df.diverged.all() and diverged_note(df) is None
