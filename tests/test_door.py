"""Bad input is refused at the door, in one line, before any work and without leaving anything behind:
junk CIFAR-10 batches, bad rule hyperparameters, bad executor options or --out (run and reproduce), an
unreachable scheduler, a repeated --set, a script that would start its run again in every worker."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import plasticlab
from plasticlab.cli import app
from plasticlab.errors import PlasticlabError
from plasticlab.experiments import get
from plasticlab.rules import make_rule, rule_names
from plasticlab.rules.transforms import param_noise, signal_noise, weight_decay
from plasticlab.sweeps import executors

TINY = dict(gains=[0.5, 1.0], seeds=[0], size=4, steps=3)
TINY_CLI = ["--set", "gains=0.5,1", "--set", "seeds=0", "--set", "size=4", "--set", "steps=3", "-q"]


def one_line_error(result, *needles):
    text = result.output
    assert result.exit_code == 2, text
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    for n in needles:
        assert n in text, (n, text)


def write_batches(root: Path, kind: str) -> Path:
    root.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [("data_batch_1", 12), ("test_batch", 6)]:
        data, labels = rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist()
        if kind == "corrupt":
            (root / name).write_bytes(b"\x80\x04 not a pickle")
            continue
        if kind == "shape":
            data = data[:, :5]
        elif kind == "dtype":
            data = data.astype(np.float64)
        elif kind == "labels":
            labels = [42] * n
        with open(root / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f)
    return root


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("corrupt", "does not unpickle"),
        ("shape", "shape (12, 5), not (n, 3072)"),
        ("dtype", "dtype float64, not uint8"),
        ("labels", "labels in [42, 42], not in 0..9"),
    ],
)
def test_junk_cifar10_batches_are_refused_with_the_parameters(tmp_path, kind, needle):
    root = write_batches(tmp_path / "cifar", kind)
    exp = get("hebb-classify")
    with pytest.raises(PlasticlabError, match=r"CIFAR-10 batch .*data_batch_1") as e:
        exp.params(dataset="cifar10", data_path=str(root))
    assert needle in str(e.value) and "\n" not in str(e.value)
    sets = ["--set", "dataset=cifar10", "--set", f"data_path={root}", "--set", "seeds=0", "--set", "gammas=0"]
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "hebb-classify", *sets, "-q", "--out", str(out)])
    one_line_error(r, needle)
    assert not out.exists()


def test_good_cifar10_batches_pass_the_door(tmp_path):
    root = write_batches(tmp_path / "cifar", "good")
    p = get("hebb-classify").params(dataset="cifar10", data_path=str(root))
    assert p["data_path"] == str(root)


@pytest.mark.parametrize("value", ["nan", "inf", "abc"])
def test_bad_rule_hyperparameter_values_are_refused_before_any_work(tmp_path, value):
    out = tmp_path / "run"
    r = CliRunner().invoke(
        app, ["run", "hebb-theorem", "--quick", "--set", f"rules=dfa:scale={value}", "--out", str(out)]
    )
    one_line_error(r, "rule 'dfa' hyperparameter 'scale'", "a finite number")
    assert not out.exists()


def test_rule_hyperparameters_are_checked_like_parameters():
    with pytest.raises(PlasticlabError, match=r"'scale': 'abc' \(not a number\)"):
        make_rule("dfa", scale="abc")
    with pytest.raises(PlasticlabError, match="not finite"):
        make_rule("dfa", scale=math.inf)
    with pytest.raises(PlasticlabError, match=r"valid choices: feedback, scale\. Did you mean 'scale'"):
        make_rule("dfa:scal=2")
    with pytest.raises(PlasticlabError, match="valid choices: normal, uniform"):
        "dfa:feedback=gaussian" in rule_names()  # noqa: B015
    assert make_rule("dfa", scale=2).parts[0].scale == 2.0  # an int for a float default is coerced
    assert "dfa:scale=2" in rule_names() and "nope:scale=2" not in rule_names()


def test_unknown_rule_hyperparameter_names_the_rules_own_keys(tmp_path):
    r = CliRunner().invoke(app, ["run", "hebb-theorem", "--set", "rules=dfa:scal=2", "--out", str(tmp_path / "x")])
    one_line_error(r, "hyperparameter for rule 'dfa' 'scal'", "feedback, scale")
    assert "bcm" not in r.output  # not the list of rule names


@pytest.mark.parametrize("piece", [weight_decay, param_noise, signal_noise])
@pytest.mark.parametrize("value", [math.inf, math.nan, -1.0, "abc"])
def test_decay_and_noise_refuse_non_finite_or_negative_values(piece, value):
    with pytest.raises(PlasticlabError, match="must be"):
        piece(value)
    if piece is not signal_noise:
        with pytest.raises(PlasticlabError, match="finite value >= 0 per member"):
            piece([0.1, math.inf])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--workers", "0"], "workers must be an integer >= 1, got 0"),
        (["--workers=-1"], "got -1"),
        (["--executor", "nonsense"], "unknown executor 'nonsense'"),
        (["--workers", "two"], "Invalid value for '--workers'"),
        (["--set", "steps=3", "--set", "steps=4"], "--set steps is given twice"),
    ],
)
def test_a_refused_run_creates_nothing(sweep_demo, tmp_path, args, needle):
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "sweep-demo", *args, "--out", str(out), "-q"])
    one_line_error(r, needle)
    assert not out.exists()


def test_an_unreachable_scheduler_is_refused_before_the_folder_is_made(sweep_demo, tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT", "1s")
    out = tmp_path / "run"
    with pytest.raises(PlasticlabError, match="cannot reach Dask scheduler"):
        plasticlab.run("sweep-demo", out=out, executor="dask", scheduler="tcp://127.0.0.1:1", **TINY)
    assert not out.exists()


@pytest.mark.parametrize("out", [123, 1.5, ["a"]])
def test_out_of_the_wrong_type_is_a_user_error(sweep_demo, out):
    with pytest.raises(PlasticlabError, match="--out must be a folder path"):
        plasticlab.run("sweep-demo", out=out, **TINY)


def test_reproduce_out_has_the_same_door_as_run(sweep_demo, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    run_folder = tmp_path / "run"
    plasticlab.run("sweep-demo", out=run_folder, **TINY)
    before = sorted(p.name for p in run_folder.iterdir())
    base = ["reproduce", "--quick", "--only", "hebb-phase", "-q"]
    for out, needle in [
        (f, "is a file"),
        ("/proc/plasticlab-x", "not a writable folder"),
        (run_folder, "is the folder of one `plasticlab run`"),
    ]:
        one_line_error(CliRunner().invoke(app, [*base, "--out", str(out)]), needle)
    assert sorted(p.name for p in run_folder.iterdir()) == before  # nothing mixed in
    fresh = tmp_path / "board"
    for args, needle in [(["--workers", "0"], "workers must be"), (["--executor", "x"], "unknown executor")]:
        one_line_error(CliRunner().invoke(app, [*base, *args, "--out", str(fresh)]), needle)
    assert not fresh.exists()  # no scoreboard written for a refused run


def test_a_script_without_a_main_guard_is_told_why(sweep_demo, tmp_path):
    script = tmp_path / "sweep.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import plasticlab
            try:
                plasticlab.run(
                    "sweep-demo", workers=2, plugins=[{sweep_demo!r}], gains=[0.5, 1.0], seeds=[0], size=4, steps=3
                )
            except plasticlab.errors.PlasticlabError as e:
                print(e)
            """
        )
    )
    src = str(Path(plasticlab.__file__).parents[1])
    r = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env={"PYTHONPATH": src}
    )
    assert "sweep.py calls plasticlab.run with workers=2" in r.stdout, r.stdout + r.stderr
    assert 'if __name__ == "__main__":' in r.stdout and "BrokenProcessPool" not in r.stdout + r.stderr
