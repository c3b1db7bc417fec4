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


def test_a_missing_sign_change_fails_the_flip_claim_while_the_slope_reads_not_run():
    """Anti-Hebbian at every γ for two σ: the boundary's existence is a measured failure (not reproduced);
    a σ Hebbian already at the smallest γ is left unscored (its boundary lies below the grid)."""
    df = _grid({0.1: 0.007, 0.3: 0.063, 1.0: 0.7})
    df.loc[df.sigma >= 0.3, "alignment"] = -0.5
    (flip,) = [x for x in phase_claims(df, dict(P, steps=10**9), "tiny") if "boundary γ*(σ) exists" in x.claim]
    assert flip.n == 3 and flip.ours == pytest.approx(1 / 3) and flip.verdict == "not reproduced"
    assert "no crossing at σ = 0.3, 1" in flip.note
    (slope,) = [x for x in phase_claims(df, dict(P, steps=10**9), "tiny") if "γ ∝ σ²" in x.claim]
    assert slope.verdict == "not run" and "a slope needs 2" in slope.measured()
    df.loc[df.sigma == 1.0, "alignment"] = 0.5
    (flip,) = [x for x in phase_claims(df, dict(P, steps=10**9), "tiny") if "boundary γ*(σ) exists" in x.claim]
    assert flip.n == 2 and "σ = 1: Hebbian already at the smallest γ" in flip.note


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


# -- the conventions study ----------------------------------------------------------------------------------
def test_unknown_convention_is_refused_naming_the_valid_ones():
    from plasticlab.errors import PlasticlabError
    from plasticlab.study import get

    exp = get("hebb-conventions")
    with pytest.raises(PlasticlabError, match="half_sum/torch") as e:
        exp.params(table_conventions=["half_sum/plain", "sum/torch"])
    assert "sum/torch" in str(e.value)
    with pytest.raises(PlasticlabError, match="half_sum/plain/signal"):
        exp.params(phase_conventions=["bogus"])
    with pytest.raises(PlasticlabError, match=r"table part.*layer < len"):
        exp.params(table_rules=["sgd"], table_layer=5)  # valid for no 4-layer net: the inner relation speaks


def test_chunks_are_the_inner_experiments_chunks_under_each_convention():
    """Every chunk is one of hebb-table's / hebb-phase's own, with the convention's overrides in its spec;
    the default convention's chunks are exactly the inner experiment's (the same hashes as its own runs)."""
    from plasticlab.experiments.hebbian.conventions import CONVENTIONS, inner_params
    from plasticlab.study import get

    exp, table = get("hebb-conventions"), get("hebb-table")
    p = exp.params(quick=True)
    specs = exp.chunks(p)
    assert {(s.part, s.convention) for s in specs} == {("table", c) for c in p["table_conventions"]} | {
        ("phase", c) for c in p["phase_conventions"]
    }
    own = [table.spec_dict(s) for s in table.chunks(inner_params(p, "table", "half_sum/plain"))]
    assert [s.inner for s in specs if s.part == "table" and s.convention == "half_sum/plain"] == own
    for s in specs:
        for key, value in CONVENTIONS[s.convention].items():
            assert s.inner.get(key, value) == value  # a default convention value is left out of the dict


def test_summary_words():
    from plasticlab.experiments.hebbian.conventions import summary_word

    assert summary_word({"a": "reproduced", "b": "reproduced", "c": "not stationary"}) == "robust"
    assert summary_word({"a": "reproduced", "b": "partly"}) == "convention-dependent (holds under: a)"
    assert summary_word({"a": "not reproduced", "b": "partly"}) == "fails under every convention"
    assert summary_word({"a": "not stationary", "b": "not stationary"}) == "not stationary"
    assert summary_word({"a": "not run", "b": "not stationary"}) == "not stationary"
    assert summary_word({"a": "not run"}) == "not run"


def test_claims_are_matched_across_conventions_without_their_grid_cell():
    from plasticlab.experiments.hebbian.conventions import claim_key

    a = "tanh MLP: Hebbian (> 0.5) at low noise and high decay (σ = 0.03, γ = 0.0144, the highest γ that did"
    assert claim_key(a + " not collapse)") == "tanh MLP: Hebbian (> 0.5) at low noise and high decay"
    assert (
        claim_key("sgd: alignment rises with weight decay (γ = 0 → 0.005)")
        == "sgd: alignment rises with weight decay"
    )
    assert (
        claim_key("sgd, γ = 0.005: 2nd-layer Hebbian alignment") == "sgd, γ = 0.005: 2nd-layer Hebbian alignment"
    )


