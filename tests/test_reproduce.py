"""`plasticlab reproduce`: scoreboard rows from experiments' claims, collect vs compute, all-diverged exit."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from plasticlab.cli import app
from plasticlab.reproduce import all_diverged, paper_experiments, reproduce
from plasticlab.study import contract as base_contract
from plasticlab.study import registry as base
from plasticlab.study.claims import NKC, AtMost, Claim, measure
from plasticlab.study.scoreboard import COLUMNS


class Toy(base_contract.Experiment):
    """Error = scale × seed; diverges when scale is huge. One claim: error ≤ 1."""

    name = "toy-claims"
    summary = "toy"
    columns = ("seed", "error", "diverged")
    defaults = dict(seeds=[0, 1, 2, 3], scale=0.1)
    quick = dict(seeds=[0, 1])

    def chunks(self, p):
        return [dict(seeds=p["seeds"], scale=p["scale"])]

    def run_chunk(self, spec):
        err = [spec["scale"] * s for s in spec["seeds"]]
        return pd.DataFrame(dict(seed=spec["seeds"], error=err, diverged=[spec["scale"] > 1e6] * len(err)))

    def report(self, df, p, out):
        (out / "report.md").write_text("toy\n")

    def claims(self, df, p):
        ok = df[~df.diverged]
        m, s, n = measure(ok.error)
        return [
            Claim(
                "toy error small",
                NKC,
                "Fig. 1",
                math.nan,
                m,
                s,
                n,
                self.size(p),
                AtMost(1.0),
                diverged=int(df.diverged.sum()),
            )
        ]


@pytest.fixture
def toy():
    base._discover()
    base._REGISTRY[Toy.name] = Toy()
    yield Toy.name
    base._REGISTRY.pop(Toy.name, None)


def test_size_names_the_reduction(toy):
    exp = base.get(toy)
    assert exp.size(exp.params()) == "paper"
    assert exp.size(exp.params(quick=True)) == "quick"
    assert exp.size(exp.params(scale=0.5)) == "scale 0.5 (full 0.1)"
    assert exp.size(exp.params(seeds=[0, 1, 2])) == "seeds 3 of 4"
    assert exp.size(exp.params(seeds=[3, 2, 1, 0])) == "seeds in another order"


def test_reproduce_quick_then_collect(toy, tmp_path, sweep_demo):
    assert toy in paper_experiments() and "sweep-demo" not in paper_experiments()
    outs = reproduce(tmp_path, quick=True, only=[toy], workers=1)
    assert [o.status for o in outs] == ["ok"]
    sb = pd.read_csv(tmp_path / "scoreboard.csv")
    assert list(sb.columns[: len(COLUMNS)]) == COLUMNS
    row = sb.iloc[0]
    assert (row["experiment"], row["verdict"], row["size"], row["n"]) == (toy, "reproduced", "quick", 2)
    assert row.report == f"{toy}/report.md" and (tmp_path / row.report).exists()
    md = (tmp_path / "SCOREBOARD.md").read_text()
    assert "1 reproduced" in md and "toy error small" in md
    assert f"| {toy} | quick | 1 |" in md  # the run's size and its chunk count, from the manifest
    # collect re-reads the table written above, with its own params (quick) -> same row
    outs = reproduce(tmp_path, only=[toy], collect=True)
    assert outs[0].claims[0].ours == pytest.approx(0.05) and outs[0].claims[0].size == "quick"
    # collect leaves a finished run's report as it is; --rerender draws it again from the table
    (tmp_path / toy / "report.md").write_text("stale\n")
    reproduce(tmp_path, only=[toy], collect=True)
    assert (tmp_path / toy / "report.md").read_text() == "stale\n"
    r = CliRunner().invoke(app, ["reproduce", "--only", toy, "--out", str(tmp_path), "--rerender", "-q"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / toy / "report.md").read_text() == "toy\n"
    # nothing there to collect: reported, no crash, no rows
    outs = reproduce(tmp_path / "empty", only=[toy], collect=True)
    assert outs[0].status == "missing" and not outs[0].claims


def test_all_diverged_is_a_measured_failure_and_exits_nonzero(toy, tmp_path):
    r = CliRunner().invoke(
        app, ["reproduce", "--quick", "--only", toy, "--out", str(tmp_path), "--workers", "1", "-q"]
    )
    assert r.exit_code == 0, r.output
    assert all_diverged(pd.DataFrame(dict(diverged=[True, True]))) and not all_diverged(pd.DataFrame())
    # scale 1e9 makes every run diverge: verdict "not reproduced", exit 1
    base._REGISTRY[toy].quick = dict(seeds=[0, 1], scale=1e9)
    try:
        r = CliRunner().invoke(
            app, ["reproduce", "--quick", "--only", toy, "--out", str(tmp_path / "d"), "--workers", "1", "-q"]
        )
    finally:
        base._REGISTRY[toy].quick = dict(seeds=[0, 1])
    assert r.exit_code == 1
    sb = pd.read_csv(tmp_path / "d" / "scoreboard.csv")
    assert sb.verdict.tolist() == ["not reproduced"]
    assert "all diverged" in (tmp_path / "d" / "SCOREBOARD.md").read_text()


def test_an_experiment_whose_claims_fail_is_reported_not_fatal(toy, tmp_path, monkeypatch):
    reproduce(tmp_path, quick=True, only=[toy], workers=1)
    monkeypatch.setattr(Toy, "claims", lambda self, df, p: df["no such column"])
    outs = reproduce(tmp_path, only=[toy], collect=True)
    assert outs[0].status == "failed" and "KeyError" in outs[0].message
    assert "failed: KeyError" in (tmp_path / "SCOREBOARD.md").read_text()


def test_unknown_only_is_one_line(tmp_path):
    r = CliRunner().invoke(app, ["reproduce", "--quick", "--only", "nope", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "nope" in r.output and "Traceback" not in r.output


class ToyPerSeed(Toy):
    """The toy with one chunk per seed, so a sweep can stop part-way."""

    name = "toy-per-seed"

    def chunks(self, p):
        return [dict(seeds=[s], scale=p["scale"]) for s in p["seeds"]]


def test_collect_reads_an_unfinished_sweep_and_says_so(tmp_path):
    base._discover()
    base._REGISTRY[ToyPerSeed.name] = ToyPerSeed()
    try:
        sub = tmp_path / ToyPerSeed.name
        reproduce(tmp_path, quick=False, only=[ToyPerSeed.name], workers=1)  # 4 chunks, seeds 0..3
        # as if the run had stopped after the chunks of seeds 0 and 1: no table yet, two parts missing
        (sub / "results.parquet").unlink()
        (sub / "report.md").unlink()
        parts = sorted((sub / "parts").glob("*.parquet"))
        from plasticlab.sweeps.store import Manifest

        m = Manifest.load(sub)
        for h in m.grid[2:]:
            m.part(h).unlink()
        [oc] = reproduce(tmp_path, only=[ToyPerSeed.name], collect=True)
        c = oc.claims[0]
        assert len(parts) == 4 and c.n == 2 and c.ours == pytest.approx(0.05)  # errors 0.0 and 0.1
        assert c.size == "paper; unfinished: 2 of 4 chunks in"
        assert (sub / "report.md").read_text().startswith("> **Unfinished run: 2 of 4 chunks are in.**")
        # nothing computed is touched: the two remaining parts are still there, no table was invented
        assert len(list((sub / "parts").glob("*.parquet"))) == 2 and not (sub / "results.parquet").exists()
    finally:
        base._REGISTRY.pop(ToyPerSeed.name, None)


def test_collect_does_not_read_an_earlier_runs_table_beside_an_unfinished_extension(tmp_path):
    """A finished 2-seed run extended to 4 seeds and stopped part-way: the folder still holds the 2-seed
    table, but the manifest records the 4-seed grid; collect reads the chunks that are in, and says so."""
    base._discover()
    base._REGISTRY[ToyPerSeed.name] = ToyPerSeed()
    try:
        sub = tmp_path / ToyPerSeed.name
        reproduce(tmp_path, quick=True, only=[ToyPerSeed.name], workers=1)  # seeds 0, 1: finished
        assert len(pd.read_parquet(sub / "results.parquet")) == 2
        from plasticlab.sweeps.store import Manifest

        # the extension to seeds 0..3 stopped before its new chunks ran: grid of 4, two pending
        exp = base._REGISTRY[ToyPerSeed.name]
        from plasticlab.sweeps.execute import hashes_of

        p = exp.params(seeds=[0, 1, 2, 3])
        m = Manifest.load(sub)
        hs = hashes_of(exp, exp.chunks(p))
        m.data.update(params=p, grid=hs)
        for h in hs[2:]:
            m.chunks[h] = dict(state="pending", attempts=0)
        m.save()
        [oc] = reproduce(tmp_path, only=[ToyPerSeed.name], collect=True)
        assert oc.claims[0].n == 2 and oc.size.endswith("unfinished: 2 of 4 chunks in")
    finally:
        base._REGISTRY.pop(ToyPerSeed.name, None)


class Toy2(Toy):
    name = "toy-claims-2"


def test_only_keeps_the_other_experiments_on_the_scoreboard(toy, tmp_path):
    base._REGISTRY[Toy2.name] = Toy2()
    try:
        reproduce(tmp_path, quick=True, only=[toy], workers=1)
        outs = reproduce(tmp_path, quick=True, only=[Toy2.name], workers=1)
        assert [o.name for o in outs] == [Toy2.name]  # the outcomes asked for
        r = CliRunner().invoke(app, ["reproduce", "--collect", "--only", toy, "--out", str(tmp_path), "-q"])
        assert r.exit_code == 0, r.output
        # the whole board's count, then the asked-for experiment's
        assert "(2 claims of the papers: ✅ 2 reproduced, 🟡 0 partly" in r.output
        assert f"; {toy}: 1 claims of the papers: ✅ 1 reproduced" in r.output
    finally:
        base._REGISTRY.pop(Toy2.name, None)
    sb = pd.read_csv(tmp_path / "scoreboard.csv")
    assert set(sb.experiment) == {toy, Toy2.name}  # the first run's row was read back, not dropped
    md = (tmp_path / "SCOREBOARD.md").read_text()
    assert "| hebb-table | — | 0 | — | missing |" in md  # and every other experiment is listed


def test_chunk_hours_count_the_grid_and_keep_earlier_runs_apart(tmp_path):
    import json

    from plasticlab.reproduce import _chunk_hours

    # a, b: this grid's chunks (b still pending); c: a chunk of an earlier, differently sized run
    chunks = dict(
        a=dict(state="done", seconds=3600.0),
        b=dict(state="pending", seconds=None),
        c=dict(state="done", seconds=1800.0),
    )
    (tmp_path / "manifest.json").write_text(json.dumps(dict(grid=["a", "b"], chunks=chunks)))
    assert _chunk_hours(tmp_path) == (1, pytest.approx(1.0), pytest.approx(0.5))
    n, hours, earlier = _chunk_hours(tmp_path / "nowhere")
    assert n == 0 and math.isnan(hours) and earlier == 0.0
