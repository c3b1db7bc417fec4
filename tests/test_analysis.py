"""Non-gradient analysis: gradient fields have no antisymmetric Jacobian part and no circulation; curl,
DFA and Hebbian fields do; the scalar example of SPEC B.3 is a centre."""

import math

import pytest
import torch

from plasticlab import seeding
from plasticlab.analysis import analyse, loop_test, nongradient_fraction_hutchinson, rule_field, warm_state
from plasticlab.networks.mlp import MLP, init_mlp
from plasticlab.rules import adam, chain, curl, dfa, flip, hebbian, param_noise, sgd, signal_noise, weight_decay
from plasticlab.simulation.curl import curl_step
from plasticlab.tasks import teacher_regression

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def problem():
    net = init_mlp([3], [4, 6, 3], "tanh", bias=True)
    net.biases[0] += 0.1  # non-zero biases: they are held fixed, never part of theta
    x = seeding.normal([3], 11, (24, 4))
    y = seeding.normal([3], 12, (24, 3))
    return net, x, y


@pytest.mark.parametrize(
    "rule",
    [
        chain(sgd()),
        chain(sgd(), weight_decay(0.05)),
        chain(sgd(), param_noise(0.3), signal_noise(0.2), weight_decay(0.05)),
    ],
    ids=["sgd", "sgd+wd", "sgd+noise+wd"],
)
def test_gradient_rules_have_no_curl(problem, rule):
    net, x, y = problem
    F, theta = rule_field(rule, net, x, y, steps=(0, 1))
    a = analyse(F, theta)
    assert a.nongradient_fraction <= 1e-6
    assert a.norm_J > 1e-3  # not vacuously zero
    assert a.max_imag <= 1e-6 * a.norm_J  # symmetric: real spectrum
    assert loop_test(F, theta, planes=3, radius=1e-2).max_abs <= 1e-6
    assert nongradient_fraction_hutchinson(F, theta, probes=4) <= 1e-6


def test_sgd_jacobian_is_minus_hessian_plus_decay(problem):
    """The field is exactly -grad of the batch loss minus gamma theta: its Jacobian is -H - gamma I."""
    net, x, y = problem
    gamma = 0.05
    F, theta = rule_field(chain(sgd(), weight_decay(gamma)), net, x, y)

    def loss(th):
        W = F.unflatten(th)
        out = MLP(W, F.template.biases, "tanh").forward(x).out
        return 0.5 * ((out - y) ** 2).sum(-1).mean()

    H = torch.func.hessian(loss)(theta)
    J = F.jacobian(theta)
    assert torch.allclose(J, -H - gamma * torch.eye(len(theta), dtype=J.dtype), atol=1e-10)


@pytest.mark.parametrize(
    "rule",
    [chain(curl(0.5)), chain(sgd(), flip(k=2, layers=[1]), weight_decay(0.01)), chain(dfa()), chain(hebbian())],
    ids=["curl", "hidden-flip", "dfa", "hebbian"],
)
def test_non_gradient_rules_have_curl(problem, rule):
    net, x, y = problem
    F, theta = rule_field(rule, net, x, y)
    a = analyse(F, theta)
    assert a.nongradient_fraction > 0.05
    assert loop_test(F, theta, planes=4, radius=1e-3).max_abs > 0.01
    # the Hutchinson estimate agrees with the exact ratio to within its sampling spread
    assert abs(nongradient_fraction_hutchinson(F, theta, probes=24) - a.nongradient_fraction) < 0.15


def _scalar(w1, w2, wstar=1.5):
    net = MLP(
        [torch.tensor([[[w1]]], dtype=torch.float64), torch.tensor([[[w2]]], dtype=torch.float64)],
        [None, None],
        "linear",
    )
    x = torch.ones(1, 1, 1, dtype=torch.float64)
    return net, x, wstar * x


