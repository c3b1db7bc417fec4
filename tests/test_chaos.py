import math

import numpy as np
import pandas as pd
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
def test_moment_form_in_the_reduced_basis_is_the_full_batch_step():
    # the curl engine's reference step on all P samples vs ours on (Σ̂, v*), in the full and the reduced basis
    from plasticlab.simulation import chaos as sim
    from plasticlab.simulation.curl import curl_step, flips

    M, N, P, seeds = 6, 14, 40, [0, 1]
    W1, W2, Sigma, vstar = sim.start(M, N, seeds, P=P, start="gaussian", perturbation=1e-2)
    X = seeding.normal(seeds, 5, (P, M))
    Sigma = X.transpose(1, 2) @ X / P
    Y = X @ vstar.transpose(1, 2)
    norms = sim.layer_norms(W1, W2)
    A, b, u = sim.reduce(W1, W2)
    assert A.shape == (2, M + 1, M) and b.shape == (2, 1, M + 1)
    d1, lr = sim.flip_diagonal([2, 6], M), sim.as_lr([0.1, 0.05])
    ref, full, red = (W1, W2), (W1, W2), (A, b)
    acc_full, acc_red = QAccumulator(), QAccumulator()
    for _ in range(30):
        ref = curl_step(
            *ref,
            X,
            Y,
            flips([2, 6], M),
            flips([0, 0], N),
            lr.reshape(-1),
            "linear",
            norms=(norms[0].reshape(-1), norms[1].reshape(-1)),
        )
        full = sim.step(full, Sigma, vstar, d1, lr, norms)
        red = sim.step(red, Sigma, vstar, d1, lr, norms)
        acc_full.update(torch.cat([full[0].reshape(2, -1), full[1].reshape(2, -1)], 1))
        acc_red.update(torch.cat([red[0].reshape(2, -1), red[1].reshape(2, -1)], 1))
    for a, b_ in zip(ref, full):
        torch.testing.assert_close(a, b_, rtol=0, atol=1e-12)
    torch.testing.assert_close(red[1] @ red[0], full[1] @ full[0], rtol=0, atol=1e-12)  # the function
    coef = torch.cat([u[:, :, None].expand(2, M + 1, M).reshape(2, -1), u], 1)
    torch.testing.assert_close(
        acc_red.result(sim.weight_count(M, N), coef).q, acc_full.result().q, rtol=1e-9, atol=0
    )


def test_authors_start_and_step_bookkeeping():
    from plasticlab.simulation import chaos as sim
    from plasticlab.simulation.curl import CurlConfig, initial_state

    cfg = CurlConfig(
        M=6, N=14, activation="linear", P=40, B=40, init="teacher", perturbation=0.0, balanced_teacher=True
    )
    T1, T2 = initial_state(cfg, torch.tensor([3]), torch.ones(1), torch.float64)[:2]
    W1, W2, _, vstar = sim.start(6, 14, [3], P=40)
    assert torch.equal(W1, T1) and torch.equal(vstar, T2 @ T1)  # W1 = teacher exactly
    torch.testing.assert_close(W2 - T2, torch.full_like(W2, 1e-10), rtol=1e-5, atol=0)  # + 1e-10 on every entry
    assert torch.linalg.vector_norm(W1).item() == pytest.approx(math.sqrt(14), rel=1e-12)
    g1, g2, _, _ = sim.start(6, 14, [3], P=40, start="gaussian")
    assert not torch.equal(g1, T1) and (g1 - T1).abs().max() < 1e-8 and (g2 - T2).std() > 1e-12
    assert [sim.k1_of(a, 62) for a in (0.05, 0.3, 0.6)] == [3, 18, 37]  # int(α·M), truncated
    assert sim.steps_for(1000, 0.1) == 1000 and sim.steps_for(1000, 0.02) == 5000
    with pytest.raises(ValueError, match="start"):
        sim.start(6, 14, [3], start="random")


def _rotating(E, T, n, speed):
    """Trajectories θ(t) = R(speed·t) θ0 in the (0, 1) plane: a regular motion, constant norm."""
    theta0 = seeding.normal(range(E), 7, (n,))
    out = []
    for t in range(T):
        c, s = math.cos(speed * t), math.sin(speed * t)
        x = theta0.clone()
        x[:, 0], x[:, 1] = c * theta0[:, 0] - s * theta0[:, 1], s * theta0[:, 0] + c * theta0[:, 1]
        out.append(x)
    return out


