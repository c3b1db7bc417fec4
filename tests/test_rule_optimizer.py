"""RuleOptimizer: the sgd chain is torch's SGD, sgd+adam+decay is AdamW, local rules run on a user model,
DFA reads the output error torch computed."""

import copy

import pytest
import torch
from torch import nn

from plasticlab.errors import PlasticlabError
from plasticlab.rules import adam, chain, dfa, fa, hebbian, param_noise, sgd, weight_decay
from plasticlab.rules.optim import RuleOptimizer, infer_activation

torch.set_num_threads(1)


def model_and_data(act=nn.Tanh):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), act(), nn.Linear(6, 5), act(), nn.Linear(5, 3)).double()
    x = torch.randn(20, 4, dtype=torch.float64)
    y = torch.randn(20, 3, dtype=torch.float64)
    return model, x, y


def run(model, opt, x, y, steps=5, loss_fn=nn.functional.mse_loss):
    for t in range(steps):
        xb, yb = x[t % 2 :: 2], y[t % 2 :: 2]
        opt.zero_grad()
        loss_fn(model(xb), yb).backward()
        opt.step()
    return model


def assert_same(m1, m2, tol=1e-10):
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.allclose(p, q, atol=tol, rtol=0)


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_sgd_chain_matches_torch_sgd(wd):
    model, x, y = model_and_data()
    ref = copy.deepcopy(model)
    run(ref, torch.optim.SGD(ref.parameters(), lr=0.1, weight_decay=wd), x, y)
    # torch decays every parameter, biases included; decoupled decay equals SGD's for plain SGD
    run(model, RuleOptimizer(model, chain(sgd(), weight_decay(wd, biases=True)), lr=0.1), x, y)
    assert_same(model, ref)
    assert not torch.allclose(next(model.parameters()), next(model_and_data()[0].parameters()))


def test_decay_on_weights_only_matches_param_groups():
    model, x, y = model_and_data()
    ref = copy.deepcopy(model)
    groups = [
        dict(params=[p for n, p in ref.named_parameters() if n.endswith("weight")], weight_decay=0.05),
        dict(params=[p for n, p in ref.named_parameters() if n.endswith("bias")], weight_decay=0.0),
    ]
    run(ref, torch.optim.SGD(groups, lr=0.1), x, y)
    run(model, RuleOptimizer(model, chain(sgd(), weight_decay(0.05)), lr=0.1), x, y)
    assert_same(model, ref)


def test_sgd_adam_decay_chain_is_adamw():
    model, x, y = model_and_data()
    ref = copy.deepcopy(model)
    run(ref, torch.optim.AdamW(ref.parameters(), lr=0.01, weight_decay=0.1), x, y, steps=6)
    run(model, RuleOptimizer(model, chain(sgd(), adam(), weight_decay(0.1, biases=True)), lr=0.01), x, y, steps=6)
    assert_same(model, ref)


def test_hebbian_on_a_user_model_without_backward():
    model, x, _y = model_and_data(nn.ReLU)
    before = [m.weight.detach().clone() for m in model if isinstance(m, nn.Linear)]
    opt = RuleOptimizer(model, hebbian(), lr=0.01)
    with torch.no_grad():
        h1 = model[1](model[0](x))
        model(x)
    opt.step()
    # layer 2's update is lr * <h_b h_a^T>, h_a = relu(layer-1 output), h_b without the bias
    hb = h1 @ before[1].T
    want = before[1] + 0.01 * hb.T @ h1 / len(x)
    assert torch.allclose(model[2].weight, want, atol=1e-12)
    assert opt.last_signal[0][0].shape == (1, 6, 4)


def test_dfa_and_fa_read_the_output_error_from_backward():
    model, x, y = model_and_data()
    for rule in (dfa(), fa()):
        m = copy.deepcopy(model)
        opt = RuleOptimizer(m, chain(rule), lr=0.1)
        out = m(x)
        loss = nn.functional.cross_entropy(out, y.softmax(-1))  # any loss: the delta comes from autograd
        opt.zero_grad()
        loss.backward()
        g_last = -m[4].weight.grad.clone()
        opt.step()
        assert torch.allclose(opt.last_signal[-1][0][0], g_last, atol=1e-12)  # output layer = backprop
        assert torch.isfinite(m[0].weight).all()
    with pytest.raises(PlasticlabError, match="output error"):
        m = copy.deepcopy(model)
        opt = RuleOptimizer(m, dfa(), lr=0.1)
        with torch.no_grad():
            m(x)
        opt.step()


def test_user_errors_and_activation_inference():
    model, _x, _y = model_and_data(nn.ReLU)
    assert infer_activation(model) == "relu"
    assert infer_activation(nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2), nn.ReLU())).startswith(
        "unknown"
    )
    with pytest.raises(PlasticlabError, match="param_noise"):
        RuleOptimizer(model, chain(sgd(), param_noise(0.1)), lr=0.1)
    with pytest.raises(PlasticlabError, match="forward"):
        RuleOptimizer(model, sgd(), lr=0.1).step()
    with pytest.raises(PlasticlabError, match=r"nn\.Linear"):
        RuleOptimizer(nn.ReLU(), sgd(), lr=0.1)
    with pytest.raises(PlasticlabError, match="valid choices"):
        RuleOptimizer(model, "sgdd", lr=0.1)


def test_backprop_based_signals_use_autograd_deltas():
    """curl with no flips back-propagates the captured output delta through the true weights: it must be
    plain SGD on any loss; with flips, exactly the flipped columns of -grad change sign."""
    from plasticlab.rules import curl

    model, x, y = model_and_data()
    ref = copy.deepcopy(model)
    run(ref, torch.optim.SGD(ref.parameters(), lr=0.1), x, y, loss_fn=nn.functional.l1_loss)
    run(model, RuleOptimizer(model, curl(fraction=0.0), lr=0.1), x, y, loss_fn=nn.functional.l1_loss)
    assert_same(model, ref)
    opt = RuleOptimizer(model, curl(k=2, layers=[0]), lr=0.1)
    opt.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    g = -model[0].weight.grad.clone()
    opt.step()
    s = opt.last_signal[0][0][0]
    assert torch.allclose(s[:, :2], -g[:, :2], atol=1e-12) and torch.allclose(s[:, 2:], g[:, 2:], atol=1e-12)


def test_three_factor_takes_targets_through_step():
    from plasticlab.rules import three_factor

    model, x, y = model_and_data()
    opt = RuleOptimizer(model, three_factor(), lr=0.01)
    model(x)
    with pytest.raises(PlasticlabError, match="targets"):
        opt.step()
    w0 = model[0].weight.detach().clone()
    model(x)
    opt.step(y=y)
    model(x)
    opt.step(y=y)  # the second step has a baseline from the first: a non-zero modulator
    assert not torch.allclose(model[0].weight, w0)
