"""The benchmarks' correctness (not their speed): the research-style reference and the batched engine
compute the same trajectories, the roofline's analytic FLOP count matches the step's matmuls, and each
harness runs end to end on a tiny case."""

import subprocess
import sys

import pytest
import torch
from benchmarks import ensemble, quick_suite, roofline, small_roofline
from benchmarks.__main__ import main as dispatch
from torch.utils.flop_counter import FlopCounterMode

from plasticlab.simulation.curl import curl_step


def tiny(dtype="float64"):
    return ensemble.config(P=20, epochs=3, dtype=dtype)  # M=100, N=10, B=10: 6 updates


def test_reference_agrees_with_engine():
    cfg, seeds = tiny(), [0, 1, 2]
    res = ensemble.run_engine(cfg, seeds, k2=1, init_scale=2.0)
    ref = ensemble.run_reference(cfg, seeds, k2=1, init_scale=2.0)
    dw, de = ensemble.compare(cfg, res, ref, seeds)
    assert dw < 1e-12 and de < 1e-10
    assert len(ref[0][2]) == len(cfg.checkpoints())  # errors recorded at the engine's checkpoints
    assert not torch.equal(ref[0][0], ref[1][0])  # members really differ


def test_compare_catches_a_different_rule():
    cfg, seeds = tiny(), [0, 1]
    res = ensemble.run_engine(cfg, seeds, k2=1, init_scale=2.0)
    ref = ensemble.run_reference(cfg, seeds, k2=0, init_scale=2.0)  # plain GD: no flipped readout neuron
    dw, _ = ensemble.compare(cfg, res, ref, seeds)
    assert dw > 1e-8


@pytest.mark.parametrize("B,M,N", [(10, 100, 10), (7, 5, 3)])
def test_analytic_step_flops_match_counted_matmuls(B, M, N):
    E = 2
    W1, W2 = torch.randn(E, N, M, dtype=torch.float64), torch.randn(E, 1, N, dtype=torch.float64)
    x, y = torch.randn(E, B, M, dtype=torch.float64), torch.randn(E, B, 1, dtype=torch.float64)
    ones1, ones2 = torch.ones(E, M, dtype=torch.float64), torch.ones(E, N, dtype=torch.float64)
    with FlopCounterMode(display=False) as fc:
        curl_step(W1, W2, x, y, ones1, ones2, 0.1, "tanh")
    # curl_step forms the back-propagated error e·W2 as a matmul (2·B·N per member); the engine and the
    # analytic count use the broadcast outer product (B·N multiplies): the only difference allowed.
    assert fc.get_total_flops() == roofline.step_flops(E, B, M, N) + E * B * N


def test_ensemble_harness_runs(capsys):
    ensemble.main(["--members", "3", "--ref-members", "2", "--P", "20", "--epochs", "2", "--dtype", "float64"])
    out = capsys.readouterr().out
    assert "agreement within 1e-09: yes" in out and "load average at the end" in out
    for peer in ("NumPy peer", "autograd reference"):
        ratio = [ln for ln in out.splitlines() if ln.startswith(f"ratio {peer} / engine (eager)")]
        assert len(ratio) == 1 and float(ratio[0].split(":")[1].split()[0]) > 0


def test_numpy_peer_agrees_with_engine_and_catches_a_different_rule():
    cfg, seeds = tiny(), [0, 1, 2]
    res = ensemble.run_engine(cfg, seeds, k2=1, init_scale=2.0)
    dw, de = ensemble.compare(cfg, res, ensemble.run_numpy(cfg, seeds, k2=1, init_scale=2.0), seeds)
    assert dw < 1e-12 and de < 1e-10
    dw, _ = ensemble.compare(cfg, res, ensemble.run_numpy(cfg, seeds, k2=0, init_scale=2.0), seeds)
    assert dw > 1e-8


def test_roofline_harness_runs(capsys):
    roofline.main(
        [
            "--members",
            "1",
            "--M",
            "20",
            "--N",
            "30",
            "--P",
            "10",
            "--epochs",
            "2",
            "--square",
            "64",
            "--threads",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert (
        len(
            [
                ln
                for ln in out.splitlines()
                if ln.startswith("fraction of dense matmul throughput (whole simulation")
            ]
        )
        == 1
    )
    achieved = [ln for ln in out.splitlines() if ln.startswith("simulation achieved, whole run")]
    assert len(achieved) == 1 and float(achieved[0].split(":")[1].split()[0]) > 0


def test_quick_suite_runs_an_experiment_in_a_subprocess(capsys, sweep_demo):
    quick_suite.main(["--only", "sweep-demo", "--plugin", sweep_demo, "--timeout-factor", "30"])
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if ln.startswith("sweep-demo:")]
    assert len(line) == 1 and "budget 10 s" in line[0] and "exit" not in line[0]


def test_quick_suite_rejects_unknown_names():
    with pytest.raises(SystemExit, match="nope"):
        quick_suite.main(["--only", "nope"])


def test_dispatcher_lists_benchmarks_and_rejects_unknown(capsys):
    assert dispatch(["--help"]) == 0
    assert "quick-suite" in capsys.readouterr().out
    assert dispatch(["no-such-benchmark"]) == 2
    r = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "roofline" in r.stdout


def test_small_roofline_harness_runs(capsys):
    small_roofline.main(["--members", "2", "--P", "20", "--epochs", "2", "--square", "64", "--repeat", "1"])
    out = capsys.readouterr().out
    rate = [ln for ln in out.splitlines() if ln.startswith("engine (eager) achieved")]
    assert len(rate) == 1 and float(rate[0].split(":")[1].split()[0]) > 0 and "load average at the end" in out
    assert any(ln.startswith("engine (eager) fraction of one core's matmul FLOP/s") for ln in out.splitlines())


def test_paper_chunk_peers_agree_with_the_engines_and_catch_a_wrong_flip(monkeypatch):
    from benchmarks import paper_chunk as pc

    shape, rows = pc.hidden_members()
    shape = shape | dict(M=12, N=9, P=20, B=10, dtype="float64")
    rows = [(r[0], min(r[1], 12), r[2], r[3], r[4]) for r in rows if r[4] < 2 and r[1] in (0, 51, 102)]
    chunk = pc.curl_chunk("tiny-hidden", shape, rows, 2, 3)  # 3 α_h × 2 seeds: grouped in the engine
    assert chunk.check(3, list(range(len(rows)))) < 1e-12
    sp_shape, sp_rows = pc.speedup_members()
    sp = pc.curl_chunk("tiny-speedup", sp_shape | dict(P=20, dtype="float64"), sp_rows[::15][:6], 2, 2)
    assert sp.check(2, [0, 3, 5]) < 1e-12
    peer = pc.numpy_curl_run
    monkeypatch.setattr(pc, "numpy_curl_run", lambda cfg, rule, k1, k2, r, s: peer(cfg, rule, k1, k2 + 1, r, s))
    assert chunk.check(3, [2]) > 1e-6  # the peer now flips a readout neuron the engine does not


def test_paper_chunk_mlp_peer_agrees_with_train_mlp(monkeypatch):
    from benchmarks import paper_chunk as pc

    tiny = dict(pc.HEBB, widths=[5, 6, 4], gammas=[0.0, 5e-3], seeds=[0, 1], n_train=64, n_val=16, dtype="float64")
    monkeypatch.setattr(pc, "HEBB", tiny | dict(batch_size=8, record_every=5, late_every=2))
    chunk = pc.hebb_chunk(20, 20)
    assert chunk.members == 4 and chunk.check(20, [0, 3]) < 1e-9
