"""Coupled L2 (adam_l2): torch's Adam(weight_decay=γ) as a chain; its learning signal is the data gradient only."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from plasticlab import PlasticlabError, seeding
from plasticlab.networks import init_mlp
from plasticlab.rules import Context, adam, chain, l2, make_rule, sgd, weight_decay
from plasticlab.rules.optim import RuleOptimizer

torch.set_num_threads(1)


def _ctx(net, x, y, step=0):
    seeds = torch.arange(net.ensemble_size)
    return Context(net=net, trace=net.forward(x), x=x, y=y, loss="mse", seeds=seeds, step=step)


def _setup(E=2):
    seeds = torch.arange(E)
    net = init_mlp(seeds, [4, 6, 5, 3], "tanh")
    x, y = seeding.normal(seeds, 1, (7, 4)), seeding.normal(seeds, 2, (7, 3))
    return net, x, y


def _train_six_steps(opts, x, y):
    """Six MSE steps on alternating halves of (x, y) for each (model, optimizer) pair, so a chain can be
    compared with the torch optimizer it stands for."""
    for m, opt in opts:
        for t in range(6):
            opt.zero_grad()
            nn.functional.mse_loss(m(x[t % 2 :: 2]), y[t % 2 :: 2]).backward()
            opt.step()


def test_chain_sgd_l2_adam_is_torch_adam_with_weight_decay():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, y = torch.randn(20, 4, dtype=torch.float64), torch.randn(20, 3, dtype=torch.float64)
    ref = copy.deepcopy(model)
    opts = [
        (ref, torch.optim.Adam(ref.parameters(), lr=0.01, weight_decay=0.3)),
        (model, RuleOptimizer(model, chain(sgd(), l2(0.3, biases=True), adam()), lr=0.01)),
    ]
    _train_six_steps(opts, x, y)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-10, rtol=0)


def test_adam_l2_signal_is_the_data_gradient_and_l2_is_preconditioned():
    net, x, y = _setup()
    gamma = 0.2
    coupled = make_rule("adam_l2", gamma)
    out = coupled.step(coupled.init(net, torch.arange(2)), _ctx(net, x, y))
    grad = chain(sgd()).step((None,), _ctx(net, x, y)).signal
    for (s, _), (g, _) in zip(out.signal, grad):
        assert torch.equal(s, g)  # learning signal = −∂ℓ/∂W of the data loss: the L2 term is not in it
    # first Adam step is u/(|u| + eps) of its input u: of g − γW here, of g alone (then − γW) when decoupled
    first = lambda u: u / (u.abs() + 1e-8)
    decoupled = make_rule("adam", gamma)
    dec = decoupled.step(decoupled.init(net, torch.arange(2)), _ctx(net, x, y))
    for (u, _), (g, _), (ud, _), W in zip(out.updates, grad, dec.updates, net.weights):
        assert torch.allclose(u, first(g - gamma * W), atol=1e-10)
        assert torch.allclose(ud, first(g) - gamma * W, atol=1e-10)
        assert not torch.allclose(u, ud)


def test_per_member_l2_equals_scalar_runs():
    net, x, y = _setup(E=3)
    gammas = [0.0, 0.1, 0.5]
    rule = make_rule("adam_l2", gamma=gammas)
    state = rule.init(net, torch.arange(3))
    for step in range(3):
        out = rule.step(state, _ctx(net, x, y, step))
        state = out.state
    for e, g in enumerate(gammas):
        one = chain(sgd(), l2(g), adam())
        st = one.init(net, torch.arange(3))
        for step in range(3):
            o = one.step(st, _ctx(net, x, y, step))
            st = o.state
        for (u, _), (u1, _) in zip(out.updates, o.updates):
            assert torch.allclose(u[e], u1[e], atol=1e-12)


def test_decoupled_adam_measured_on_the_gradient_keeps_its_update():
    net, x, y = _setup()
    plain = make_rule("adam", gamma=[0.1, 0.1])
    at_grad = make_rule("adam", gamma=[0.1, 0.1], measure="grad")
    a = plain.step(plain.init(net, torch.arange(2)), _ctx(net, x, y))
    b = at_grad.step(at_grad.init(net, torch.arange(2)), _ctx(net, x, y))
    grad = chain(sgd()).step((None,), _ctx(net, x, y)).signal
    for (ua, _), (ub, _), (sb, _), (g, _) in zip(a.updates, b.updates, b.signal, grad):
        assert torch.equal(ua, ub)
        assert torch.equal(sb, g)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), np.ones((2, 2))])
def test_bad_l2_gamma_is_one_line(bad):
    with pytest.raises(PlasticlabError, match="l2 gamma"):
        l2(bad)


def test_l2_after_adam_is_not_what_adam_l2_means():
    # weight_decay after adam (AdamW) and l2 before it differ after the first step
    net, x, y = _setup(E=1)
    a, b = chain(sgd(), adam(), weight_decay(0.3)), chain(sgd(), l2(0.3), adam())
    ua = a.step(a.init(net, torch.arange(1)), _ctx(net, x, y)).updates[0][0]
    ub = b.step(b.init(net, torch.arange(1)), _ctx(net, x, y)).updates[0][0]
    assert not torch.allclose(ua, ub)
