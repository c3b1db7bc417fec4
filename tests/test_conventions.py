"""The conventions study of Part A: the γ ∝ σ² slope claim, stationarity beside Table 1's cells, the study's
chunks and claims under each convention, and the scoreboard's robustness section."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from plasticlab.experiments.hebbian.phase import crossings, phase_claims, slope_fit

P = dict(activations=["tanh"], sigmas=[0.1, 0.3, 1.0], lr=0.05, steps=20000)


def _grid(g_star, lost=None, gammas=None):
    """A hebb-phase table of a tanh MLP whose layer-2 mean alignment is linear in log γ and crosses 0 at
    ``g_star[σ]``; ``lost`` maps (σ, γ) -> "collapsed" / "diverged" for one of the two seeds."""
    rows = []
    for sigma, gs in g_star.items():
        for gamma in gammas or [gs / 8, gs / 2, gs * 2, gs * 8]:
            al = 0.2 * math.log(gamma / gs)
            for seed in (0, 1):
                kind = (lost or {}).get((sigma, gamma)) if seed == 0 else None
                for layer in (0, 1):
                    rows.append(
                        dict(
                            activation="tanh", model="mlp", sigma=sigma, gamma=gamma, seed=seed, layer=layer,
                            alignment=al, val_loss=1.0, diverged=kind == "diverged", collapsed=kind == "collapsed",
                            w_sq=4.0, fan_in=4, fan_out=4,
                        )
                    )  # fmt: skip
    return pd.DataFrame(rows)


def _layer2(df):
    return df[df.layer == 1]


def test_slope_recovers_the_exponent_of_a_constructed_boundary():
    """γ* = 3 σ⁴ (slope 2 in σ²) is recovered exactly, with the constant γ*/σ² per σ, and misses 1 ± 0.25."""
    g_star = {s: 3 * s**4 for s in P["sigmas"]}
    c = crossings(_layer2(_grid(g_star)), dict(P, steps=10**9))
    assert c.used.all()
    np.testing.assert_allclose(c.gamma_star, [g_star[s] for s in c.sigma], rtol=1e-9)
    np.testing.assert_allclose(c.ratio, [3 * s**2 for s in c.sigma], rtol=1e-9)
    b, se, n = slope_fit(c)
    assert n == 3 and b == pytest.approx(2.0) and se == pytest.approx(0.0, abs=1e-9)
    (slope,) = [x for x in phase_claims(_grid(g_star), dict(P, steps=10**9), "tiny") if "γ ∝ σ²" in x.claim]
    assert slope.ours == pytest.approx(2.0) and slope.verdict == "not reproduced"
    assert "median 0.27" in slope.note  # γ*/σ² = 3σ²: 0.03, 0.27, 3


def test_slope_one_is_reproduced():
    g_star = {s: 0.7 * s**2 for s in P["sigmas"]}
    (slope,) = [x for x in phase_claims(_grid(g_star), dict(P, steps=10**9), "tiny") if "γ ∝ σ²" in x.claim]
    assert slope.ours == pytest.approx(1.0) and slope.verdict == "reproduced" and slope.n == 3


def test_a_collapsed_bracketing_cell_leaves_its_sigma_out_and_names_it():
    g_star = {s: 0.7 * s**2 for s in P["sigmas"]}
    df = _grid(g_star, lost={(0.3, 0.7 * 0.09 * 2): "collapsed"})
    c = crossings(_layer2(df), dict(P, steps=10**9))
    assert c.set_index("sigma").used.to_dict() == {0.1: True, 0.3: False, 1.0: True}
    why = c.set_index("sigma").why[0.3]
    assert "1 collapsed of 2" in why and f"γ = {0.7 * 0.09 * 2:g}" in why
    (slope,) = [x for x in phase_claims(df, dict(P, steps=10**9), "tiny") if "γ ∝ σ²" in x.claim]
    assert slope.n == 2 and math.isnan(slope.sem) and "σ = 0.3" in slope.note and "collapsed" in slope.note


def test_a_non_stationary_lower_cell_leaves_its_sigma_out_and_too_few_sigma_read_not_run():
    """lr·γ·steps < 5 at the lower bracketing γ: left out; one σ left: the slope has no value ('not run')."""
    g_star = {s: 0.7 * s**2 for s in P["sigmas"]}
    # lr·steps = 100: γ_lo = 0.35 σ² is stationary (≥ 0.05) only at σ = 1
    c = crossings(_layer2(_grid(g_star)), dict(P, steps=2000))
    assert c.set_index("sigma").used.to_dict() == {0.1: False, 0.3: False, 1.0: True}
    assert "not stationary" in c.set_index("sigma").why[0.1]
    (slope,) = [x for x in phase_claims(_grid(g_star), dict(P, steps=2000), "tiny") if "γ ∝ σ²" in x.claim]
    assert math.isnan(slope.ours) and slope.verdict == "not run" and "a slope needs 2" in slope.note


def test_a_sigma_without_a_crossing_is_named():
    df = _grid({0.1: 0.007, 0.3: 0.063, 1.0: 0.7})
    df.loc[df.sigma == 1.0, "alignment"] = -0.5
    c = crossings(_layer2(df), dict(P, steps=10**9)).set_index("sigma")
    assert not c.used[1.0] and c.why[1.0].startswith("no crossing")


def test_linear_regression_keeps_the_factor_4_sign_test():
    from plasticlab.experiments.hebbian.phase import LINREG

    df = _grid({0.1: 0.01, 0.3: 0.09}, gammas=None)
    df = df[df.layer == 0].assign(activation=LINREG, model="linear")
    claims = phase_claims(df, dict(P, activations=[LINREG], sigmas=[0.1, 0.3]), "tiny")
    assert "sign flips" in claims[0].claim and not any("γ ∝ σ²" in c.claim for c in claims)


def test_table_prints_training_length_and_stationarity_beside_each_cell():
    from plasticlab.experiments.hebbian.table import stationarity
    from plasticlab.study import get, run_chunks

    exp = get("hebb-table")
    p = exp.params(**exp.tiny)
    t = exp.tables(run_chunks(exp, exp.chunks(p)), p)[0].frame
    assert (t["T (steps)"] == p["steps"]).all()
    sgd = t[(t.rule == "sgd") & (t.gamma == 5e-3)]["lr·γ·T"].iloc[0]
    adam = t[(t.rule == "adam_l2") & (t.gamma == 5e-3)]["lr·γ·T"].iloc[0]
    assert sgd == pytest.approx(p["lr"] * 5e-3 * p["steps"]) and adam == pytest.approx(p["adam_lr"] * 5e-3 * 40)
    assert stationarity("sgd", 0.0, p) == 0
