"""A user's module registers a rule; ``--plugin`` (or ``plugins=``) imports it in the CLI process and in every
worker, so the rule runs by name at --workers 2 and on Dask, and a missing plugin is one line, exit 2."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest
from typer.testing import CliRunner

from plasticlab.cli import app
from plasticlab.rules.registry import unregister

TINY = ["--set", "seeds=0", "--set", "gammas=0,0.005", "--set", "widths=6,5,5,3", "--set", "steps=40"]
TINY += ["--set", "n_train=256", "--set", "n_val=20", "--quiet"]

PLUGIN = textwrap.dedent(
    '''
    """A user's rule: half the SGD step."""
    from plasticlab.rules import signal

    @signal("plugin_half_sgd", gradient=True)
    def plugin_half_sgd(ctx):
        g = ctx.descent(ctx.backprop(ctx.output_delta()))
        return [(0.5 * w, None if b is None else 0.5 * b) for w, b in g]
    '''
)


@pytest.fixture
def plugin_file(tmp_path):
    path = tmp_path / "my_rules.py"
    path.write_text(PLUGIN)
    yield path
    unregister("plugin_half_sgd")


@pytest.mark.parametrize("where", [["--workers", "2"], ["--executor", "dask", "--workers", "2"]])
def test_a_plugin_rule_runs_by_name_in_workers(plugin_file, tmp_path, where):
    out = tmp_path / "run"
    args = ["run", "hebb-table", "--plugin", str(plugin_file), "--set", "rules=sgd,plugin_half_sgd", *TINY]
    r = CliRunner().invoke(app, [*args, *where, "--out", str(out)])
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out / "results.parquet")
    assert set(df.rule) == {"sgd", "plugin_half_sgd"} and df.alignment.notna().all()


def test_a_missing_plugin_is_one_line(tmp_path):
    r = CliRunner().invoke(
        app, ["run", "hebb-table", "--plugin", "no_such_module_xyz", *TINY, "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2 and "cannot import plugin 'no_such_module_xyz'" in r.output
    assert not (tmp_path / "o").exists()


def test_entry_point_plugins_are_loaded_on_discovery(plugin_file, monkeypatch):
    import importlib.metadata
    import sys

    from plasticlab.rules import rule_names
    from plasticlab.study import registry

    class EntryPoint:
        value = "my_rules"

    monkeypatch.syspath_prepend(str(plugin_file.parent))
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda group: [EntryPoint()] if group == "plasticlab.plugins" else []
    )
    monkeypatch.delitem(sys.modules, "my_rules", raising=False)
    registry.all_experiments()
    assert "plugin_half_sgd" in rule_names()