def _window(states, function):
    from plasticlab.metrics.chaos import RecurrenceTracker

    q, qf, rec = QAccumulator(), QAccumulator(), RecurrenceTracker()
    for th in states:
        q.update(th), qf.update(function(th)), rec.update(th)
    two, one = rec.result()
    return q.result().q.numpy(), qf.result().q.numpy(), two.numpy(), one.numpy()


def test_each_state_on_a_constructed_case():
    from plasticlab.metrics.chaos import classify_state

    E, T, n = 2, 200, 12
    rounding = [s + 1e-16 * seeding.normal(range(E), 100 + t, (n,)) for t, s in enumerate(_rotating(E, T, n, 0))]
    flip = [torch.cat([s[:, :6], (-1) ** t * s[:, 6:]], 1) for t, s in enumerate(_rotating(E, T, n, 0))]
    rotating = _rotating(E, T, n, 0.05)
    # a "function" the rotation leaves fixed (as W2W1 under the hidden-layer rotation), and one it moves
    norm_only = lambda th: torch.cat([th[:, :2].norm(dim=1, keepdim=True), th[:, 2:]], 1)
    first = lambda th: th[:, :2]
    logistic = lyapunov_exponent(
        lambda x: 4.0 * x * (1.0 - x),
        0.1 + 0.8 * seeding.uniform(range(E), 1, (1,)),
        2000,
        seeds=list(range(E)),
        renorm_every=1,
    ).exponent.numpy()
    ok = np.zeros(E, bool)
    cases = {
        "converged": (_window(rounding, first), np.full(E, -0.1), ok),
        "period-2": (_window(flip, first), np.full(E, -0.1), ok),
        "drift": (_window(rotating, norm_only), np.zeros(E), ok),
        "oscillating": (_window(rotating, first), np.zeros(E), ok),
        "irregular": (_window(rotating, first), logistic, ok),
        "diverged": (_window(rotating, first), np.zeros(E), ~ok),
    }
    for want, ((q, qf, two, one), lam, div) in cases.items():
        assert classify_state(div, q, qf, two, one, lam).tolist() == [want] * E, want


def test_run_members_states_and_batch_invariance():
    from plasticlab.simulation.chaos_run import run_members

    kw = dict(epochs=600, record=100, lyap_window=200, lyap_warmup=100, P=40)
    df = run_members(6, 14, [0.0, 1.0, 0.0], [0, 0, 1], [0.1] * 3, **kw)
    assert {"eta", "steps", "q", "q_function", "lyapunov", "state"} <= set(df.columns)
    gd, flipped = df.iloc[0], df.iloc[1]
    assert gd.state == "converged" and gd.q < 1e-20 and gd.lyapunov < 0 and gd.train_error < 1e-20
    # c = 6/14 with every input flipped: A = -‖W2‖² I + W1ᵀW1 is indefinite, the manifold repels
    assert flipped.state != "converged" and flipped.q > 1e3 * gd.q
    alone = run_members(6, 14, [1.0], [0], [0.1], **kw)
    np.testing.assert_allclose(alone[["q", "lyapunov"]].iloc[0], df[["q", "lyapunov"]].iloc[1], rtol=1e-6)
    slow = run_members(6, 14, [0.0], [0], [0.02], **kw)
    assert slow.steps.iloc[0] == 3000 and slow.state.iloc[0] == "converged"
    with pytest.raises(ValueError, match="step count"):
        run_members(6, 14, [0.0, 0.0], [0, 1], [0.1, 0.02], **kw)


def test_chunks_per_c_and_eta_and_validation():
    from plasticlab.errors import PlasticlabError
    from plasticlab.experiments import get
    from plasticlab.experiments.curl.chaos import shape_for

    assert [shape_for(c) for c in (0.3, 0.4, 0.5)] == [(50, 169), (62, 157), (73, 146)]
    exp = get("curl-chaos")
    p = exp.params(
        quick=True, cs=[0.4], alphas=[0.1], c_grid=[0.4, 1.0], c_alphas=[0.5], etas=[0.1, 0.02], step_alphas=[0.2]
    )
    got = [(ch.c, ch.eta, ch.alphas) for ch in exp.chunks(p)]
    # the first η: the cs at every α_h plus the q-vs-c grid; later η (the step-size sweep): the cs at step_alphas
    assert got == [(0.4, 0.1, [0.1, 0.5]), (1.0, 0.1, [0.5]), (0.4, 0.02, [0.2])]
    with pytest.raises(PlasticlabError, match="start"):
        exp.params(start="random")
    with pytest.raises(PlasticlabError, match="record"):
        exp.params(record=10**6)
    with pytest.raises(PlasticlabError, match="etas"):
        exp.params(etas=[0.1, -1.0])


