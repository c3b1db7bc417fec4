"""One contract over every registered experiment: quick params validate, chunks are JSON, run_chunk of the
experiment's tiny params returns its declared columns, and claims() returns Claim objects with a verdict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from plasticlab.experiments import all_experiments
from plasticlab.study import Figure, RunContext, Table, load_plugins
from plasticlab.study.claims import VERDICTS, Claim
from plasticlab.study.report import write_report
from plasticlab.sweeps.worker import _takes_context

torch.set_num_threads(1)
# The plugin experiments of the repository (the sweep layer's toy and the docs' one-file example) keep the
# same contract as the built-in ones.
ROOT = Path(__file__).resolve().parents[1]
load_plugins([str(ROOT / "examples" / "sweep_demo.py"), str(ROOT / "docs" / "example_study.py")])
NAMES = sorted(all_experiments())


@pytest.mark.parametrize("name", NAMES)
def test_quick_params_validate_and_chunks_are_json(name):
    exp = all_experiments()[name]
    p = exp.params(quick=True)
    specs = exp.chunks(p)
    assert specs, "no chunks"
    for spec in specs:
        if exp.spec_type is not None:
            assert isinstance(spec, exp.spec_type)
        d = exp.spec_dict(spec)
        assert json.loads(json.dumps(d)) == d  # survives the trip to a worker and the manifest hash
        assert exp.spec_of(d) == spec  # and comes back typed
    assert isinstance(exp.size(p), str) and exp.size(exp.params()) == exp.default_size
    assert exp.default_size == "paper" or exp.default_size.startswith("reduced: ")  # a reduction says so


@pytest.mark.parametrize("name", NAMES)
def test_tiny_run_has_declared_columns_claims_and_report(name, tmp_path):
    exp = all_experiments()[name]
    if exp.tiny is None:
        pytest.skip(f"{name} declares no tiny params")
    assert exp.columns, f"{name} declares no columns"
    p = exp.params(**exp.tiny)
    ctx = RunContext()
    run = (lambda s: exp.run_chunk(s, ctx)) if _takes_context(exp) else exp.run_chunk
    df = pd.concat([run(s) for s in exp.chunks(p)], ignore_index=True)
    assert set(exp.columns) <= set(df.columns), set(exp.columns) - set(df.columns)
    if not hasattr(exp, "report"):  # on the study contract: pure figures and tables, notes as text
        assert all(isinstance(f, Figure) for f in exp.figures(df, p))
        assert all(isinstance(t, Table) for t in exp.tables(df, p))
        assert isinstance(exp.notes(p), str)
    claims = write_report(exp, df, p, tmp_path)  # the framework stamps each claim with the run's size
    assert (tmp_path / "report.md").exists()
    if not exp.paper:
        return
    assert claims and all(isinstance(c, Claim) for c in claims)
    for c in claims:
        assert c.verdict in VERDICTS and c.paper and c.source and c.claim
        assert c.size == exp.size(p)
        assert c.n == 0 or math.isfinite(c.ours) or c.verdict == "not run"


# The experiments that reproduce the papers' figures and tables; studies added beside them declare `tiny` to
# join the run part of the contract (curl-chaos is exercised by test_chaos.py).
CORE = [
    "hebb-table",
    "hebb-phase",
    "hebb-theorem",
    "hebb-transient",
    "hebb-classify",
    "hebb-transformer",
    "rule-atlas",
    "curl-theory",
    "curl-hidden",
    "curl-readout",
    "curl-speedup",
]


def test_core_experiments_declare_tiny_params():
    missing = sorted(n for n in CORE if all_experiments()[n].tiny is None)
    assert not missing, f"declare `tiny` (and `columns`) on {missing}"
