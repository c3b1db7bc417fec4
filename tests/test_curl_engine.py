"""Sign conventions of SPEC B.2, the norm constraint, the fused simulator and its ensemble semantics."""

import math

import numpy as np
import pytest
import torch

from plasticlab import seeding
from plasticlab.errors import PlasticlabError
from plasticlab.simulation.curl import (
    CurlConfig,
    _key,
    curl_forward,
    curl_step,
    flips,
    grid,
    initial_state,
    simulate,
)

D = torch.float64
E, B, M, N = 3, 5, 4, 6


@pytest.fixture
def net():
    g = torch.Generator().manual_seed(0)
    W1 = torch.randn(E, N, M, dtype=D, generator=g)
    W2 = torch.randn(E, 1, N, dtype=D, generator=g)
    x = torch.randn(E, B, M, dtype=D, generator=g)
    y = torch.randn(E, B, 1, dtype=D, generator=g)
    return W1, W2, x, y


def ones(n):
    return torch.ones(E, n, dtype=D)


def autograd_grads(W1, W2, x, y, act, output_phi_grad=True):
    A, C = W1.clone().requires_grad_(), W2.clone().requires_grad_()
    phi = {"linear": lambda t: t, "tanh": torch.tanh}[act]
    z = phi(x @ A.transpose(1, 2)) @ C.transpose(1, 2)
    # straight-through output: value phi(z), derivative 1 — the "output delta omits phi'" convention
    out = phi(z) if output_phi_grad else z + (phi(z) - z).detach()
    loss = (0.5 * (out - y).pow(2).mean(dim=(1, 2))).sum()
    return torch.autograd.grad(loss, [A, C])


@pytest.mark.parametrize("act", ["linear", "tanh"])
def test_gd_is_minus_lr_times_gradient(net, act):
    W1, W2, x, y = net
    lr = torch.tensor([0.1, 0.01, 0.3], dtype=D)
    g1, g2 = autograd_grads(W1, W2, x, y, act, output_phi_grad=(act == "linear"))
    n1, n2 = curl_step(W1, W2, x, y, ones(M), ones(N), lr, act)
    torch.testing.assert_close(n1, W1 - lr[:, None, None] * g1, rtol=0, atol=1e-13)
    torch.testing.assert_close(n2, W2 - lr[:, None, None] * g2, rtol=0, atol=1e-13)


def test_output_delta_omits_phi_prime(net):
    W1, W2, x, y = net
    _n1, n2 = curl_step(W1, W2, x, y, ones(M), ones(N), 1.0, "tanh")
    _g1, g2 = autograd_grads(W1, W2, x, y, "tanh", output_phi_grad=True)
    assert not torch.allclose(n2, W2 - g2)  # the full gradient would include tanh' at the output
    h = torch.tanh(x @ W1.transpose(1, 2))
    e = torch.tanh(h @ W2.transpose(1, 2)) - y
    torch.testing.assert_close(n2 - W2, -(e.transpose(1, 2) @ h) / B)


def test_readout_flips_columns_of_w2_only(net):
    W1, W2, x, y = net
    d2 = flips([2, 0, 6], N, D)
    g1, g2 = curl_step(W1, W2, x, y, ones(M), ones(N), 0.1, "tanh")
    c1, c2 = curl_step(W1, W2, x, y, ones(M), d2, 0.1, "tanh")
    torch.testing.assert_close(c2 - W2, (g2 - W2) * d2[:, None, :])
    assert ((c2 - W2)[0, 0, :2] == -(g2 - W2)[0, 0, :2]).all() and ((c2 - g2)[1] == 0).all()
    # the error reaches W1 through the true (unflipped) W2: ΔW1 is untouched by D2
    torch.testing.assert_close(c1, g1, rtol=0, atol=0)


