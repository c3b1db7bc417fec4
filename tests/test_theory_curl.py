"""Curl-descent theory (SPEC B.3–B.4): thresholds, manifold spectra, the scalar saddle → centre example."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from plasticlab.errors import PlasticlabError
from plasticlab.theory import (
    FlipPath,
    balanced_point,
    critical_flip_fraction,
    hidden_curve,
    linear_flow,
    manifold_spectrum,
    readout_curve,
    sample_manifold_spectrum,
    stability_matrix,
)


@pytest.mark.parametrize(
    "layer,c,expected",
    [
        ("hidden", 0.3, 0.559),
        ("hidden", 0.4, 0.177),
        ("hidden", 0.5, 0.047),
        ("readout", 0.1, 0.245),
        ("readout", 1.0, 0.055),
        ("readout", 10.0, 0.006),
    ],
)
def test_spec_threshold_values(layer, c, expected):
    a = critical_flip_fraction(c, layer)
    assert isinstance(a, float)
    assert abs(a - expected) < 1e-3


def test_hidden_plateaus_and_vectorised_shape():
    c = np.array([[1e-3, 0.1, 0.25], [2 / 3, 1.0, 100.0]])
    a = critical_flip_fraction(c, "hidden")
    assert a.shape == c.shape
    np.testing.assert_array_equal(a, [[1, 1, 1], [0, 0, 0]])
    mid = critical_flip_fraction(np.linspace(0.26, 0.66, 30), "hidden")
    assert np.all(np.diff(mid) < 0) and np.all((mid > 0) & (mid < 1))


def test_inversion_round_trip_to_1e6():
    # the root finder must give back α(u) for c(u), not just the six listed values
    c, a = hidden_curve(np.linspace(0.51, 0.99, 50))
    assert np.max(np.abs(critical_flip_fraction(c, "hidden") - a)) < 1e-6
    c, a = readout_curve(np.linspace(0.01, 0.999, 50))
    assert np.max(np.abs(critical_flip_fraction(c, "readout") - a)) < 1e-6


def test_readout_range_and_asymptotes():
    a = critical_flip_fraction(np.geomspace(1e-6, 1e6, 200), "readout")
    assert np.all((a > 0) & (a < 0.5)) and np.all(np.diff(a) < 0)
    small = np.array([1e-8, 1e-6, 1e-4])
    err = critical_flip_fraction(small, "readout") - (0.5 - np.sqrt(small))
    assert np.all(np.abs(err) < small)  # the correction is O(c), far below the √c term
    big = np.array([1e2, 1e4, 1e6])
    rel = critical_flip_fraction(big, "readout") * 16 * big - 1
    assert np.all(np.abs(rel) < 1 / (4 * big))  # relative correction O(1/c)


def test_bad_layer_and_bad_c():
    with pytest.raises(PlasticlabError, match="hidden, readout"):
        critical_flip_fraction(0.3, "output")
    with pytest.raises(PlasticlabError, match="c = M/N"):
        critical_flip_fraction([0.3, 0.0], "readout")
    with pytest.raises(PlasticlabError, match="hidden, readout"):
        FlipPath(np.ones((1, 3, 2)), "hiden")


def _jac_eigs(flow, *params):
    """Eigenvalues of the Jacobian of the flattened flow, by autodiff."""
    sizes = [p.numel() for p in params]
    shapes = [p.shape for p in params]

    def flat(theta):
        parts = [t.reshape(s) for t, s in zip(torch.split(theta, sizes), shapes)]
        return torch.cat([o.reshape(-1) for o in flow(*parts)])

    theta = torch.cat([p.reshape(-1) for p in params])
    return torch.linalg.eigvals(torch.func.jacrev(flat)(theta))


@pytest.mark.parametrize("d1,expected", [(1.0, "saddle"), (-1.0, "centre")])
def test_scalar_example_saddle_becomes_centre(d1, expected):
    w_star = 1.7
    one = torch.ones(1, 1, dtype=torch.float64)
    flow = lambda w1, w2: linear_flow(
        w1,
        w2,
        torch.tensor([d1], dtype=torch.float64),
        torch.ones(1, dtype=torch.float64),
        w_star * one,
        one,
    )
    ev = _jac_eigs(flow, torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))
    ev = ev[torch.argsort(ev.real + ev.imag)]
    target = [-w_star, w_star] if expected == "saddle" else [-1j * w_star, 1j * w_star]
    np.testing.assert_allclose(ev.numpy(), np.array(target, dtype=complex), atol=1e-12)


def test_manifold_spectrum_matches_autodiff_jacobian():
    # at a zero-error point the flow's Jacobian has exactly the M eigenvalues −eig(ΣA), the rest 0
    rng = np.random.default_rng(0)
    M, N = 4, 6
    W1, W2 = rng.normal(size=(N, M)) / 2, rng.normal(size=(1, N))
    d1, d2 = np.array([-1.0, 1, 1, 1]), np.array([1.0, -1, 1, 1, -1, 1])
    L = rng.normal(size=(M, M))
    Sigma = L @ L.T + 0.5 * np.eye(M)
    t = lambda x: torch.tensor(x, dtype=torch.float64)
    v_star = t(W2 @ W1)
    ev = _jac_eigs(lambda a, b: linear_flow(a, b, t(d1), t(d2), v_star, t(Sigma)), t(W1), t(W2))
    ev = ev.numpy()
    nonzero = ev[np.argsort(-np.abs(ev))][:M]
    assert np.max(np.abs(ev[np.argsort(-np.abs(ev))][M:])) < 1e-9
    spec = manifold_spectrum(t(W1), t(W2), np.diag(d1), d2, Sigma)  # torch, matrix and vector inputs
    np.testing.assert_allclose(np.sort(nonzero.real), np.sort(spec.jacobian), rtol=1e-8, atol=1e-10)
    assert np.max(np.abs(nonzero.imag)) < 1e-8
    A = W2.ravel() @ W2.ravel() * np.diag(d1) + W1.T @ np.diag(d2) @ W1
    np.testing.assert_allclose(stability_matrix(W1, W2, d1, d2), A, atol=1e-12)
    assert spec.min_eig == pytest.approx(np.linalg.eigvalsh(A)[0])


def test_sampled_point_is_balanced_and_batch_consistent():
    W1, W2 = balanced_point(40, 30, [3, 4])
    assert W1.shape == (2, 30, 40)
    np.testing.assert_allclose(np.linalg.norm(W2, axis=-1), 1.0)
    assert abs(W1.var() * 40 - 1) < 0.1
    batch = sample_manifold_spectrum(40, 30, k_hidden=[0, 5], k_readout=3, seed=[3, 4])
    alone = sample_manifold_spectrum(40, 30, k_hidden=5, k_readout=3, seed=4)
    np.testing.assert_allclose(batch.jacobian[1], alone.jacobian)
    assert batch.min_eig.shape == (2,) and isinstance(alone.min_eig, float)


@pytest.mark.parametrize("layer,M,N", [("hidden", 20, 50), ("readout", 20, 50), ("readout", 60, 15)])
def test_flip_path_threshold_is_the_sign_change(layer, M, N):
    W1, _ = balanced_point(M, N, [0, 1, 2])
    path = FlipPath(W1, layer)
    k_star, _, _ = path.threshold([0, path.dim // 2])
    for e, k in enumerate(k_star):
        kw = dict(k_hidden=k, k_readout=0) if layer == "hidden" else dict(k_hidden=0, k_readout=k)
        before = {**kw, ("k_hidden" if layer == "hidden" else "k_readout"): k - 1}
        if k <= path.dim:
            assert sample_manifold_spectrum(M, N, seed=e, **kw).min_eig <= 0
        assert sample_manifold_spectrum(M, N, seed=e, **before).min_eig > 0


@pytest.mark.parametrize("layer,c", [("hidden", 0.4), ("readout", 0.1)])
def test_finite_size_sign_change_near_large_n_threshold(layer, c):
    M = 1000
    N = int(round(M / c))
    a = critical_flip_fraction(c, layer)
    dim = M if layer == "hidden" else N
    ks = [int(round((a - 0.05) * dim)), int(round((a + 0.05) * dim))]
    kw = dict(k_hidden=ks, k_readout=0) if layer == "hidden" else dict(k_hidden=0, k_readout=ks)
    with threadpool_limits(limits=1, user_api="blas"):
        spec = sample_manifold_spectrum(M, N, seed=7, **kw)
    assert spec.stable.tolist() == [True, False]


def test_curl_theory_experiment_tiny(tmp_path):

    from plasticlab.study import get, run_chunks
    from plasticlab.study.report import write_report

    exp = get("curl-theory")
    p = exp.params(
        quick=True, seeds=[0, 1], sizes=[20, 40], c_hidden=[0.4], c_readout=[0.5], n_alpha=5, n_theory=20
    )
    df = run_chunks(exp, exp.chunks(p))
    assert {"layer", "c", "alpha", "N", "seed", "min_eig", "stable", "source"} <= set(df.columns)
    th = df[df.source == "theory"]
    np.testing.assert_allclose(th.alpha, [critical_flip_fraction(c, l) for c, l in zip(th.c, th.layer)])
    smp, thr = df[df.source == "sampled"], df[df.source == "sampled-threshold"]
    for r in thr.itertuples():
        g = smp[(smp.layer == r.layer) & (smp.N == r.N) & (smp.seed == r.seed)]
        assert g[g.k < r.k].stable.all() and not g[g.k >= r.k].stable.any()
    write_report(exp, df, p, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "## Verdicts" in text and "paper" in text and (tmp_path / "phase_diagrams.png").exists()
    assert (tmp_path / "phase_diagrams.png").exists() and (tmp_path / "min_eig_curves.png").exists()
