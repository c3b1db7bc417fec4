"""Figures live in plasticlab.plots; experiment modules are compute + claims + a call to their plots."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

import plasticlab.experiments as experiments_pkg
from plasticlab.experiments.curl._common import flip_members, flip_table
from plasticlab.simulation.curl import CurlConfig

EXPERIMENTS = Path(experiments_pkg.__file__).parent
# report-only modules of an experiment family, kept beside it (their own modules already)
REPORT_MODULES = {"_rule_identify_report.py"}


def _imports_matplotlib(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        if any(n == "matplotlib" or n.startswith("matplotlib.") for n in names):
            lines.append(node.lineno)
    return lines


def test_experiment_modules_do_not_plot():
    offenders = {
        p.name: lines
        for p in sorted(EXPERIMENTS.glob("*.py"))
        if p.name not in REPORT_MODULES and (lines := _imports_matplotlib(p))
    }
    assert not offenders, f"experiment modules import matplotlib (figures go in plasticlab.plots): {offenders}"


def test_workers_never_import_pyplot():
    """Discovering every experiment and running a chunk imports no pyplot (it costs ~1 s per worker)."""
    code = (
        "import sys, plasticlab.experiments as e\n"
        "x = e.all_experiments()['curl-hidden']\n"
        "from plasticlab.study import RunContext\n"
        "x.run_chunk(x.chunks(x.params(**x.tiny))[0], RunContext())\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_flip_table_column_order_and_members():
    spec = SimpleNamespace(alphas=[0.0, 0.5], seeds=[3, 4], M=6, N=4, c_nominal=1.5, activation="tanh", epochs=7)
    members, k = flip_members(spec, spec.N)
    assert members == [(0.0, 3), (0.0, 4), (0.5, 3), (0.5, 4)] and k == [0, 0, 2, 2]
    t = pd.DataFrame(
        dict(seed=[3, 4, 3, 4], test_error=0.1, train_error=0.2, peak_train_error=0.3, diverged=False)
    )
    cfg = CurlConfig(M=6, N=4, activation="tanh", epochs=7)
    df = flip_table(spec, cfg, t, dict(alpha_r=[a for a, _ in members], k2=k), growth_rate=[1.0, 2.0, 3.0, 4.0])
    assert list(df.columns) == [
        "c", "c_nominal", "M", "N", "alpha_r", "k2", "activation", "seed", "test_error", "train_error",
        "peak_train_error", "diverged", "epochs", "growth_rate",
    ]  # fmt: skip
    assert df.c.iloc[0] == 6 / 4 and df.k2.tolist() == [0, 0, 2, 2] and (df.epochs == 7).all()