def test_hidden_flips_columns_of_w1_only(net):
    W1, W2, x, y = net
    d1 = flips([1, 3, 0], M, D)
    g1, g2 = curl_step(W1, W2, x, y, ones(M), ones(N), 0.1, "relu")
    c1, c2 = curl_step(W1, W2, x, y, d1, ones(N), 0.1, "relu")
    torch.testing.assert_close(c1 - W1, (g1 - W1) * d1[:, None, :])
    assert torch.equal((c1 - W1)[1, :, 3], (g1 - W1)[1, :, 3])  # input 3 of member 1 not flipped
    torch.testing.assert_close(c2, g2, rtol=0, atol=0)


def test_backprop_uses_true_w2_and_dfa_replaces_it(net):
    W1, W2, x, y = net
    bp = curl_step(W1, W2, x, y, ones(M), ones(N), 0.1, "tanh")
    same = curl_step(W1, W2, x, y, ones(M), ones(N), 0.1, "tanh", feedback=W2.transpose(1, 2))
    torch.testing.assert_close(bp[0], same[0], rtol=0, atol=0)
    F = torch.randn(E, N, 1, dtype=D)
    dfa = curl_step(W1, W2, x, y, ones(M), ones(N), 0.1, "tanh", feedback=F)
    assert not torch.allclose(dfa[0], bp[0])
    torch.testing.assert_close(dfa[1], bp[1])  # the readout update never uses feedback


def test_norm_constraint_restores_frobenius_norms(net):
    W1, W2, x, y = net
    n1, n2 = torch.tensor([1.0, 2.0, 3.0], dtype=D), torch.tensor([0.5, 1.0, 4.0], dtype=D)
    a, b = curl_step(W1, W2, x, y, flips([1, 2, 0], M, D), ones(N), 0.5, "tanh", norms=(n1, n2))
    torch.testing.assert_close(torch.linalg.vector_norm(a, dim=(1, 2)), n1)
    torch.testing.assert_close(torch.linalg.vector_norm(b, dim=(1, 2)), n2)


def test_bad_activation_names_choices(net):
    with pytest.raises(PlasticlabError, match="relu"):
        curl_step(*net, ones(M), ones(N), 0.1, "sigmoid")


# -- simulator ---------------------------------------------------------------------------------------
def small_cfg(**kw):
    base = dict(M=6, N=4, activation="tanh", P=20, B=5, epochs=6, points_per_decade=4, n_test=7)
    base.update(kw)
    return CurlConfig(**base)


@pytest.mark.parametrize("norm", [True, False])
def test_fused_simulator_equals_repeated_curl_step(norm):
    cfg = small_cfg(norm_constraint=norm)
    seeds, k1, k2 = [3, 4], [2, 0], [1, 3]
    res = simulate(cfg, seeds, k1=k1, k2=k2, init_scale=[2.0, 1.0], rule="gd_flip")
    st = torch.tensor(seeds)
    W1, W2, X, Y, *_ = initial_state(cfg, st, torch.tensor([2.0, 1.0]), D)
    norms = (torch.linalg.vector_norm(W1, dim=(1, 2)), torch.linalg.vector_norm(W2, dim=(1, 2))) if norm else None
    d1, d2 = flips(k1, cfg.M, D), flips(k2, cfg.N, D)
    for ep in range(1, cfg.epochs + 1):
        perm = seeding.permutation(st, _key("shuffle") + ep, cfg.P)
        Xs = torch.gather(X, 1, perm[:, :, None].expand(-1, -1, cfg.M))
        Ys = torch.gather(Y, 1, perm[:, :, None])
        for s in range(0, cfg.P, cfg.B):
            W1, W2 = curl_step(
                W1,
                W2,
                Xs[:, s : s + cfg.B],
                Ys[:, s : s + cfg.B],
                d1,
                d2,
                cfg.eta * cfg.B / cfg.P,
                "tanh",
                norms=norms,
            )
    torch.testing.assert_close(res.W1, W1, rtol=0, atol=1e-12)
    torch.testing.assert_close(res.W2, W2, rtol=0, atol=1e-12)


