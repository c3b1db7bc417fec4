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
    torch.testing.assert_close(
        res.exponent, torch.full((4,), math.log(0.8), dtype=torch.float64), rtol=0.02, atol=0
    )
    # a line of fixed points (eigenvalue 1 tangent, 0.5 across): the exponent must not come out positive,
    # and with dt = lr it is reported per unit time
    B = torch.diag(torch.tensor([1.0, 0.5], dtype=torch.float64))
    res = lyapunov_exponent(
        lambda s: (s[0] @ B,), (torch.ones(4, 2, dtype=torch.float64),), 2000, seeds=seeds, dt=0.1
    )
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
    step = lambda s: (s[0] @ J.T,)
    plain = lyapunov_exponent(step, (x0,), 100, seeds=seeds)
    assert (plain.exponent > 0).all()
    transverse = lyapunov_exponent(step, (x0,), 100, seeds=seeds, measure=lambda sep, ref: sep[0][:, 1].abs())
    torch.testing.assert_close(transverse.exponent, torch.full((3,), math.log(0.5), dtype=torch.float64))
    both = lyapunov_exponent(
        step,
        (x0,),
        100,
        seeds=seeds,
        measure=lambda sep, ref: torch.stack([sep[0][:, 1].abs(), sep[0].norm(dim=1)], 1),
    )
    assert both.exponent.shape == (3, 2)
    torch.testing.assert_close(both.exponent, torch.stack([transverse.exponent, plain.exponent], 1))


# -- curl-chaos experiment ---------------------------------------------------------------------------------
def test_moment_matched_data_gives_the_full_batch_linear_step():
    from plasticlab.experiments.curl_chaos import moment_matched
    from plasticlab.simulation.curl import curl_step, flips

    seeds, M, N, P = [0, 1], 5, 7, 40
    X = seeding.normal(seeds, 1, (P, M))
    Y = X @ seeding.normal(seeds, 2, (M, 1))
    W1, W2 = seeding.normal(seeds, 3, (N, M)), seeding.normal(seeds, 4, (1, N))
    Xr, Yr = moment_matched(X, Y)
    assert Xr.shape == (2, M, M)
    args = (flips([2, 3], M), flips([1, 0], N), 0.1, "linear")
    for a, b in zip(curl_step(W1, W2, X, Y, *args), curl_step(W1, W2, Xr, Yr, *args)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_shapes_and_chunks_follow_the_spec():
    from plasticlab.experiments import get
    from plasticlab.experiments.curl_chaos import shape_for

    assert [shape_for(c) for c in (0.3, 0.4, 0.5)] == [(50, 169), (62, 157), (73, 146)]
    exp = get("curl-chaos")
    p = exp.params(quick=True, cs=[0.4], alphas=[0.1], c_grid=[0.4, 1.0], c_alphas=[0.5])
    chunks = exp.chunks(p)
    assert [(ch["c"], ch["M"], ch["alphas"]) for ch in chunks] == [(0.4, 62, [0.1, 0.5]), (1.0, 109, [0.5])]
    from plasticlab.errors import PlasticlabError

    with pytest.raises(PlasticlabError, match="activation"):
        exp.params(activation="sigmoid")
    with pytest.raises(PlasticlabError, match="record"):
        exp.params(epochs=10, record=20)


def test_gd_from_teacher_stays_converged_and_full_flips_leave_the_manifold():
    from plasticlab.experiments.curl_chaos import run_members

    kw = dict(epochs=200, record=100, P=40)
    df = run_members(6, 14, [0.0, 1.0, 0.0], [0, 0, 1], **kw)
    assert list(df.columns[:6]) == ["M", "N", "alpha_h", "k1", "alpha_h_eff", "seed"]
    gd, flipped = df.iloc[0], df.iloc[1]
    assert gd.q < 1e-20 and gd.lyapunov < 0 and gd.train_error < 1e-20
    # c = 6/14: with every input flipped A = -‖W2‖² I + W1ᵀW1 is indefinite, so the manifold repels
    assert flipped.lyapunov > 0 and flipped.q > 1e3 * gd.q
    # a member alone equals itself in a batch (up to BLAS rounding, which q resolves at the 1e-32 level)
    alone = run_members(6, 14, [1.0, 0.0], [0, 1], **kw)
    np.testing.assert_allclose(alone[["q", "lyapunov"]].iloc[0], df[["q", "lyapunov"]].iloc[1], rtol=1e-6)
    np.testing.assert_allclose(alone.lyapunov[1], df.lyapunov[2], rtol=1e-6)
    assert alone.q[1] < 1e-25 and df.q[2] < 1e-25
    assert not df.diverged.any()


def test_report_is_written_from_the_table(tmp_path):
    import plasticlab

    df = plasticlab.run(
        "curl-chaos",
        quick=True,
        out=tmp_path,
        cs=[0.05],
        alphas=[0.0, 1.0],
        c_grid=[0.05],
        c_alphas=[1.0],
        epochs=120,
        record=40,
    )
    assert set(df.columns) >= {"c", "alpha_h", "seed", "q", "lyapunov", "M", "N", "diverged"}
    text = (tmp_path / "report.md").read_text()
    assert "## Verdicts" in text and "q and λ agree" in text
    assert (tmp_path / "chaos_vs_alpha.png").exists() and (tmp_path / "chaos_vs_c.png").exists()


def test_warmup_removes_the_alignment_bias_of_a_short_window():
    # x -> diag(0.3, 0.9) x from a random direction: counting the first steps mixes in the 0.3 direction
    # (and the random start's small share of the leading one), so a 10-step window comes out below log 0.9;
    # after a warm-up the separation lies along the leading direction and the window is exact
    A = torch.diag(torch.tensor([0.3, 0.9], dtype=torch.float64))
    step = lambda s: (s[0] @ A,)
    x0, seeds = torch.zeros(8, 2, dtype=torch.float64), list(range(8))
    seen = []
    cold = lyapunov_exponent(step, (x0,), 10, seeds=seeds, renorm_every=5)
    warm = lyapunov_exponent(
        step, (x0,), 10, seeds=seeds, renorm_every=5, warmup=40, observe=lambda t, s: seen.append(t)
    )
    assert seen == list(range(1, 11))  # only the counted window is observed
    assert (cold.exponent < math.log(0.9) - 1e-3).any()
    torch.testing.assert_close(warm.exponent, torch.full((8,), math.log(0.9), dtype=torch.float64))
    with pytest.raises(ValueError, match="warmup"):
        lyapunov_exponent(step, (x0,), 10, seeds=seeds, warmup=-1)
