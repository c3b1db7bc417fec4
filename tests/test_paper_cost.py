"""paper-cost's analytic FLOP counts: hand counts for tiny configs, and the engines' own matmuls counted by
torch's FLOP counter on one real step."""

import json
import math
import time

import numpy as np
import pytest
import torch
from benchmarks import flops, paper_cost
from torch.utils.flop_counter import FlopCounterMode


def test_mlp_count_by_hand():
    # widths 2-3-5-1, B = 4: products 6 + 15 + 5 = 26 weights; forward 2·4·26, weight gradients 2·4·26,
    # error carried back through the two upper layers 2·4·(15 + 5)
    assert flops.mlp_step([2, 3, 5, 1], 4) == 208 + 208 + 160 == 576


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_mlp_count_equals_the_engine_step(rule):
    from plasticlab.networks.mlp import init_mlp
    from plasticlab.rules import make_rule
    from plasticlab.simulation.train_mlp import init_fn, step_fn
    from plasticlab.tasks import teacher_regression

    widths, seeds = [2, 3, 5, 1], [0, 1, 2]
    data = teacher_regression(seeds, d_in=2, d_out=1, n_train=50, n_val=5)
    r = make_rule(rule, gamma=np.zeros(3))
    s0 = init_fn(init_mlp(seeds, widths, "tanh"), r, torch.tensor(seeds))
    with FlopCounterMode(display=False) as fc:
        step_fn(s0, r, data, torch.tensor(seeds), lr=1e-3, batch_size=4, check=False)
    assert fc.get_total_flops() == 3 * flops.mlp_step(widths, 4)


def test_transformer_count_equals_autograd():
    from plasticlab.networks.transformer import TinyTransformer

    m = TinyTransformer(8, 4, 32, 4, 2, 64, 32)
    x, y = torch.randn(16, 32), torch.randn(16, 32)
    with FlopCounterMode(display=False) as fc:
        (0.5 * (m(x) - y).pow(2).sum(1).mean()).backward()
    assert fc.get_total_flops() == flops.transformer_step(16, 8, 4, 32, 2, 64, 32)


def test_chaos_and_moment_counts():
    from plasticlab.simulation import chaos as sim

    M, N = 5, 12  # reduced: N' = M + 1 = 6
    assert flops.chaos_step(M, N) == 6 * 6 * 5 + 2 * 25 == 230
    assert flops.moments_step(3, 4) == 6 * 12 + 2 * 9 + 2 * 3
    W1, W2, S, v = sim.start(M, N, [0, 1])
    A, b, _ = sim.reduce(W1, W2)
    with FlopCounterMode(display=False) as fc:
        sim.step((A, b), S, v, sim.flip_diagonal([1, 2], M), sim.as_lr([0.1, 0.1]), sim.layer_norms(W1, W2))
    assert fc.get_total_flops() == 2 * flops.chaos_step(M, N)


def test_chunk_work_by_hand():
    spec = dict(rule="sgd", gammas=[0.0, 1e-3], seeds=[0, 1, 2], widths=[2, 3, 5, 1], steps=10, batch_size=4)
    w = flops.chunk_work("hebb-table", spec)
    assert (w.engine, w.members, w.steps, w.flops) == ("mlp", 6, 10, 6 * 10 * 576)
    c = dict(M=5, N=3, P=20, B=10, epochs=7, activation="tanh", alphas=[0, 0.5], seeds=[0, 1, 2], dtype="float32")
    w = flops.chunk_work("curl-hidden", c)
    # 6 members × 7 epochs × 2 steps × (4·10·5·3 + 5·10·3)
    assert (w.engine, w.members, w.steps, w.flops) == ("curl", 6, 14, 6 * 14 * 750)
    w = flops.chunk_work("curl-readout", {**c, "activation": "linear"})  # full batch, linear: moment steps
    assert (w.engine, w.steps, w.per_step) == ("curl-moments", 7, 6 * 15 + 50 + 10)
    assert flops.chunk_work("curl-theory", {}).engine == "none"


def test_every_paper_experiment_is_counted():
    from plasticlab.experiments import get
    from plasticlab.reproduce import paper_experiments

    for name in paper_experiments():
        exp = get(name)
        works = [flops.chunk_work(name, exp.spec_dict(s)) for s in exp.chunks(exp.params())]
        if name == "curl-theory":
            continue
        # a chunk that trains a torch model (hebb-cnn, rule-transfer's CNN) has no FLOP model: the table says so
        works = [w for w in works if w.note != flops.TORCH_MODEL]
        assert all(w.engine != "none" and w.flops > 0 and math.isfinite(w.flops) for w in works), name


def test_measure_runs_the_engine_at_the_shape():
    w = flops.Work("mlp", "float64", 3, 100, flops.mlp_step([4, 6, 2], 8), dict(widths=(4, 6, 2), B=8, rule="sgd"))
    rate, ops = paper_cost.measure(w, budget=0.02)
    assert rate > 0 and ops > 5
    c, lb = paper_cost.gpu_seconds(w, ops)
    assert c == pytest.approx(w.flops / 5e12) and lb == pytest.approx(100 * ops * 1e-5)


def test_curl_timing_leaves_the_set_up_out():
    # A curl run's set-up (data, teacher, start) can outlast many epochs; the timed steps must not carry it.
    shape = dict(M=12, N=30, P=250, B=250, activation="linear")
    w = flops.Work("curl-moments", "float64", 40, 1, flops.moments_step(12, 30), shape)
    run, per_unit = paper_cost._stepper(w)
    t0 = time.perf_counter()
    own = paper_cost._time(run, 3)
    wall = time.perf_counter() - t0
    assert per_unit == 1 and 0 < own < wall


def test_paper_cost_harness_runs(capsys, tmp_path):
    manifest = tmp_path / "manifest.json"
    spec = dict(rule="sgd", dataset="digits", gammas=[0.0], seeds=[0], hidden=8, steps=30, batch_size=16)
    spec["dtype"] = "float64"
    chunk = dict(state="done", seconds=2.0, spec=spec)
    manifest.write_text(json.dumps(dict(experiment="hebb-classify", chunks=dict(a=chunk))))
    argv = ["--experiments", "hebb-classify,curl-theory", "--budget", "0.02", "--manifests", str(manifest)]
    paper_cost.main(argv)
    out = capsys.readouterr().out
    row = [ln for ln in out.splitlines() if ln.startswith("| hebb-classify |")]
    assert len(row) == 1 and "—" not in row[0].split("|")[7]  # a CPU-hours figure was predicted
    assert any(ln.startswith("| curl-theory |") and "eigenvalue" in ln for ln in out.splitlines())
    check = [ln for ln in out.splitlines() if ln.startswith(f"| {manifest} |")]
    assert len(check) == 1 and check[0].split("|")[3].strip() == "1" and "load average at the end" in out