def test_member_alone_equals_member_in_batch():
    cfg = small_cfg(activation="relu")
    g = grid(seeds=[0, 1, 2], k1s=[0, 2], k2s=[1], rules=["gd", "gd_flip", "dfa_uniform", "dfa_uniform_flip"])
    batch = simulate(cfg, **g)
    i = 22  # some mixed member: check it is DFA+flips so the masked feedback path is exercised
    assert g["rule"][i] == "dfa_uniform_flip" and g["k1"][i] == 2
    alone = simulate(cfg, [g["seeds"][i]], k1=g["k1"][i], k2=g["k2"][i], rule=g["rule"][i])
    torch.testing.assert_close(alone.W1[0], batch.W1[i], rtol=0, atol=1e-13)
    np.testing.assert_allclose(alone.test_error[0], batch.test_error[i], rtol=1e-12)
    # different rules with the same seed share teacher and data but differ in their updates
    assert not torch.allclose(batch.W1[0], batch.W1[6])


@pytest.mark.parametrize("B", [5, 20])  # 20 = full batch: the moment-based linear path
def test_divergence_is_recorded_and_isolated(B):
    cfg = small_cfg(norm_constraint=False, activation="linear", epochs=30, points_per_decade=8, B=B)
    ok = simulate(cfg, [0, 1], eta=[0.1, 0.1])
    bad = simulate(cfg, [0, 5, 1], eta=[0.1, 1e6, 0.1])
    assert bad.diverged.tolist() == [False, True, False]
    assert 1 <= bad.diverged_at[1] <= 30 and np.isnan(bad.diverged_at[[0, 2]]).all()
    assert np.isnan(bad.table().test_error[1]) and np.isnan(bad.peak_train_error[1])
    torch.testing.assert_close(bad.W1[[0, 2]], ok.W1, rtol=0, atol=1e-13)
    np.testing.assert_allclose(bad.test_error[[0, 2]], ok.test_error, rtol=1e-12)
    assert torch.isfinite(bad.W1).all()


def test_threshold_epoch_is_first_checkpoint_below_and_teacher_init_converged():
    cfg = small_cfg(
        activation="linear",
        B=20,
        P=20,
        epochs=200,
        points_per_decade=12,
        threshold=1e-2,
        norm_constraint=False,
        eta=1.0,
    )
    r = simulate(cfg, [0, 1, 2])
    for e in range(3):
        below = np.flatnonzero(r.train_error[e] < 1e-2)
        assert (
            (r.epochs_to_threshold[e] == r.checkpoints[below[0]])
            if len(below)
            else np.isnan(r.epochs_to_threshold[e])
        )
    assert (r.train_error[:, -1] < r.train_error[:, 0]).all()
    t = simulate(CurlConfig(**{**cfg.__dict__, "init": "teacher", "perturbation": 1e-12}), [0])
    assert t.train_error[0, 0] < 1e-20 and t.epochs_to_threshold[0] == 0


def test_record_last_keeps_final_weights():
    r = simulate(small_cfg(record_last=3), [0, 1], k1=1, rule="gd_flip")
    assert r.history["W1"].shape == (3, 2, 4, 6) and list(r.history["epochs"]) == [4, 5, 6]
    torch.testing.assert_close(r.history["W1"][-1], r.W1, rtol=0, atol=0)


def test_config_errors_name_the_bad_value():
    with pytest.raises(PlasticlabError, match="B=3"):
        simulate(small_cfg(B=3), [0])
    with pytest.raises(PlasticlabError, match="hebb"):
        simulate(small_cfg(), [0], rule="hebb")
    with pytest.raises(PlasticlabError, match="k2=9"):
        simulate(small_cfg(), [0], k2=9)


