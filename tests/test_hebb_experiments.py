"""Part-A (emergent Hebbian) experiments: tiny real simulations of the SPEC A.3 claims, the experiment
contract (columns, reports, user errors), and the per-member ensemble pieces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import plasticlab
import plasticlab.study
from plasticlab.errors import PlasticlabError
from plasticlab.experiments.hebbian._common import members, share
from plasticlab.experiments.hebbian.phase import Spec as PhaseSpec
from plasticlab.experiments.hebbian.phase import run_phase_chunk
from plasticlab.networks.mlp import init_mlp
from plasticlab.rules import chain, make_rule, param_noise, sgd, weight_decay
from plasticlab.simulation.train_mlp import train_mlp
from plasticlab.tasks import teacher_regression

torch.set_num_threads(1)

TINY = {
    "hebb-table": dict(
        seeds=[0], gammas=[0.0, 5e-3], widths=[6, 5, 5, 3], steps=40, n_train=256, n_val=20, rules=["sgd", "adam"]
    ),
    "hebb-phase": dict(
        activations=["linear-regression", "tanh"],
        sigmas=[0.1],
        gammas=[2.5e-3, 0.04],
        seeds=[0],
        d_in=6,
        hidden=4,
        n_train=256,
        n_val=20,
        steps=40,
    ),
    "hebb-theorem": dict(
        rules=["sgd", "hebbian"], gammas=[0.02], seeds=[0], widths=[6, 5, 3], steps=40, n_train=256, n_val=20
    ),
    "hebb-transient": dict(
        gammas=[0.0, 0.05], seeds=[0], widths=[6, 5, 3], steps=60, n_train=256, n_val=20, checkpoints=10
    ),
    "hebb-classify": dict(gammas=[0.0, 0.1], seeds=[0], hidden=8, steps=30, batch_size=32),
}
COLUMNS = {
    "hebb-table": {"rule", "gamma", "seed", "layer", "alignment"},
    "hebb-phase": {"activation", "model", "sigma", "gamma", "seed", "layer", "alignment", "val_loss"},
    "hebb-theorem": {"rule", "gamma", "seed", "layer", "lhs", "rhs", "rel_error"},
    "hebb-transient": {"kind", "rule", "gamma", "seed", "layer", "step", "alignment", "frac_hebbian"},
    "hebb-classify": {"dataset", "rule", "gamma", "seed", "layer", "alignment", "val_acc"},
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_experiment_runs_tiny_and_reports(name, tmp_path):
    df = plasticlab.run(name, out=tmp_path, **TINY[name])
    assert COLUMNS[name] <= set(df.columns)
    assert len(df) > 0
    report = (tmp_path / "report.md").read_text()
    assert "## Verdicts" in report and "## Configuration" in report
    assert list(tmp_path.glob("*.png")), "no figure written"


def test_noise_turns_alignment_anti_hebbian_below_sigma_squared():
    # SPEC A.3 at d = 32, σ = 0.3: ≈ −0.25 at γ = σ²/4, ≈ +0.26 at γ = 4σ²
    s = 0.3
    df = run_phase_chunk(
        PhaseSpec(
            activation="linear-regression",
            sigma=s,
            gammas=[s * s / 4, 4 * s * s],
            seeds=[0, 1],
            d_in=32,
            hidden=1,
            n_train=2000,
            n_val=50,
            steps=300,
            lr=0.1,
            batch_size=256,
            label_noise=0.0,
        )
    )
    m = df.groupby("gamma").alignment.mean()
    assert m[s * s / 4] < -0.1
    assert m[4 * s * s] > 0.1


def test_stationarity_identity_holds_for_sgd():
    seeds = [3]
    data = teacher_regression(seeds, d_in=8, d_out=4, n_train=1000, n_val=50, teacher_hidden=(8,))
    net = init_mlp(seeds, [8, 8, 4], "tanh")
    gamma = 0.05
    res = train_mlp(
        net,
        chain(sgd(), weight_decay(gamma)),
        data,
        seeds,
        steps=2000,
        lr=0.1,
        average_from=1000,
        record_every=500,
    )
    for G, H, P in zip(res.G_mean, res.H_mean, res.post_sq_mean):
        lhs = float((G * H).sum())
        rhs = gamma * float(P[0])
        assert lhs > 0
        assert abs(lhs - rhs) / rhs < 0.1


def test_member_alone_equals_member_in_batch():
    """Per-member γ and σ: a member's run does not depend on who else is in the ensemble."""
    m = members([0, 1], gamma=[0.0, 0.01])
    sig = np.array([0.0, 0.1, 0.2, 0.05])
    base = teacher_regression([0, 1], d_in=5, d_out=3, n_train=100, n_val=10)

    def run(idx):
        sub = m.iloc[idx]
        seeds = sub.seed.tolist()
        data = share(base, sub.seed_index.values)
        net = init_mlp(seeds, [5, 4, 3], "tanh")
        return train_mlp(
            net,
            make_rule("dfa", gamma=sub.gamma.values, sigma=sig[idx]),
            data,
            seeds,
            steps=30,
            lr=0.1,
            record_every=7,
            average_from=10,
            late_every=3,
        )

    full, alone = run([0, 1, 2, 3]), run([2])
    torch.testing.assert_close(alone.alignment[..., 0], full.alignment[..., 2], rtol=1e-12, atol=1e-14)
    for Wa, Wf in zip(alone.net.weights, full.net.weights):
        torch.testing.assert_close(Wa[0], Wf[2], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(alone.G_mean[1][0], full.G_mean[1][2], rtol=1e-12, atol=1e-14)


def test_member_pieces_equal_the_scalar_rule():
    seeds = [4, 5]
    data = teacher_regression(seeds, d_in=5, d_out=2, n_train=100, n_val=10)
    net = init_mlp(seeds, [5, 3, 2], "relu")
    kw = dict(steps=20, lr=0.05, record_every=5, average_from=10)
    a = train_mlp(net, chain(sgd(), param_noise(0.1), weight_decay(0.02)), data, seeds, **kw)
    b = train_mlp(net, make_rule("sgd", gamma=[0.02, 0.02], sigma=[0.1, 0.1]), share(data, [0, 1]), seeds, **kw)
    torch.testing.assert_close(a.alignment, b.alignment)
    for Wa, Wb in zip(a.net.weights, b.net.weights):
        torch.testing.assert_close(Wa, Wb)


@pytest.mark.parametrize(
    "name,bad,key",
    [
        ("hebb-phase", dict(sigmas=[-0.1]), "sigmas"),
        ("hebb-phase", dict(activations=["softplus"]), "activations"),
        ("hebb-phase", dict(bogus=1), "bogus"),
        ("hebb-table", dict(layer=7), "layer"),
        ("hebb-table", dict(rules=["sgdd"]), "rules"),
        ("hebb-theorem", dict(gammas=[-1.0]), "gammas"),
        ("hebb-transient", dict(widths=[4, 2]), "widths"),
        ("hebb-classify", dict(dataset="cifar10"), "data_path"),
    ],
)
def test_bad_override_names_the_key(name, bad, key):
    with pytest.raises(PlasticlabError, match=key):
        plasticlab.run(name, quick=True, **bad)


def test_late_every_keeps_the_checkpoints_and_samples_the_window():
    seeds = [0]
    data = teacher_regression(seeds, d_in=4, d_out=2, n_train=50, n_val=10)
    net = init_mlp(seeds, [4, 3, 2], "tanh")
    kw = dict(steps=40, lr=0.05, record_every=10, average_from=20)
    a = train_mlp(net, chain(sgd(), weight_decay(0.01)), data, seeds, **kw)
    b = train_mlp(net, chain(sgd(), weight_decay(0.01)), data, seeds, late_every=4, **kw)
    assert a.steps_recorded == b.steps_recorded
    torch.testing.assert_close(a.net.weights[0], b.net.weights[0])
    assert not math.isclose(float(a.alignment_late[0, 0]), float(b.alignment_late[0, 0]), rel_tol=1e-9)


def test_phase_claims_of_a_model_with_part_of_its_sigma_grid_read_not_run():
    """An unfinished hebb-phase run: a model measured at some σ only is 'not run', not judged on those σ."""
    import pandas as pd

    from plasticlab.study import get, run_chunks

    exp = get("hebb-phase")
    p = exp.params(**{**exp.tiny, "activations": ["linear-regression"], "sigmas": [0.1, 0.3]})
    parts = {c.sigma: run_chunks(exp, [c]) for c in exp.chunks(p)}
    half = exp.claims(parts[0.1], p)
    assert half and {c.verdict for c in half} == {"not run"}
    full = exp.claims(pd.concat(parts.values(), ignore_index=True), p)
    assert "not run" not in {c.verdict for c in full}


def _phase_table(cells):
    """A hebb-phase table of a 2-layer linear MLP: cells maps (σ, γ) -> (layer-2 alignment, layer-1 ‖W‖²,
    diverged), two seeds each, every ‖W‖² of layer 2 = 1."""
    import pandas as pd

    rows = []
    for (sigma, gamma), (al, w1, div) in cells.items():
        for seed in (0, 1):
            for layer, w in ((0, w1), (1, 1.0)):
                rows.append(
                    dict(
                        activation="linear", model="mlp", sigma=sigma, gamma=gamma, seed=seed, layer=layer,
                        alignment=np.nan if div else al, val_loss=np.nan if div else 1.0, diverged=div,
                        collapsed=False, w_sq=np.nan if div else w, fan_in=4, fan_out=4,
                    )
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_phase_corners_skip_collapsed_and_diverged_cells_and_name_them():
    """A run whose first layer decayed below 1e-3 of its initial norm has collapsed (its layer-2 cosine of
    vanishing matrices is not a measurement): the Hebbian corner reads the highest γ that did not collapse,
    the anti-Hebbian corner the highest σ that did not diverge, and each note names the cells skipped."""
    from plasticlab.experiments.hebbian.phase import mark_collapsed, phase_claims

    df = _phase_table(
        {
            (0.01, 1e-4): (0.1, 4.0, False),
            (0.01, 1.0): (0.9, 2.0, False),
            (0.01, 4.0): (0.0, 1e-9, False),  # ‖W‖² 1e-9 < (1e-3)² · fan_out: collapsed
            **{(1.0, g): (np.nan, np.nan, True) for g in (1e-4, 1.0, 4.0)},
        }
    )
    marked = mark_collapsed(df)
    assert marked[marked.gamma == 4.0].groupby("sigma").collapsed.all().to_dict() == {0.01: True, 1.0: False}
    assert not marked[(marked.gamma < 4.0)].collapsed.any()
    p = dict(activations=["linear"], sigmas=[0.01, 1.0])
    _flip, _slope, hebb, anti, _val = phase_claims(df, p, "tiny")
    assert "γ = 1," in hebb.claim and hebb.ours == pytest.approx(0.9) and hebb.verdict == "reproduced"
    assert hebb.note == "past it: σ = 0.01, γ = 4: 2 collapsed of 2"
    assert "σ = 0.01, γ = 0.0001" in anti.claim and anti.ours == pytest.approx(0.1)
    assert anti.verdict == "not reproduced"
    assert anti.note == "past it: σ = 1, every γ: 6 diverged of 6"


def test_table_scores_only_rules_with_a_paper_row(half_sgd):
    """A user's rule has no Table 1 row: it is measured (tables, figure) but gets no verdict."""
    from plasticlab.study import get as get_exp
    from plasticlab.study import run_chunks

    exp = get_exp("hebb-table")
    p = exp.params(**{**exp.tiny, "rules": ["sgd", half_sgd]})
    df = run_chunks(exp, exp.chunks(p))
    claims = exp.claims(df, p)
    assert claims and not [c for c in claims if half_sgd in c.claim]
    assert all(c.claim.startswith("sgd") for c in claims)
    ours_vs_paper = exp.tables(df, p)[0].frame
    mine = ours_vs_paper[ours_vs_paper.rule == half_sgd]
    assert len(mine) == 2 and mine.ours.notna().all() and mine.paper.isna().all()


def test_table_figure_draws_the_papers_one_adam_row_once():
    """Both Adam forms are set beside the paper's single Adam row: one reference line, labelled as such."""
    import matplotlib.pyplot as plt

    from plasticlab.study import get as get_exp
    from plasticlab.study import run_chunks

    exp = get_exp("hebb-table")
    p = exp.params(**{**exp.tiny, "rules": ["adam", "adam_l2", "sgd"]})
    df = run_chunks(exp, exp.chunks(p))
    fig = exp.figures(df, p)[0].fig
    labels = [ln.get_label() for ln in fig.axes[0].get_lines() if "paper" in ln.get_label()]
    plt.close(fig)
    assert labels == ["paper's Adam row (adam, adam_l2)", "paper's SGD row"]


def _tiny_phase_figures_and_tables():
    from plasticlab.study import get, run_chunks

    exp = get("hebb-phase")
    p = exp.params(**exp.tiny)
    df = run_chunks(exp, exp.chunks(p))
    return exp, p, df


def test_phase_val_loss_map_marks_its_minimum_without_covering_a_value():
    """The lowest validation loss is outlined, not starred: no marker sits on a printed cell value."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    exp, p, df = _tiny_phase_figures_and_tables()
    fig = next(f.fig for f in exp.figures(df, p) if f.name == "phase_val_loss")
    for ax in fig.axes:
        texts = {t.get_position() for t in ax.texts}
        if not texts:
            continue  # a colour bar
        for line in ax.get_lines():
            if line.get_marker() not in ("None", "", None):
                assert not set(zip(line.get_xdata(), line.get_ydata())) & texts
        boxes = [b for b in ax.patches if isinstance(b, Rectangle) and b.get_label().startswith("lowest")]
        assert len(boxes) == 1 and not boxes[0].get_fill()
        assert "γ=0.0025" in boxes[0].get_label() or "γ=0.04" in boxes[0].get_label()
    plt.close(fig)


def test_phase_tables_print_gamma_exactly_and_notes_contradict_no_verdict():
    """γ = 0.0025 is printed as 0.0025 (not 0.003); the notes never predict a verdict."""
    import pandas as pd

    from plasticlab.experiments.hebbian.phase import _exact
    from plasticlab.study.report import markdown_table

    exp, p, df = _tiny_phase_figures_and_tables()
    cells = exp.tables(df, p)[-1].frame
    assert "0.0025" in set(cells.gamma)
    assert "| 0.0025 |" in markdown_table(cells) and "| 0.003 |" not in markdown_table(cells)
    assert set(cells["gamma/σ²"]) == {"0.25", "4"}
    assert list(_exact(pd.DataFrame({"gamma/σ²": [0.000225 / 0.09]}))["gamma/σ²"]) == ["0.0025"]
    for name in ("hebb-phase", "hebb-theorem", "hebb-table", "hebb-valopt", "hebb-classify"):
        e = plasticlab.study.get(name)
        text = e.notes(e.params()).lower()
        assert "expected to" not in text and "fail" not in text, name


def test_transient_figure_titles_fit_inside_the_figure():
    """Every title of the hebb-transient figures is no wider than its panel and lies inside the figure, even
    at a 12 pt default font (a title wider than its panel is cut at the figure's edge)."""
    import matplotlib
    import matplotlib.pyplot as plt

    from plasticlab.study import get, run_chunks

    exp = get("hebb-transient")
    p = exp.params(**{**exp.tiny, "widths": [6, 5, 5, 3]})
    df = run_chunks(exp, exp.chunks(p))
    with matplotlib.rc_context({"font.size": 12}):
        for f in exp.figures(df, p):
            f.fig.canvas.draw()
            box = f.fig.bbox
            for ax in f.fig.axes:
                t = ax.title.get_window_extent(f.fig.canvas.get_renderer())
                assert t.width <= ax.bbox.width, (f.name, ax.get_title())
                assert box.x0 <= t.x0 and t.x1 <= box.x1 and t.y1 <= box.y1, (f.name, ax.get_title())
            plt.close(f.fig)
