"""Every `plasticlab` command in the README's command list runs as written (plus tiny `--set` sizes so the
whole list takes seconds): docs that drift from the CLI fail here."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plasticlab.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"

# Tiny sizes per experiment, added before the README's own --set values for the keys the README does not set.
TINY = {
    "hebb-table": "steps=20 seeds=0 n_train=64 n_val=16 batch_size=16 rules=sgd gammas=0,5e-4",
    "hebb-phase": "steps=20 seeds=0 n_train=64 n_val=16 batch_size=16 sigmas=0.1 gammas=0.01",
    "hebb-theorem": "steps=20 seeds=0 n_train=64 n_val=16 batch_size=16 rules=sgd gammas=0.005",
    "hebb-transient": "steps=40 checkpoints=4 seeds=0 n_train=64 n_val=16 batch_size=16 gammas=0",
    "hebb-classify": "steps=20 seeds=0 gammas=0 batch_size=16 hidden=8",
    "hebb-transformer": "steps=20 seeds=0 gammas=0 rules=sgd n_train=64 n_val=16 batch_size=16 every=5 "
    "d_model=8 heads=2 layers=1 d_ff=16",
    "curl-theory": "seeds=0 sizes=30 c_hidden=0.5 c_readout=0.1 n_alpha=3 n_theory=10",
    "curl-hidden": "seeds=0 n_c=2 alphas=0,0.5 activations=linear epochs=20",
    "curl-chaos": "epochs=80 record=10 lyap_window=20 lyap_warmup=10 cs=0.4 alphas=0.25 c_grid=0.4 c_alphas=0.4 "
    "etas=0.1",
    "curl-readout": "seeds=0 n_c=2 alphas=0,0.5 epochs=20",
    "curl-speedup": "seeds=0 epochs=50 Ps=100",
    "rule-atlas": "seeds=0 steps=20 rules=sgd,dfa gammas=0 sigmas=0 n_train=200 n_val=50 analysis_batch=32 "
    "batch_size=16 warm_steps=2 noise_draws=1 loop_planes=1",
    "hebb-adam": "steps=40 seeds=0 n_train=300 n_val=50 widths=6,5,5,4 gammas=0,5e-3",
    "hebb-dfa": "shapes=3x6x1x60 seeds=0 n_train=256 n_val=20 every=5 lengths=20,60",
    "hebb-valopt": "steps=60 seeds=0 gammas=0,0.1 sigmas=0,0.3",
    "hebb-conventions": "table_conventions=mean/torch table_rules=sgd table_steps=20 table_seeds=0 "
    "table_widths=6,5,5,3 table_gammas=0,5e-3 table_n_train=64 table_n_val=16 table_batch_size=16 "
    "phase_conventions=half_sum/plain/signal phase_activations=tanh phase_sigmas=0.1 phase_gammas=0.01 "
    "phase_steps=20 phase_seeds=0 phase_d_in=6 phase_hidden=4 phase_n_train=64 phase_n_val=16 phase_batch_size=16",
    "rule-identify": "rules=sgd,hebbian,curl seeds=0,1 gammas=0,0.01 sigmas=0 steps=40 checkpoints=4 units=16,2 "
    "fractions=0.5 noises=1 folds=2 nongradient_probes=2 n_train=128 analysis_batch=32 trees=10",
}


def readme_commands() -> list[str]:
    """The `plasticlab ...` lines of the README's command-list code block, comments removed."""
    text = README.read_text()
    block = text.split("## One command per experiment", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith("plasticlab ")]


def test_the_readme_names_only_real_experiments_and_every_one_has_tiny_sizes():
    from plasticlab.experiments import all_experiments

    named = {shlex.split(c)[2] for c in readme_commands() if shlex.split(c)[1] == "run"}
    assert named <= set(all_experiments()) and named <= set(TINY)


def test_every_readme_command_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # $HOME/cifar-10-batches-py does not exist here
    runner = CliRunner()
    for cmd in readme_commands():
        args = shlex.split(os.path.expandvars(cmd))[1:]
        expect = 0
        if args[0] == "run":
            own = {a.split("=", 1)[0] for a in args if "=" in a}  # each key is given once (a repeat is an error)
            tiny = [x for kv in TINY[args[1]].split() if kv.split("=", 1)[0] not in own for x in ("--set", kv)]
            args = [*args[:2], *tiny, *args[2:], "--workers", "1", "-q"]
            if "dataset=cifar10" in cmd:
                expect = 2  # no CIFAR-10 on this machine: one line naming data_path, before any work
        r = runner.invoke(app, args)
        assert r.exit_code == expect, (cmd, r.output, r.exception)
        if expect == 2:
            assert "data_path" in r.output and len(r.output.strip().splitlines()) == 1, r.output


@pytest.mark.parametrize("doc", ["README.md", "docs/sweeps.md"])
def test_docs_do_not_claim_one_worker_is_the_cli_default(doc):
    text = (README.parent / doc).read_text()
    assert "`--workers 1` (default)" not in text


def test_the_quick_suite_figures_cover_every_experiment():
    from plasticlab.experiments import all_experiments

    # the package's experiments: a plugin another test loaded (sweep-demo) is not one of them
    names = {k for k, e in all_experiments().items() if type(e).__module__.startswith("plasticlab.")}
    n = len(names)
    counted = re.search(r"(\d+)/(\d+) within budget", README.read_text())
    assert counted and int(counted[2]) == n  # a new experiment is measured before it is counted
    perf = (README.parent / "docs" / "performance.md").read_text()
    section = perf.split("**quick-suite**", 1)[1].split("Command lines that produced these figures", 1)[0]
    rows = {line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")}
    assert names <= rows, names - rows
    assert f"of {n} within budget" in section


def test_make_bench_states_no_stale_benchmark_count():
    from benchmarks.__main__ import BENCHMARKS

    line = next(line for line in README.read_text().splitlines() if line.startswith("make bench"))
    words = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
    for word, k in words.items():
        assert f"all {word}" not in line or k == len(BENCHMARKS), line