def test_tiny_study_scores_each_convention_and_marks_non_stationary_claims(tmp_path):
    """The tiny run (40 steps) is stationary nowhere: every Part A claim reads 'not stationary' under every
    convention run, the study's own checks are beyond the papers, and robustness.csv is written."""
    from plasticlab.study import get, run_chunks
    from plasticlab.study.report import write_report

    exp = get("hebb-conventions")
    p = exp.params(**exp.tiny)
    df = run_chunks(exp, exp.chunks(p))
    assert set(zip(df.part, df.convention)) == {("table", "mean/torch"), ("phase", "half_sum/plain/signal")}
    claims = write_report(exp, df, p, tmp_path)
    assert claims and all(c.beyond for c in claims)
    rob = pd.read_csv(tmp_path / "robustness.csv", keep_default_na=False)
    assert list(rob.columns) == ["experiment", "claim", "mean/torch", "half_sum/plain/signal", "summary"]
    table = rob[rob.experiment == "hebb-table"]
    assert (table["mean/torch"] == "not stationary").all() and (table["half_sum/plain/signal"] == "—").all()
    assert set(rob.summary) <= {"not stationary", "not run"}


def test_stationary_claims_are_scored_and_summarised():
    """With the decay acting long enough (lr·γ·T ≥ 5 at γ = 5e-3), the cell is scored under each convention."""
    from plasticlab.experiments.hebbian.conventions import claims_by_convention
    from plasticlab.study import get, run_chunks

    exp = get("hebb-conventions")
    p = exp.params(
        **{**exp.tiny, "table_lr": 0.5, "table_steps": 2000, "table_conventions": ["half_sum/plain", "mean/plain"]}
    )
    p["phase_conventions"] = []
    df = run_chunks(exp, exp.chunks(p))
    got = {(d["claim"], d["convention"]): d["verdict"] for d in claims_by_convention(df, p)}
    cell = "sgd, γ = 0.005: 2nd-layer Hebbian alignment"
    assert got[(cell, "half_sum/plain")] != "not stationary" and got[(cell, "mean/plain")] != "not stationary"
    assert got[("sgd, γ = 0: 2nd-layer Hebbian alignment", "mean/plain")] == "not stationary"


def test_boundary_table_gives_the_constant_and_the_fitted_slope_per_convention():
    """γ*/σ² per σ, its median and the slope of log γ* on log σ² per (model, convention), from the phase rows."""
    from plasticlab.experiments.hebbian.conventions import ratio_by_convention
    from plasticlab.study import get

    exp = get("hebb-conventions")
    p = exp.params(phase_activations=["tanh"], phase_sigmas=[0.1, 0.3, 1.0], phase_steps=10**6)
    p["phase_conventions"] = ["half_sum/plain", "mean/plain"]
    a = _grid({s: 0.7 * s**2 for s in P["sigmas"]}).assign(part="phase", convention="half_sum/plain")
    b = _grid({s: 3 * s**4 for s in P["sigmas"]}).assign(part="phase", convention="mean/plain")
    t = ratio_by_convention(pd.concat([a, b], ignore_index=True), p).set_index("convention")
    assert t.loc["half_sum/plain", "median"] == pytest.approx(0.7) and t.loc["half_sum/plain", "slope"] == (
        pytest.approx(1.0)
    )
    assert t.loc["mean/plain", "slope"] == pytest.approx(2.0) and t.loc["mean/plain", "σ=0.3"] == pytest.approx(
        0.27
    )


# -- the scoreboard's robustness section ---------------------------------------------------------------------
def test_scoreboard_shows_robustness_counts_and_table_when_the_study_ran(tmp_path):
    from plasticlab.study.scoreboard import write_scoreboard

    write_scoreboard(tmp_path, [], quick=True)
    text = (tmp_path / "SCOREBOARD.md").read_text()
    assert "The conventions study (hebb-conventions) was not run" in text
    folder = tmp_path / "hebb-conventions"
    folder.mkdir()
    pd.DataFrame(
        dict(
            experiment=["hebb-table"] * 4,
            claim=["c1", "c2", "c3", "c4"],
            a=["reproduced", "reproduced", "not reproduced", "not stationary"],
            b=["reproduced", "partly", "not reproduced", "not stationary"],
            summary=[
                "robust",
                "convention-dependent (holds under: a)",
                "fails under every convention",
                "not stationary",
            ],
        )
    ).to_csv(folder / "robustness.csv", index=False)
    write_scoreboard(tmp_path, [], quick=True)
    text = (tmp_path / "SCOREBOARD.md").read_text()
    assert "not run" not in text.split("## Part A under each convention")[1].split("|")[0]
    assert (
        "4 Part A claims of hebb-table and hebb-phase: 1 robust, 1 convention-dependent, "
        "1 fails under every convention, 1 not stationary." in text
    )
    assert "| c2 | reproduced | partly | convention-dependent (holds under: a) |" in text
    assert "0 claims of the papers" in text  # the headline keeps its own count
