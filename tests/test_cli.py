"""CLI: list / run / show / status; user errors are one line with exit 2 and never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from plasticlab.cli import app

TINY = ["--set", "seeds=0,1", "--set", "size=6", "--set", "steps=4", "-q"]


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def assert_user_error(result, *needles):
    text = result.output
    assert result.exit_code == 2, text
    assert "Traceback" not in text
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    for n in needles:
        assert n in text, (n, text)


def test_list_names_the_experiments(runner, sweep_demo):
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0
    assert any(line.startswith("sweep-demo") for line in r.output.splitlines())


def test_unknown_experiment(runner, tmp_path, sweep_demo):
    r = runner.invoke(app, ["run", "sweep-dem", "--out", str(tmp_path)])
    assert_user_error(r, "unknown experiment", "'sweep-dem'", "sweep-demo")


def test_unknown_set_key(runner, tmp_path, sweep_demo):
    r = runner.invoke(
        app, ["run", "sweep-demo", "--plugin", sweep_demo, "--set", "stepz=3", "--out", str(tmp_path)]
    )
    assert_user_error(r, "'stepz'", "steps", "Did you mean 'steps'")


def test_bad_values(runner, tmp_path, sweep_demo):
    r = runner.invoke(
        app, ["run", "sweep-demo", "--plugin", sweep_demo, "--set", "steps=many", "--out", str(tmp_path)]
    )
    assert_user_error(r, "'steps'", "'many'", "int")
    r = runner.invoke(app, ["run", "sweep-demo", "--plugin", sweep_demo, "--set", "steps", "--out", str(tmp_path)])
    assert_user_error(r, "key=value")
    r = runner.invoke(
        app, ["run", "sweep-demo", "--plugin", sweep_demo, "--executor", "slurm", "--out", str(tmp_path)] + TINY
    )
    assert_user_error(r, "unknown executor", "'slurm'", "dask, local")


def test_run_show_status_on_finished_dir(runner, tmp_path, sweep_demo):
    out = tmp_path / "run"
    r = runner.invoke(
        app, ["run", "sweep-demo", "--plugin", sweep_demo, "--set", "gains=0.5,2", "--out", str(out)] + TINY
    )
    assert r.exit_code == 0, r.output
    assert (out / "report.md").exists() and (out / "results.parquet").exists()
    assert "chunks: 2 computed, 0 reused" in r.output
    r = runner.invoke(
        app, ["run", "sweep-demo", "--plugin", sweep_demo, "--set", "gains=0.5,2,3", "--out", str(out)] + TINY
    )
    assert r.exit_code == 0 and "chunks: 1 computed, 2 reused" in r.output
    r = runner.invoke(app, ["show", str(out)])
    assert r.exit_code == 0 and "growth rate" in r.output and "results.parquet" in r.output
    r = runner.invoke(app, ["status", str(out)])
    assert r.exit_code == 0
    assert "3 done, 0 pending, 0 failed of 3 chunks" in r.output


def test_show_and_status_on_a_folder_that_is_not_a_run(runner, tmp_path):
    assert_user_error(runner.invoke(app, ["show", str(tmp_path)]), "no report.md")
    assert_user_error(runner.invoke(app, ["status", str(tmp_path)]), "no manifest.json")


def test_failed_chunk_exits_1_with_summary_then_rerun_retries(runner, tmp_path, sweep_demo):
    out, heal = tmp_path / "run", tmp_path / "heal"
    args = [
        "run",
        "sweep-demo",
        "--plugin",
        sweep_demo,
        "--set",
        "gains=0.5,1,2",
        "--set",
        "fail=2",
        "--set",
        f"heal_file={heal}",
        "--out",
        str(out),
    ] + TINY
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    assert "1 of 3 chunks" in r.output and "chunk 2: RuntimeError" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["status", str(out)])
    assert "2 done, 0 pending, 1 failed of 3 chunks" in r.output and "chunk 2 failed" in r.output
    heal.touch()
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "3 done, 0 pending, 0 failed" in runner.invoke(app, ["status", str(out)]).output


def test_real_process_user_error_is_one_line_exit_2(tmp_path, sweep_demo):
    import subprocess
    import sys

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "plasticlab.cli",
            "run",
            "sweep-demo",
            "--plugin",
            sweep_demo,
            "--set",
            "gains=0,1",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stderr.strip().count("\n") == 0 and "'gains': [0.0, 1.0]" in r.stderr and "> 0" in r.stderr


def test_progress_bar_counts_chunks_and_shows_eta(runner, tmp_path, sweep_demo):
    args = ["--set", "gains=0.5,2", "--set", "seeds=0", "--set", "size=4", "--set", "steps=2"]
    r = runner.invoke(app, ["run", "sweep-demo", "--plugin", sweep_demo, "--out", str(tmp_path)] + args)
    assert r.exit_code == 0, r.output
    assert "2/2" in r.output and "ETA" in r.output


def test_progress_is_one_line_per_chunk_when_stderr_is_not_a_terminal(sweep_demo, runner, tmp_path):
    sets = ["--set", "gains=0.5,2,3", "--set", "seeds=0", "--set", "size=4", "--set", "steps=3"]
    r = runner.invoke(app, ["run", "sweep-demo", *sets, "--workers", "1", "--out", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if "chunks, elapsed" in line]
    assert [line.split(":")[1].split()[0] for line in lines] == ["1/3", "2/3", "3/3"], r.output
    assert all("ETA" in line for line in lines) and "━" not in r.output


def test_usage_errors_are_one_line(sweep_demo, runner):
    for args, needle in [
        (["run", "sweep-demo", "--workers", "two"], "Invalid value for '--workers'"),
        (["run", "sweep-demo", "--bogus"], "No such option: --bogus"),
        (["runn"], "No such command 'runn'"),
    ]:
        assert_user_error(runner.invoke(app, args), needle, "--help`)")


def test_params_shows_compile_whole_defaults_and_which_keys_split_chunks(sweep_demo, runner):
    r = runner.invoke(app, ["params", "sweep-demo"])
    assert r.exit_code == 0, r.output
    assert "…" not in r.output and "0.5,0.8,1.0,1.2,1.5,2.0,3.0,100.0" in r.output
    role = {line.split()[0]: line.split()[4] for line in r.output.splitlines()[2:] if len(line.split()) > 5}
    assert role["gains"] == "splits" and role["steps"] == "every" and role["heal_file"] == "none"
    assert role["fail"] == "some" and role["compile"] == "none"
    r = runner.invoke(app, ["params", "hebb-table"])  # a default longer than the column wraps, whole
    assert "…" not in r.output and "adam,adam_l2,sgd,dfa,random_nn" in r.output.replace(" ", "").replace("\n", "")


def test_show_lists_results_not_the_lock(sweep_demo, runner, tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, ["run", "sweep-demo", "--set", "gains=0.5", "--out", str(out)] + TINY).exit_code == 0
    assert (out / ".sweep.lock").exists()
    files = runner.invoke(app, ["show", str(out)]).output.split("Files: ")[1]
    assert "report.md" in files and ".sweep.lock" not in files
