"""RuleOptimizer on MLPs: the sgd chain is torch's SGD, sgd+adam+decay is AdamW, local rules run on a user
model, DFA reads the output error torch computed (tests/test_rule_graph.py: conv nets, residual blocks,
attention)."""

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


def test_state_dict_round_trips_adam_moments_and_running_states():
    import io

    from plasticlab.rules import bcm

    for rule in (chain(sgd(), adam(), weight_decay(1e-3)), chain(dfa(), adam()), bcm()):
        model, x, y = model_and_data()
        opt = RuleOptimizer(model, rule, lr=0.01)
        run(model, opt, x, y, steps=3)
        assert opt.state["step"] == 3
        buf = io.BytesIO()
        torch.save(opt.state_dict(), buf)
        twin = copy.deepcopy(model)
        opt2 = RuleOptimizer(twin, rule, lr=0.01)
        opt2.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))  # torch's safe (weights_only) load
        run(model, opt, x, y, steps=2)
        run(twin, opt2, x, y, steps=2)
        assert_same(model, twin, tol=0)
        fresh = copy.deepcopy(twin)
        run(fresh, RuleOptimizer(fresh, rule, lr=0.01), x, y, steps=1)  # without the state: not the same
        if not isinstance(rule, type(bcm())):
            assert not torch.equal(next(fresh.parameters()), next(twin.parameters()))


def test_every_param_group_is_honoured():
    model, x, y = model_and_data()
    ref = copy.deepcopy(model)
    first, last = [p for p in ref[0].parameters()], [p for p in ref[4].parameters()]
    run(ref, torch.optim.SGD([dict(params=first, lr=0.3), dict(params=last)], lr=0.1), x, y)
    groups = [dict(params=list(model[0].parameters()), lr=0.3), dict(params=list(model[4].parameters()))]
    w_mid = model[2].weight.detach().clone()
    run(model, RuleOptimizer(model, sgd(), lr=0.1, params=groups), x, y)
    assert_same(model, ref, tol=1e-12)
    assert torch.equal(model[2].weight, w_mid)  # in no group: left alone, as torch does
    opt = RuleOptimizer(model, sgd(), lr=0.1)
    opt.param_groups[0]["lr"] = 0.0  # a scheduler's change is read at the next step
    before = model[0].weight.detach().clone()
    run(model, opt, x, y, steps=1)
    assert torch.equal(model[0].weight, before)
    with pytest.raises(PlasticlabError, match="momentum"):
        RuleOptimizer(model, sgd(), lr=0.1, params=[dict(params=list(model.parameters()), momentum=0.9)])
    with pytest.raises(PlasticlabError, match="not in the model"):
        RuleOptimizer(model[0], sgd(), lr=0.1, params=list(model.parameters()))


def test_forward_perturbing_pieces_are_refused_by_tag():
    from plasticlab.rules import Signal, register, unregister

    class Jitter(Signal):
        name, perturbs_forward = "jitter", True

        def update(self, updates, state, ctx):
            return ctx.descent(ctx.backprop(ctx.output_delta())), state

    model, _x, _y = model_and_data()
    with pytest.raises(PlasticlabError, match="jitter perturbs the forward pass"):
        RuleOptimizer(model, Jitter(), lr=0.1)
    RuleOptimizer(model, chain(sgd(), param_noise(0.0)), lr=0.1)  # σ = 0 leaves the forward pass alone
    register("jitter_t", Jitter, gradient=False, local=False, needs_targets=True, perturbs_forward=True)
    try:
        with pytest.raises(PlasticlabError, match="perturbs the forward pass"):
            RuleOptimizer(model, "jitter_t", lr=0.1)
    finally:
        unregister("jitter_t")


def _token_wise_model():
    """A first layer applied per token (3 rows per sample) and an output over the flattened tokens (1 row)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(9, 2)).double()
    return model, torch.randn(5, 3, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)


@pytest.mark.parametrize("rule", ["dfa", "fa", "sign_symmetry"])
def test_feedback_rules_run_on_a_token_wise_model(rule):
    model, x, y = _token_wise_model()
    before = [p.clone() for p in model.parameters()]
    opt = RuleOptimizer(model, rule, lr=0.01)
    nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_chain_rules_on_a_token_wise_model_name_the_layer_and_what_runs():
    model, x, y = _token_wise_model()
    opt = RuleOptimizer(model, "random_nn", lr=0.01)
    nn.functional.mse_loss(model(x), y).backward()
    with pytest.raises(PlasticlabError, match=r"layer\(s\) '0' \(15 rows\) see different numbers.*hebbian"):
        opt.step()


def test_any_model_rules_are_the_ones_that_run_there():
    from plasticlab.rules.optim import any_model_rules

    names = list(any_model_rules())
    assert {"sgd", "adam", "adam_l2", "hebbian", "oja", "exp_grad", "dfa", "fa", "sign_symmetry"} <= set(names)
    assert not {"random_nn", "three_factor"} & set(names)
    for rule in ["hebbian", "exp_grad"]:
        model, x, y = _token_wise_model()
        before = [p.clone() for p in model.parameters()]
        opt = RuleOptimizer(model, rule, lr=0.01)
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
