"""SGD momentum (``"sgd:momentum=μ"``): torch's SGD(momentum=μ, weight_decay=γ) as a chain; plain sgd unchanged."""

import copy

import pytest
import torch
from torch import nn

from plasticlab import PlasticlabError
from plasticlab.rules import chain, get, l2, make_rule, param_noise, sgd, weight_decay
from plasticlab.rules.optim import RuleOptimizer
from plasticlab.rules.transforms import momentum
from test_coupled_l2 import _ctx, _setup, _train_six_steps  # the same tiny ensemble MLP and one-step Context

torch.set_num_threads(1)


def test_chain_sgd_l2_momentum_is_torch_sgd_with_momentum_and_weight_decay():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, y = torch.randn(20, 4, dtype=torch.float64), torch.randn(20, 3, dtype=torch.float64)
    ref = copy.deepcopy(model)
    opts = [
        (ref, torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=0.3)),
        (model, RuleOptimizer(model, chain(sgd(), l2(0.3, biases=True), momentum(0.9)), lr=0.05)),
    ]
    _train_six_steps(opts, x, y)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-10, rtol=0)


def test_sgd_momentum_signal_is_the_data_gradient_and_the_buffer_accumulates():
    net, x, y = _setup()
    gamma, mu = 0.2, 0.9
    rule = make_rule("sgd:momentum=0.9", gamma)
    state = rule.init(net, torch.arange(2))
    grad = chain(sgd()).step((None,), _ctx(net, x, y)).signal
    first = rule.step(state, _ctx(net, x, y))
    second = rule.step(first.state, _ctx(net, x, y, 1))
    for (s, _), (g, _), (u1, _), (u2, _), W in zip(first.signal, grad, first.updates, second.updates, net.weights):
        assert torch.equal(s, g)  # the learning signal is −∂ℓ/∂W: neither the L2 term nor the buffer
        assert torch.allclose(u1, g - gamma * W, atol=1e-12)  # first step: the buffer is the input itself
        assert torch.allclose(u2, mu * (g - gamma * W) + (g - gamma * W), atol=1e-12)  # same batch, same W


def test_plain_sgd_is_unchanged_by_the_momentum_hyperparameter():
    # momentum 0 is the plain chain, bit for bit, with per-member decay and forward noise
    net, x, y = _setup(E=3)
    gammas, sigmas = [0.0, 0.1, 0.5], [0.0, 0.2, 0.1]
    a = make_rule("sgd", gamma=gammas, sigma=sigmas)
    b = chain(sgd(), param_noise(sigmas), weight_decay(gammas))
    sa, sb = a.init(net, torch.arange(3)), b.init(net, torch.arange(3))
    for step in range(3):
        oa, ob = a.step(sa, _ctx(net, x, y, step)), b.step(sb, _ctx(net, x, y, step))
        sa, sb = oa.state, ob.state
        for (ua, _), (ub, _), (ga, _), (gb, _) in zip(oa.updates, ob.updates, oa.signal, ob.signal):
            assert torch.equal(ua, ub) and torch.equal(ga, gb)
    assert [type(p).__name__ for p in a.parts] == [type(p).__name__ for p in b.parts]
    # built without a decay (RuleOptimizer, the curl engine's labels), sgd is the bare signal it always was
    assert [type(p).__name__ for p in get("sgd").build()] == ["SGD"]


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0])
def test_bad_momentum_is_one_line(bad):
    with pytest.raises(PlasticlabError, match="momentum"):
        momentum(bad)
