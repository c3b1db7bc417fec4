"""Opt-in torch.compile of the curl step: compiled == eager, a one-line fallback, and the run-level switch."""

import warnings

import numpy as np
import pytest
import torch

import plasticlab
from plasticlab import compiling
from plasticlab.errors import PlasticlabError
from plasticlab.simulation import curl
from plasticlab.simulation.curl import CurlConfig, simulate


def tiny(dtype="float64", B=5):
    return CurlConfig(M=6, N=4, P=10, B=B, epochs=4, points_per_decade=4, n_test=5, dtype=dtype)


# ~25 s with a cold compile cache on an idle 2-core machine: cheap enough for CI, where the equality is checked
@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "tol"), [("float64", 1e-10), ("float32", 1e-5)])
def test_compiled_curl_step_equals_eager(dtype, tol):
    kw = dict(k1=[0, 2], k2=1, rule=["gd_flip", "dfa_uniform_flip"])
    eager = simulate(tiny(dtype), [0, 1], **kw, compile=False)
    comp = simulate(tiny(dtype), [0, 1], **kw, compile=True)
    torch.testing.assert_close(comp.W1, eager.W1, rtol=0, atol=tol)
    np.testing.assert_allclose(comp.test_error, eager.test_error, rtol=tol)


def test_compile_falls_back_to_eager_with_one_warning(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(curl, "_compiled_steps", compiling.Compiled(curl._steps_tensors, "the curl-descent step"))
    eager = simulate(tiny(), [0, 1], k2=1, compile=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = simulate(tiny(), [0, 1], k2=1, compile=True)
    msgs = [str(x.message) for x in w if "torch.compile" in str(x.message)]
    assert len(msgs) == 1 and "no C++ compiler found" in msgs[0] and "\n" not in msgs[0]
    torch.testing.assert_close(res.W1, eager.W1, rtol=0, atol=1e-12)


def test_compile_flag_parsing_and_run_level_switch(monkeypatch, sweep_demo):
    assert compiling.as_flag("true") and not compiling.as_flag("false") and compiling.as_flag(True)
    with pytest.raises(PlasticlabError, match="compile='maybe'"):
        compiling.as_flag("maybe")
    with pytest.raises(PlasticlabError, match="compile"):
        plasticlab.run("sweep-demo", plugins=[sweep_demo], quick=True, compile="maybe")
    with compiling.use(True):
        assert compiling.enabled()
    assert not compiling.enabled()


def _mlp_run(dtype, compile, rule="sgd"):
    from plasticlab.networks.mlp import init_mlp
    from plasticlab.rules import make_rule
    from plasticlab.simulation.train_mlp import train_mlp
    from plasticlab.tasks import teacher_regression

    seeds = [0, 1]
    data = teacher_regression(seeds, d_in=3, d_out=2, n_train=40, n_val=8, dtype=dtype)
    net = init_mlp(seeds, [3, 4, 2], "tanh", dtype=dtype)
    # σ > 0: the weight noise is drawn inside the compiled step (through plasticlab.seeding, kept eager)
    r = make_rule(rule, gamma=np.array([0.0, 1e-2]), sigma=np.array([0.0, 0.05]))
    return train_mlp(net, r, data, seeds, steps=6, lr=0.05, batch_size=5, record_every=2, compile=compile)


@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_compiled_mlp_step_equals_eager(dtype, tol):
    eager = _mlp_run(dtype, False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        comp = _mlp_run(dtype, True)
    assert not [x for x in w if "running eagerly" in str(x.message)]  # it really compiled
    for a, b in zip(comp.net.weights, eager.net.weights):
        torch.testing.assert_close(a, b, rtol=0, atol=tol)
    torch.testing.assert_close(comp.val_loss, eager.val_loss, rtol=tol, atol=tol)
    assert not torch.equal(eager.net.weights[0][0], eager.net.weights[0][1])  # members really differ


def test_mlp_compile_falls_back_to_eager_with_one_warning(monkeypatch):
    from plasticlab.simulation import train_mlp as tm

    def broken(*a, **k):
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(tm, "_compiled_step", compiling.Compiled(tm.step_fn, "the MLP trainer step", dynamic=None))
    eager = _mlp_run(torch.float64, False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with compiling.use(True):  # the run-level switch, as plasticlab.run(..., compile=True) sets it
            res = _mlp_run(torch.float64, None)
    msgs = [str(x.message) for x in w if "torch.compile" in str(x.message)]
    assert len(msgs) == 1 and "MLP trainer step" in msgs[0] and "\n" not in msgs[0]
    for a, b in zip(res.net.weights, eager.net.weights):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
