"""docs/example_study.py: a whole experiment in one plugin file, run through the CLI by --plugin."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from plasticlab.cli import app

EXAMPLE = str(Path(__file__).resolve().parents[1] / "docs" / "example_study.py")
TINY = ["--set", "lrs=0.05,0.1", "--set", "gammas=0,0.1", "--set", "seeds=0", "--set", "steps=30"]
TINY += ["--set", "hidden=4", "--set", "n_train=64", "-q"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_example_study_runs_from_its_file_alone(tmp_path, workers):
    out = tmp_path / "example"
    args = ["run", "example-study", "--plugin", EXAMPLE, "--workers", workers, "--out", str(out)] + TINY
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out / "results.parquet")
    assert sorted(set(df.lr)) == [0.05, 0.1] and sorted(set(df.gamma)) == [0.0, 0.1] and len(df) == 4
    assert df.final_loss.gt(0).all() and not df.diverged.any()
    report = (out / "report.md").read_text()
    assert "(loss_vs_gamma.png)" in report and (out / "loss_vs_gamma.png").exists()
    assert "after 30 steps, each larger lr ends at a lower loss (γ = 0; share of lr pairs)" in report
