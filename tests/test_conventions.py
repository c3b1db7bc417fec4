"""The Part A convention switches: loss normalisation (half_sum | mean), layers (plain | torch) and where
the noise enters (weights | signal). Defaults reproduce today's runs, hash for hash."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from plasticlab.errors import PlasticlabError
from plasticlab.experiments.hebbian._common import _member_rule, convention_note, train_regression
from plasticlab.networks.mlp import init_mlp
from plasticlab.rules import make_rule
from plasticlab.rules.base import Context
from plasticlab.rules.signals import RandomNN
from plasticlab.rules.transforms import CoupledL2, SignalNoise, WeightDecay
from plasticlab.simulation.train_mlp import init_fn, step_fn, train_mlp
from plasticlab.study import get
from plasticlab.sweeps.execute import hashes_of
from plasticlab.tasks import teacher_regression

RESULTS = Path(__file__).resolve().parents[1] / "results"
D_OUT = 3


def _data(seeds, loss="mse", init="normal"):
    data = teacher_regression(seeds, d_in=5, d_out=D_OUT, n_train=64, n_val=16, init=init)
    return dataclasses.replace(data, loss=loss)


def _train(rule, loss, lr, steps=40, seeds=(0, 1), init="normal"):
    seeds = list(seeds)
    net = init_mlp(seeds, [5, 7, 6, D_OUT], "tanh", init=init)
    return train_mlp(net, rule, _data(seeds, loss, init), seeds, steps=steps, lr=lr, batch_size=8, record_every=10)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# -- loss=mean -----------------------------------------------------------------------------------------------
def test_mean_loss_output_error_is_torchs_mse_loss_gradient():
    out = torch.randn(1, 4, D_OUT, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, 4, D_OUT, dtype=torch.float64)
    torch.nn.MSELoss()(out[0], y[0]).backward()
    net = init_mlp([0], [2, D_OUT], "linear")
    ctx = Context(net=net, trace=None, x=None, y=y, loss="mse_mean", seeds=torch.tensor([0]), step=0)  # type: ignore[arg-type]
    # descent's 1/B turns the per-sample error into the batch mean's gradient
    assert torch.allclose(ctx.output_delta(out.detach(), y) / 4, out.grad, rtol=1e-14, atol=0)


@pytest.mark.parametrize("rule", ["sgd", "dfa", "random_nn"])
def test_mean_loss_is_half_sum_at_lr_times_2_over_d_and_gamma_times_d_over_2(rule):
    lr, gamma = 0.3, 0.02
    mean = _train(make_rule(rule, gamma=gamma), "mse_mean", lr)
    half = _train(make_rule(rule, gamma=gamma * D_OUT / 2), "mse", lr * 2 / D_OUT)
    for a, b in zip(mean.net.weights, half.net.weights):
        assert _rel(a, b) < 1e-12
    plain = _train(make_rule(rule, gamma=gamma), "mse", lr)  # the mapping is needed: without it they differ
    assert _rel(plain.net.weights[1], mean.net.weights[1]) > 1e-3


def test_adam_forms_map_between_the_losses_only_without_eps():
    """Adam divides the gradient's scale out, so no lr rescaling maps its two losses: a mean-loss gradient
    2/d_out times the half-sum one gives the same Adam step at the same lr, except through eps (which is not
    scaled). Decoupled decay (adam) then keeps its γ; the coupled L2 (adam_l2) is added before Adam, so it
    must shrink with the gradient: γ_half = γ_mean · d_out/2. With eps = 0 both maps are exact; with torch's
    eps = 1e-8 they are not."""
    lr, gamma = 0.01, 0.01
    for eps in (0.0, 1e-8):
        mean = _train(make_rule("adam", gamma=gamma, eps=eps), "mse_mean", lr)
        half = _train(make_rule("adam", gamma=gamma, eps=eps), "mse", lr)
        mean_l2 = _train(make_rule("adam_l2", gamma=gamma, eps=eps), "mse_mean", lr)
        half_l2 = _train(make_rule("adam_l2", gamma=gamma * D_OUT / 2, eps=eps), "mse", lr)
        err = max(
            _rel(mean.net.weights[1], half.net.weights[1]), _rel(mean_l2.net.weights[1], half_l2.net.weights[1])
        )
        if eps == 0:
            assert err < 1e-10
        else:
            assert err > 1e-12  # eps breaks the exact map (slightly)


def test_loss_kinds_are_validated():
    with pytest.raises(PlasticlabError, match="mse_mean"):
        _train(make_rule("sgd"), "sum", 0.1, steps=2)


# -- layers=torch --------------------------------------------------------------------------------------------
def test_torch_layers_initialise_like_nn_linear():
    fan_in, fan_out = 400, 2000
    net = init_mlp([0], [fan_in, fan_out], "linear", init="torch")
    W, b = net.weights[0][0].flatten().numpy(), net.biases[0][0].numpy()  # type: ignore[index]
    torch.manual_seed(0)
    ref = torch.nn.Linear(fan_in, fan_out, dtype=torch.float64)
    bound = 1 / math.sqrt(fan_in)
    for ours, theirs in ((W, ref.weight.detach().flatten().numpy()), (b, ref.bias.detach().numpy())):
        assert np.abs(ours).max() <= bound and np.abs(theirs).max() <= bound
        n = len(ours)
        assert ours.var() == pytest.approx(1 / (3 * fan_in), rel=6 * math.sqrt(0.8 / n))  # var of x² for U
        assert stats.kstest(ours, stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    plain = init_mlp([0], [fan_in, fan_out], "linear")
    assert plain.biases == [None] and plain.weights[0].std().item() == pytest.approx(bound, rel=0.01)


def test_torch_layers_give_student_teacher_and_random_nn_target_biases():
    seeds = [0, 1]
    student = init_mlp(seeds, [5, 7, D_OUT], "tanh", init="torch")
    assert all(b is not None and b.abs().max() > 0 for b in student.biases)
    data = teacher_regression(seeds, d_in=5, d_out=D_OUT, n_train=32, n_val=8, teacher_hidden=(7,), init="torch")
    teacher = init_mlp(seeds, [5, 7, D_OUT], "tanh", tag="teacher", init="torch")
    assert torch.equal(data.y_train, teacher.forward(data.x_train).out[:, :32])
    no_bias = dataclasses.replace(teacher, biases=[None, None])
    assert not torch.allclose(data.y_train, no_bias.forward(data.x_train).out)
    target = RandomNN().init(student, torch.tensor(seeds))
    assert target.init == "torch" and all(b is not None and b.abs().max() > 0 for b in target.biases)
    # a plain net's target is today's bias-free draw; a plain net with (zero) biases gets zero biases
    plain = init_mlp(seeds, [5, 7, D_OUT], "tanh")
    today = init_mlp(seeds, [5, 7, D_OUT], "tanh", bias=False, tag="random-nn-target")
    t_plain = RandomNN().init(plain, torch.tensor(seeds))
    assert t_plain.biases == [None, None] and all(
        torch.equal(a, b) for a, b in zip(t_plain.weights, today.weights)
    )
    zero_b = RandomNN().init(init_mlp(seeds, [5, 7, D_OUT], "tanh", bias=True), torch.tensor(seeds))
    assert all(torch.equal(a, b) for a, b in zip(zero_b.weights, today.weights))
    assert all(b is not None and not b.any() for b in zero_b.biases)


def test_torch_layers_decay_acts_on_biases():
    seeds = torch.tensor([0, 1])
    net = init_mlp(seeds, [5, 7, D_OUT], "tanh", init="torch")
    data = _data([0, 1])
    x, y = data.x_train[:, :8], data.y_train[:, :8]
    ctx = Context(net=net, trace=net.forward(x), x=x, y=y, loss="mse", seeds=seeds, step=0)
    gamma = 0.1
    on = make_rule("sgd", gamma=gamma, decay_biases=True)
    off = make_rule("sgd", gamma=gamma)
    out_on, out_off = on.step(on.init(net, seeds), ctx), off.step(off.init(net, seeds), ctx)
    for (uW_on, ub_on), (uW_off, ub_off), b in zip(out_on.updates, out_off.updates, net.biases):
        assert torch.equal(uW_on, uW_off)
        assert torch.allclose(ub_on - ub_off, -gamma * b, rtol=0, atol=1e-15)
    assert torch.equal(out_on.signal[0][1], out_off.signal[0][1])  # decay stays outside the signal
    for rule in ("sgd", "adam_l2", "adam"):  # the experiments' builder: decoupled and coupled decay alike
        decays = [
            p
            for p in _member_rule(rule, [0.1], "signal", "torch").parts
            if isinstance(p, (WeightDecay, CoupledL2))
        ]
        assert decays and all(p.biases for p in decays)
        assert not any(
            p.biases for p in _member_rule(rule, [0.1], "signal").parts if isinstance(p, (WeightDecay, CoupledL2))
        )


# -- noise_at=signal -----------------------------------------------------------------------------------------
def test_signal_noise_has_sd_sigma_per_member_mean_zero_and_no_decay_inside():
    seeds = torch.tensor([3, 4])
    sigmas, gamma, lr = [0.1, 0.5], 0.05, 0.2
    widths = [40, 50, 30]
    data = teacher_regression(seeds.tolist(), d_in=40, d_out=30, n_train=64, n_val=8)
    net = init_mlp(seeds, widths, "tanh")
    noisy = make_rule("sgd", gamma=gamma, sigma=sigmas, noise_at="signal")
    clean = make_rule("sgd", gamma=gamma)
    assert not noisy.perturbs_forward and any(isinstance(p, SignalNoise) for p in noisy.parts)
    kw = dict(lr=lr, batch_size=16, check=False)
    new_n, info_n = step_fn(init_fn(net, noisy, seeds), noisy, data, seeds, **kw)  # type: ignore[arg-type]
    new_c, info_c = step_fn(init_fn(net, clean, seeds), clean, data, seeds, **kw)  # type: ignore[arg-type]
    for l in range(len(widths) - 1):
        W0 = net.weights[l]
        applied = (new_n.net.weights[l] - W0) / lr  # lr·update observed: update = signal − γW
        noise = applied - (new_c.net.weights[l] - W0) / lr
        measured = info_n.out.signal[l][0] - info_c.out.signal[l][0]
        assert torch.allclose(measured, noise, atol=1e-12)  # the signal holds all the noise, no decay term
        assert torch.allclose(applied - info_n.out.signal[l][0], -gamma * W0, atol=1e-12)
        for e, s in enumerate(sigmas):
            n = noise[e].numel()
            assert noise[e].std().item() == pytest.approx(s, rel=5 / math.sqrt(2 * n))
            assert abs(noise[e].mean().item()) < 5 * s / math.sqrt(n)


def test_noise_at_is_checked_and_given_once():
    with pytest.raises(PlasticlabError, match=r"noise_at 'grad'.*signal, weights"):
        make_rule("sgd", sigma=0.1, noise_at="grad")
    with pytest.raises(PlasticlabError, match="once"):
        make_rule("sgd", sigma=0.1, noise_at="signal", signal_sigma=0.1)
    with pytest.raises(PlasticlabError, match="per member"):
        SignalNoise([0.1, math.inf])


# -- member alone == member in a batch -----------------------------------------------------------------------
def test_member_alone_equals_member_in_batch_for_torch_layers_and_signal_noise():
    seeds, gammas, sigmas = [0, 1, 2], [0.01, 0.02, 0.03], [0.05, 0.2, 0.1]

    def run(idx, per_member):
        s = [seeds[i] for i in idx]
        g = [gammas[i] for i in idx] if per_member else gammas[idx[0]]
        sg = [sigmas[i] for i in idx] if per_member else sigmas[idx[0]]
        rule = make_rule("random_nn", gamma=g, sigma=sg, noise_at="signal", decay_biases=True)
        return _train(rule, "mse_mean", 0.2, steps=30, seeds=s, init="torch")

    together, alone = run([0, 1, 2], True), run([1], False)
    for (W, b), (W1, b1) in zip(together.net.params(), alone.net.params()):
        assert torch.allclose(W[1], W1[0], rtol=0, atol=1e-13) and torch.allclose(b[1], b1[0], rtol=0, atol=1e-13)  # type: ignore[index]
    assert torch.allclose(together.alignment[:, :, 1], alone.alignment[:, :, 0], atol=1e-12, equal_nan=True)


# -- experiments: params, hashes, notes ------------------------------------------------------------------------
PART_A = ["hebb-table", "hebb-phase", "hebb-theorem", "hebb-transient", "hebb-valopt", "hebb-dfa", "hebb-adam"]


@pytest.mark.parametrize("name", [*PART_A, "hebb-classify"])
def test_every_part_a_experiment_takes_the_conventions_with_todays_defaults(name):
    exp = get(name)
    p = exp.params()
    keys = {"layers"} | (set() if name == "hebb-classify" else {"loss"})
    keys |= {"noise_at"} if name in ("hebb-phase", "hebb-valopt") else set()
    assert {k: p[k] for k in keys} == {
        k: dict(loss="half_sum", layers="plain", noise_at="weights")[k] for k in keys
    }
    assert not ({"loss", "layers", "noise_at"} - keys) & set(p)  # only where the convention applies
    assert "Conventions:" in exp.notes(p) and "nn.Linear" in exp.notes(exp.params(layers="torch"))
    if "loss" in keys:
        with pytest.raises(PlasticlabError, match="half_sum, mean"):
            exp.params(loss="sum")
        spec = exp.chunks(exp.params(loss="mean"))[0]
        assert spec.loss == "mean" and exp.spec_of(exp.spec_dict(spec)) == spec
    for hidden in ("hebb-transformer", "hebb-cnn"):  # conventions do not apply there
        q = get(hidden).params()
        assert not {"loss", "noise_at"} & set(q) and not isinstance(q.get("layers"), str)  # transformer: a count


def test_specs_at_default_conventions_hash_as_the_committed_runs():
    manifest = json.loads((RESULTS / "hebb-table" / "manifest.json").read_text())
    exp = get("hebb-table")
    p = exp.params(**manifest["params"])
    assert hashes_of(exp, exp.chunks(p)) == manifest["grid"]
    assert hashes_of(exp, exp.chunks({**p, "loss": "mean"}))[0] != manifest["grid"][0]
    assert hashes_of(exp, exp.chunks({**p, "layers": "torch"}))[0] != manifest["grid"][0]
    assert exp.size(manifest["params"]) == exp.size(p)  # a saved run without the keys is at their defaults


@pytest.mark.parametrize(
    "folder", sorted(d.name for d in RESULTS.glob("hebb-*") if (d / "manifest.json").exists())
)
def test_every_committed_part_a_folder_keeps_its_chunk_hashes(folder):
    manifest = json.loads((RESULTS / folder / "manifest.json").read_text())
    exp = get(manifest["experiment"])
    if exp.name == "hebb-transformer":
        pytest.skip("no conventions in hebb-transformer (its saved grids are outside this change)")
    assert hashes_of(exp, exp.chunks(exp.params(**manifest["params"]))) == manifest["grid"]


def test_train_regression_threads_the_conventions():
    common = dict(widths=[4, 5, 3], activation="tanh", steps=6, lr=0.1, batch_size=4, n_train=32, n_val=8)
    _, plain = train_regression("sgd", [0.01], [0], **common)  # type: ignore[arg-type]
    _, torch_l = train_regression("sgd", [0.01], [0], layers="torch", **common)  # type: ignore[arg-type]
    _, mean = train_regression("sgd", [0.01], [0], loss="mean", **common)  # type: ignore[arg-type]
    assert plain.net.biases == [None, None] and all(b is not None for b in torch_l.net.biases)
    assert plain.net.init == "normal" and torch_l.net.init == "torch"
    assert not torch.allclose(plain.net.weights[0], mean.net.weights[0])
    assert convention_note({"loss": "mean"}).startswith("Conventions: loss mean over outputs and batch")