# -- Jacobian reduction (SPEC B.4) -------------------------------------------------------------------
def test_jacobian_of_update_map_matches_manifold_spectrum():
    theory = pytest.importorskip("plasticlab.theory.curl", reason="theory.curl not available yet")
    Mj, Nj, P, lr = 4, 3, 40, 0.05
    g = torch.Generator().manual_seed(1)
    W1 = torch.randn(1, Nj, Mj, dtype=D, generator=g) / math.sqrt(Mj)
    W2 = torch.randn(1, 1, Nj, dtype=D, generator=g)
    X = torch.randn(1, P, Mj, dtype=D, generator=g) / math.sqrt(2)
    Y = curl_forward(W1, W2, X, "linear")  # student = teacher: a zero-error point
    d1, d2 = flips([1], Mj, D), flips([1], Nj, D)

    def update(theta):
        a = theta[: Nj * Mj].reshape(1, Nj, Mj)
        b = theta[Nj * Mj :].reshape(1, 1, Nj)
        n1, n2 = curl_step(a, b, X, Y, d1, d2, lr, "linear")
        return torch.cat([n1.reshape(-1), n2.reshape(-1)])

    theta = torch.cat([W1.reshape(-1), W2.reshape(-1)])
    J = torch.func.jacrev(update)(theta)
    ev = np.linalg.eigvals(((J - torch.eye(len(theta), dtype=D)) / lr).numpy())
    assert np.abs(ev.imag).max() < 1e-8
    ev = np.sort(ev.real)
    nonzero = ev[np.abs(ev) > 1e-9]
    Sigma = (X[0].T @ X[0] / P).numpy()
    want = theory.manifold_spectrum(W1[0].numpy(), W2[0].numpy(), d1[0].numpy(), d2[0].numpy(), Sigma).jacobian
    assert len(nonzero) == Mj and np.sum(np.abs(ev) <= 1e-9) == Nj * Mj + Nj - Mj
    np.testing.assert_allclose(nonzero, np.sort(want), rtol=1e-8, atol=1e-10)
    assert (nonzero > 0).any()  # the flips chosen here do destabilise: the test sees a positive eigenvalue


def test_moment_matched_full_batch_equals_plain_full_batch():
    cfg = small_cfg(activation="linear", P=30, B=30, epochs=40, norm_constraint=True)
    fast = simulate(cfg, [0, 1], k1=[1, 0], k2=[0, 2])
    plain = simulate(CurlConfig(**{**cfg.__dict__, "moment_match": False}), [0, 1], k1=[1, 0], k2=[0, 2])
    torch.testing.assert_close(fast.W1, plain.W1, rtol=0, atol=1e-11)
    np.testing.assert_allclose(fast.peak_train_error, plain.peak_train_error, rtol=1e-9)


def test_block_permutations_equal_per_key_draws():
    keys = [_key("shuffle") + k for k in (1, 2, 7)]
    block = seeding.permutations([3, 11], keys, 40)
    assert block.shape == (2, 3, 40)
    for j, k in enumerate(keys):
        assert torch.equal(block[:, j], seeding.permutation([3, 11], k, 40))


def test_member_errors_do_not_depend_on_the_order_of_distinct_seeds():
    # distinct seeds given unsorted: each member's training error is measured on its own training set
    cfg = small_cfg(activation="linear")
    batch = simulate(cfg, [2, 0, 1])
    for i, s in enumerate([2, 0, 1]):
        alone = simulate(cfg, [s])
        np.testing.assert_array_equal(alone.train_error[0], batch.train_error[i])


@pytest.mark.parametrize("B", [5, 20])
def test_step_fn_is_pure_and_drives_simulate(B):
    from dataclasses import replace

    from plasticlab.simulation.curl import ErrorLog, Shuffles, _members, epoch_fn, init_fn

    cfg = small_cfg(B=B, epochs=3)
    members = _members(cfg, [0, 1], 1, 2, 1.0, "gd_flip", None)
    p, s0 = init_fn(cfg, members)
    before = (s0.W1.clone(), s0.W2.clone())
    shuffles = Shuffles(p) if p.mode == "minibatch" else None
    s = ErrorLog(p).measure(p, s0)
    for ep in range(1, cfg.epochs + 1):
        s = replace(epoch_fn(p, s, shuffles), epoch=ep)
    assert torch.equal(s0.W1, before[0]) and torch.equal(s0.W2, before[1])  # the input state is untouched
    res = simulate(cfg, [0, 1], k1=1, k2=2)
    assert torch.equal(res.W1, s.W1) and torch.equal(res.W2, s.W2)
