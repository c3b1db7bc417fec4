"""Declared parameter constraints: one validator, one message style, checked at the door (before any
work), and `plasticlab params NAME` / `run NAME --help` list every key from the same declarations."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import plasticlab
from plasticlab.cli import app
from plasticlab.errors import PlasticlabError
from plasticlab.experiments import all_experiments, get
from plasticlab.params_table import rows
from plasticlab.study import MAX_SEED, MAX_STEPS, constraint_for


@pytest.mark.parametrize("name", list(all_experiments()))
def test_every_key_has_a_constraint_and_defaults_and_quick_pass(name):
    exp = get(name)
    exp.params()
    exp.params(quick=True)
    for key, default in exp.defaults.items():
        c = constraint_for(exp, key)
        assert c.problem(default) is None, (key, default)
        assert c.describe()
    assert [r["key"] for r in rows(exp)] == [*exp.defaults, "compile"]  # and the run setting


@pytest.mark.parametrize(
    ("name", "overrides", "needles"),
    [
        ("sweep-demo", dict(steps="1e12"), ["'steps'", "1000000000000", f"[1, {MAX_STEPS}]"]),
        ("hebb-phase", dict(batch_size="10000000"), ["'batch_size'", "[1, 1000000]"]),
        ("hebb-phase", dict(batch_size="6000"), ["batch_size=6000", "n_train=5000", "batch_size <= n_train"]),
        ("sweep-demo", dict(seeds="0,0"), ["'seeds'", "0 appears 2 times", "distinct"]),
        ("hebb-phase", dict(lr="inf"), ["'lr'", "not finite", "a finite number > 0"]),
        ("hebb-phase", dict(lr="nan"), ["'lr'", "not finite"]),
        ("sweep-demo", dict(seeds="99999999999999999999"), ["'seeds'", str(MAX_SEED)]),
        ("sweep-demo", dict(seeds="-1"), ["'seeds'", "out of range"]),
        ("hebb-classify", dict(dataset="cifar10", data_path="/nope"), ["data_path='/nope'", "CIFAR-10"]),
        ("hebb-table", dict(layer="5"), ["layer=5", "layer < len(widths) - 1"]),
        ("hebb-transformer", dict(heads="5"), ["d_model divisible by heads"]),
        ("curl-speedup", dict(ks="11"), ["k <= N"]),
        ("sweep-demo", dict(fail="9"), ["fail index < len(gains)"]),
        ("hebb-phase", dict(activations="linear,bogus"), ["'bogus'", "valid choices"]),
        ("sweep-demo", dict(size="2.5"), ["'size'", "expected int"]),
    ],
)
def test_bad_values_are_refused_before_any_work_with_the_limit(tmp_path, name, overrides, needles, sweep_demo):
    with pytest.raises(PlasticlabError) as info:
        plasticlab.run(name, quick=True, out=tmp_path / "o", **overrides)
    msg = str(info.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)
    assert not (tmp_path / "o").exists()  # refused at the door: nothing was written


def test_config_never_holds_infinity(tmp_path, sweep_demo):
    with pytest.raises(PlasticlabError):
        plasticlab.run("sweep-demo", plugins=[sweep_demo], out=tmp_path / "o", gains="1,inf")
    df = plasticlab.run(
        "sweep-demo", plugins=[sweep_demo], out=tmp_path / "ok", gains=[1.0], seeds=[0], size=4, steps=3
    )
    assert len(df) == 1
    json.loads((tmp_path / "ok" / "manifest.json").read_text(), parse_constant=pytest.fail)


def test_params_command_and_run_help_list_every_key(sweep_demo):
    r = CliRunner().invoke(app, ["params", "hebb-phase"])
    assert r.exit_code == 0, r.output
    for key in get("hebb-phase").defaults:
        assert f"\n{key} " in r.output
    assert "batch_size <= n_train" in r.output and "an integer in [2, 10000000]" in r.output
    r = CliRunner().invoke(app, ["run", "sweep-demo", "--plugin", sweep_demo, "--help"])
    assert r.exit_code == 0 and "sleep_s" in r.output and "--quick" in r.output, r.output
    r = CliRunner().invoke(app, ["params", "nope"])
    assert r.exit_code == 2 and "unknown experiment" in r.output


def test_bad_input_found_inside_a_chunk_is_one_line_exit_2(tmp_path, monkeypatch, sweep_demo):
    exp = get("sweep-demo")

    def bad_chunk(spec):
        raise PlasticlabError(f"no data file for gain {spec['gain']}")

    monkeypatch.setattr(type(exp), "run_chunk", lambda self, spec: bad_chunk(spec))
    sets = ["--set", "gains=1", "--set", "seeds=0", "--workers", "1", "-q"]
    r = CliRunner().invoke(app, ["run", "sweep-demo", "--plugin", sweep_demo, *sets, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines == ["error: chunk 0: no data file for gain 1.0"], r.output


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("hebb-table", dict(gammas="0.005,0.005", rules="sgd")),
        ("hebb-table", dict(rules="sgd,sgd")),
        ("hebb-phase", dict(sigmas=[0.1, 0.1])),
        ("curl-speedup", dict(Ps="100,100")),
    ],
)
def test_a_list_of_runs_refuses_repeated_values(name, overrides):
    # a repeated value is one run counted twice: n doubles and the ± shrinks by ~1/sqrt(2) (CLI and API alike)
    with pytest.raises(PlasticlabError, match="appears 2 times"):
        get(name).params(quick=True, **overrides)


def test_a_shape_may_repeat_a_width():
    assert get("hebb-table").params(widths=[32, 64, 64, 32])["widths"] == [32, 64, 64, 32]


def test_params_read_back_from_their_own_output_including_an_empty_list():
    exp = get("curl-speedup")
    p = exp.params(quick=True)
    assert p["slow_init_scales"] == []  # what a quick manifest holds
    assert exp.params(**p) == p
    with pytest.raises(PlasticlabError, match=r"'Ps': \[\] \(0 elements\); must be a list of 1\+"):
        exp.params(Ps=[])  # a list that may not be empty is still refused, by its constraint
