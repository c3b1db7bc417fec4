import math

import numpy as np
import pytest
import torch

from plasticlab import seeding
from plasticlab.metrics.chaos import QAccumulator, lyapunov_exponent, q_order_parameter


# -- q ---------------------------------------------------------------------------------------------------
def _synthetic(E=3, T=200, n=40, amp=(0.0, 1e-14, 0.3)):
    """Fixed random weights plus sinusoids of amplitude amp[e]: q = (amp²/2) / var(weights)."""
    base = seeding.normal(range(E), 11, (n,))
    phase = seeding.uniform(range(E), 12, (n,)) * 2 * math.pi
    t = torch.arange(T, dtype=torch.float64)
    a = torch.tensor(amp, dtype=torch.float64)[:, None, None]
    return base[:, None, :] + a * torch.sin(2 * math.pi * t[None, :, None] / 20 + phase[:, None, :]), base


def test_q_matches_closed_form_and_separates_converged_from_chaotic():
    traj, base = _synthetic()
    res = q_order_parameter(traj)
    assert res.q[0] == 0.0 and not res.diverged.any()
    expected = torch.tensor([0.0, 1e-28 / 2, 0.09 / 2]) / base.var(dim=1, unbiased=False)
    torch.testing.assert_close(res.q[1:], expected[1:], rtol=0.05, atol=0)  # tiny jitter is resolved
    assert res.q[1] < 1e-25 and res.q[2] > 1e-3


def test_q_flags_diverged_members_and_accepts_single_run():
    traj, _ = _synthetic()
    traj[1, 50, 3] = float("inf")
    res = q_order_parameter(traj.numpy())
    assert res.diverged.tolist() == [False, True, False]
    assert torch.isnan(res.q[1]) and torch.isfinite(res.q[[0, 2]]).all()
    single = q_order_parameter(traj[2])
    assert single.q.ndim == 0 and float(single.q) == pytest.approx(float(res.q[2]), rel=1e-12)


def test_streaming_q_equals_batch_q():
    traj, _ = _synthetic()
    traj[0, 120, 0] = float("nan")
    acc = QAccumulator()
    for t in range(traj.shape[1]):
        acc.update(traj[:, t])
    a, b = acc.result(), q_order_parameter(traj)
    assert a.diverged.tolist() == b.diverged.tolist() == [True, False, False]
    torch.testing.assert_close(a.q[1:], b.q[1:], rtol=1e-6, atol=1e-40)


# -- Lyapunov ----------------------------------------------------------------------------------------------
def test_logistic_map_has_exponent_ln2_batched():
    seeds = list(range(6))
    x0 = 0.1 + 0.8 * seeding.uniform(seeds, 1, (1,))
    res = lyapunov_exponent(lambda x: 4.0 * x * (1.0 - x), x0, 6000, seeds=seeds, renorm_every=1)
    assert res.exponent.shape == (6,)
    assert abs(res.exponent.mean().item() - math.log(2)) < 0.03
    assert (res.exponent > 0.5).all()


def test_contraction_negative_and_neutral_direction_not_positive():
    seeds = [0, 1, 2, 3]
    A = torch.diag(torch.tensor([0.5, 0.8], dtype=torch.float64))
    res = lyapunov_exponent(lambda s: (s[0] @ A,), (torch.ones(4, 2, dtype=torch.float64),), 300, seeds=seeds)
    torch.testing.assert_close(res.exponent, torch.full((4,), math.log(0.8), dtype=torch.float64),
                               rtol=0.02, atol=0)
    # a line of fixed points (eigenvalue 1 tangent, 0.5 across): the exponent must not come out positive,
    # and with dt = lr it is reported per unit time
    B = torch.diag(torch.tensor([1.0, 0.5], dtype=torch.float64))
    res = lyapunov_exponent(lambda s: (s[0] @ B,), (torch.ones(4, 2, dtype=torch.float64),), 2000,
                            seeds=seeds, dt=0.1)
    assert (res.exponent <= 1e-9).all() and (res.exponent > -0.05).all()


def test_member_alone_equals_member_in_batch_and_divergence_is_recorded():
    def step(s):  # member 2 (r = 9) blows up as x -> 3x, the others are logistic
        x, r = s
        return (r * x * (1 - x) * (r < 5) + 3.0 * x * (r >= 5), r)

    seeds = [5, 6, 7]
    x = torch.full((3, 1), 0.3, dtype=torch.float64)
    r = torch.tensor([[4.0], [3.2], [9.0]], dtype=torch.float64)
    seen = []
    full = lyapunov_exponent(step, (x, r), 3000, seeds=seeds, observe=lambda t, s: seen.append(t))
    assert seen == list(range(1, 3001))
    assert full.diverged.tolist() == [False, False, True] and torch.isnan(full.exponent[2])
    assert full.exponent[0] > 0.5 and full.exponent[1] < 0  # r = 3.2 is a stable 2-cycle
    assert torch.isfinite(full.state[0]).all()
    alone = lyapunov_exponent(step, (x[1:2], r[1:2]), 3000, seeds=seeds[1:2])
    assert alone.exponent[0].item() == full.exponent[1].item()


def test_measure_removes_transient_growth_along_a_non_normal_line_of_fixed_points():
    # x -> J x with J = [[1, 50], [0, 0.5]]: e1 is a line of fixed points, the transverse direction contracts
    # by 0.5 but feeds e1 strongly, so in the full norm a short window comes out spuriously positive
    J = torch.tensor([[1.0, 50.0], [0.0, 0.5]], dtype=torch.float64)
    x0, seeds = torch.zeros(3, 2, dtype=torch.float64), [0, 1, 2]
    step = lambda s: (s[0] @ J.T,)  # noqa: E731
    plain = lyapunov_exponent(step, (x0,), 100, seeds=seeds)
    assert (plain.exponent > 0).all()
    transverse = lyapunov_exponent(step, (x0,), 100, seeds=seeds, measure=lambda sep, ref: sep[0][:, 1].abs())
    torch.testing.assert_close(transverse.exponent, torch.full((3,), math.log(0.5), dtype=torch.float64))