def _table(states, eta=0.1, c=0.4, alpha=0.6):
    n = len(states)
    q = {"converged": 1e-30, "period-2": 1 / 157, "drift": 0.02, "irregular": 0.05, "oscillating": 0.03}
    return pd.DataFrame(
        dict(
            c=c,
            M=62,
            N=157,
            alpha_h=alpha,
            k1=int(alpha * 62),
            alpha_h_eff=int(alpha * 62) / 62,
            seed=range(n),
            eta=eta,
            q=[q[s] for s in states],
            q_function=[1e-30 if s in ("converged", "drift") else 1.0 for s in states],
            period2_residual=[0.0 if s == "period-2" else 1e-2 for s in states],
            step_change=[0.1 if s != "converged" else 0.0 for s in states],
            lyapunov=[0.01 if s == "irregular" else -1e-3 for s in states],
            train_error=0.2,
            diverged=False,
        )
    )


def test_claims_read_the_state_mix():
    from plasticlab.experiments import get

    exp = get("curl-chaos")
    p = exp.params(quick=True)
    below = _table(["converged"] * 3, alpha=0.05)
    regular = pd.concat([below, _table(["period-2", "drift", "drift"])], ignore_index=True)
    chaotic = pd.concat([below, _table(["irregular"] * 3, eta=0.02)], ignore_index=True)
    got = {c.claim.split(":")[0]: c for c in exp.claims(regular, p)}
    assert got["q plateau above threshold"].verdict == "reproduced"
    assert got["the plateau is chaos at η = 0.1"].verdict == "not reproduced"
    assert "period-2 1" in got["the plateau is chaos at η = 0.1"].note
    got = {c.claim.split(":")[0]: c for c in exp.claims(chaotic, p)}
    assert got["the plateau is chaos at η = 0.02"].verdict == "reproduced"
    assert got["finite N (M = 62, N = 157, η = 0.1)"].verdict == "not run"


def test_q_vs_c_claim_reads_the_grid_on_both_sides_of_the_threshold():
    from plasticlab.experiments import get

    exp = get("curl-chaos")
    p = exp.params(quick=True, c_grid=[0.4], c_alphas=[0.05, 0.6])
    plateau = pd.concat([_table(["converged"] * 3, alpha=0.05), _table(["irregular"] * 3)], ignore_index=True)
    flat = pd.concat([_table(["converged"] * 3, alpha=0.05), _table(["converged"] * 3)], ignore_index=True)
    [claim] = [c for c in exp.claims(plateau, p) if c.claim.startswith("q vs c")]
    assert claim.verdict == "reproduced" and claim.n == 2 and "c=0.4 α_h=0.597" in claim.note
    [claim] = [c for c in exp.claims(flat, p) if c.claim.startswith("q vs c")]
    assert claim.verdict == "partly" and claim.ours == 0.5  # the cell below holds, the one above fails


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
        record=20,
        lyap_window=40,
        lyap_warmup=20,
        etas=[0.1],
    )
    assert set(df.columns) >= {"c", "alpha_h", "seed", "eta", "steps", "q", "q_function", "lyapunov", "state"}
    text = (tmp_path / "report.md").read_text()
    assert "## Verdicts" in text and "the plateau is chaos at η = 0.1" in text
    assert (tmp_path / "chaos_vs_alpha.png").exists() and (tmp_path / "state_mix.png").exists()


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


def test_state_mix_figure_keeps_its_legend_off_the_bars_and_counts_whole_runs():
    from plasticlab.study import get

    exp = get("curl-chaos")
    p = exp.params(quick=True)
    df = pd.concat([_table(["converged"], alpha=0.05), _table(["irregular", "drift"])], ignore_index=True)
    df["error_swing_decay"] = 0.0
    [fig] = [f.fig for f in exp.figures(df, p) if f.name == "state_mix"]
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    fig.canvas.draw()
    ticks = fig.axes[0].get_yticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