def test_scalar_example_saddle_becomes_centre():
    """SPEC B.3: y = w2 w1 x, l = 1/2 (y - w* x)^2, x = 1. GD: saddle at the origin (eigenvalues +-w*);
    flipping w1's update: a centre (+-i w*) with a purely antisymmetric Jacobian."""
    wstar = 1.5
    net, x, y = _scalar(0.0, 0.0, wstar)
    F, th = rule_field(chain(sgd()), net, x, y)
    gd = analyse(F, th)
    assert torch.allclose(gd.eigenvalues.real.sort().values, torch.tensor([-wstar, wstar], dtype=torch.float64))
    assert gd.nongradient_fraction == 0.0
    Fc, th = rule_field(chain(curl(k=[1, 0])), net, x, y)
    J = Fc.jacobian(th)
    assert torch.allclose(J, torch.tensor([[0.0, -wstar], [wstar, 0.0]], dtype=torch.float64))
    c = analyse(Fc, th)
    assert c.nongradient_fraction == pytest.approx(1.0, abs=1e-12)
    ev = c.eigenvalues
    assert torch.allclose(ev.real, torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(ev.imag.abs(), torch.full((2,), wstar, dtype=torch.float64))
    # the whole 2-d space is one plane: the circulation of a small loop is that of a rotation
    u, v = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
    loop = loop_test(Fc, th, radius=1e-4, plane_vectors=[(u, v)])
    assert loop.ratios[0].item() == pytest.approx(1.0, abs=1e-3)
    assert loop.circulations[0].item() == pytest.approx(2 * math.pi * 1e-8 * wstar, rel=1e-3)
    assert abs(loop_test(F, th, radius=1e-4, plane_vectors=[(u, v)]).ratios[0].item()) < 1e-9


def test_flip_field_equals_curl_engine():
    """The MLP flip transform and the curl engine's rule-flipped step are the same field (linear net)."""
    M, N = 5, 4
    W1 = seeding.normal([1], 1, (N, M)) / math.sqrt(M)
    W2 = seeding.normal([1], 2, (1, N)) / math.sqrt(N)
    xb = seeding.normal([1], 3, (10, M))
    yb = seeding.normal([1], 4, (10, 1))
    d1 = torch.tensor([[-1.0, -1.0, 1.0, 1.0, 1.0]])
    d2 = torch.tensor([[-1.0, 1.0, 1.0, 1.0]])
    lr = 0.1
    W1n, W2n = curl_step(W1, W2, xb, yb, d1, d2, lr, "linear")
    net = MLP([W1, W2], [None, None], "linear")
    F, th = rule_field(chain(sgd(), flip(k=[2, 1])), net, xb, yb)
    engine = torch.cat([((W1n - W1) / lr).reshape(-1), ((W2n - W2) / lr).reshape(-1)])
    assert torch.allclose(F(th), engine, atol=1e-12)


def test_warm_state_gives_adam_a_preconditioned_field():
    data = teacher_regression([0], d_in=4, d_out=2, n_train=200, n_val=10, teacher_hidden=(3,))
    net = init_mlp([0], [4, 3, 2], "tanh")
    rule = chain(sgd(), adam())
    state = warm_state(rule, net, data, 0, steps=20, batch_size=32)
    assert state[1][0] == 20  # Adam's step count advanced, weights untouched
    F, th = rule_field(rule, net, data.x_train[:, :64], data.y_train[:, :64], state=state)
    a = analyse(F, th)
    assert 0 < a.nongradient_fraction < 1 and math.isfinite(a.max_real)


def test_loop_test_of_a_field_too_large_to_measure_is_nan_not_an_error():
    """A rotation field of size ~1e200 (finite weights, exploding rule): squares overflow a float, and the
    loop ratio reads NaN instead of raising OverflowError inside a sweep chunk."""
    A = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)

    def F(th):
        return 1e200 * (A @ th)

    res = loop_test(F, torch.tensor([1.0, 2.0], dtype=torch.float64), planes=1, radius=1.0)
    assert torch.isnan(res.ratios).all()
    small = loop_test(lambda th: A @ th, torch.tensor([1.0, 2.0], dtype=torch.float64), planes=1, radius=1.0)
    assert small.max_abs > 0.5  # the same field at a measurable size: a pure rotation
