"""The shared verdict rule: every criterion's boundaries, not run vs diverged, and the rendered table."""

import math

import numpy as np
import pytest

from plasticlab.study.claims import (
    KPZ,
    NOT_REPRODUCED,
    NOT_RUN,
    PARTLY,
    REPRODUCED,
    AllCells,
    AtLeast,
    AtMost,
    Claim,
    Within,
    claims_table,
    counts,
    fraction,
    measure,
    verdict,
)
from plasticlab.study.report import Report


def mk(ours, crit, sem=math.nan, n=5, paper_value=math.nan, diverged=0):
    return Claim("c", KPZ, "Table 1", paper_value, ours, sem, n, "quick", crit, diverged=diverged)


@pytest.mark.parametrize(
    "ours,sem,expected",
    [
        (0.05, math.nan, REPRODUCED),
        (0.10, math.nan, REPRODUCED),  # the limit itself passes
        (0.12, math.nan, NOT_REPRODUCED),
        (0.12, 0.011, PARTLY),  # 0.12 − 2·0.011 ≤ 0.1: indistinguishable from the limit
        (0.12, 0.009, NOT_REPRODUCED),
    ],
)
def test_at_most(ours, sem, expected):
    assert verdict(mk(ours, AtMost(0.10), sem)) == expected


def test_at_most_partly_limit():
    assert verdict(mk(0.15, AtMost(0.10, partly=0.2))) == PARTLY
    assert verdict(mk(0.25, AtMost(0.10, partly=0.2))) == NOT_REPRODUCED


@pytest.mark.parametrize(
    "ours,sem,expected",
    [
        (0.3, math.nan, REPRODUCED),
        (0.0, math.nan, REPRODUCED),
        (-0.01, 0.01, PARTLY),
        (-0.01, math.nan, NOT_REPRODUCED),
    ],
)
def test_at_least_sign(ours, sem, expected):
    assert verdict(mk(ours, AtLeast(0.0), sem)) == expected


def test_within_absolute_and_relative():
    assert verdict(mk(0.44, Within(0.05), paper_value=0.45)) == REPRODUCED
    assert verdict(mk(0.38, Within(0.05), paper_value=0.45)) == PARTLY  # gap 0.07 ≤ 2·tol
    assert verdict(mk(-0.014, Within(0.05), paper_value=0.45)) == NOT_REPRODUCED
    assert verdict(mk(0.38, Within(0.05, partly=0.06), paper_value=0.45)) == NOT_REPRODUCED
    assert verdict(mk(0.38, Within(0.05, partly=0.06), sem=0.02, paper_value=0.45)) == PARTLY
    assert verdict(mk(1.9, Within(0.1, relative=True), paper_value=2.0)) == REPRODUCED
    assert verdict(mk(1.7, Within(0.1, relative=True), paper_value=2.0)) == PARTLY
    assert verdict(mk(1.0, Within(0.1, relative=True), paper_value=2.0)) == NOT_REPRODUCED
    # no paper value: a tolerance claim cannot pass
    assert verdict(mk(1.0, Within(0.1))) == NOT_REPRODUCED


def test_all_cells():
    assert verdict(mk(1.0, AllCells("sign > 0"), n=8)) == REPRODUCED
    assert verdict(mk(0.75, AllCells("sign > 0"), n=8)) == PARTLY
    assert verdict(mk(0.25, AllCells("sign > 0"), n=8)) == NOT_REPRODUCED
    assert verdict(mk(0.9, AllCells("sign > 0", partly=0.95), n=8)) == NOT_REPRODUCED


def test_not_run_only_when_nothing_measured():
    assert verdict(mk(math.nan, AtMost(0.1), n=0)) == NOT_RUN
    assert verdict(mk(math.nan, AtMost(0.1), n=3)) == NOT_RUN
    assert verdict(mk(0.05, AtMost(0.1), n=0)) == NOT_RUN
    # inf is a measurement (never converged: infinitely slow), judged by the criterion
    assert verdict(mk(math.inf, AtMost(0.1), n=3)) == NOT_REPRODUCED
    assert verdict(mk(math.inf, AtLeast(1.5), n=3)) == REPRODUCED
    # every run diverged is a measured failure, never "not run"
    c = mk(math.nan, AtMost(0.1), n=0, diverged=4)
    assert verdict(c) == NOT_REPRODUCED
    assert "all 4 runs diverged" in c.measured()
    # some diverged: the rest decide, and the count is shown
    c = mk(0.05, AtMost(0.1), n=3, diverged=1)
    assert c.verdict == REPRODUCED and "1 diverged" in c.measured()


def test_measure_and_fraction():
    m, s, n = measure([1.0, 2.0, 3.0, float("nan"), float("inf")])
    assert (m, n) == (2.0, 3) and s == pytest.approx(1 / math.sqrt(3))
    m, s, n = measure(np.array([4.0]))
    assert (m, n) == (4.0, 1) and math.isnan(s)
    assert measure([])[2] == 0
    assert fraction([True, False, True, True]) == (0.75, 4)
    f, n = fraction([])
    assert math.isnan(f) and n == 0


def test_counts_row_and_table(tmp_path):
    cs = [
        mk(0.05, AtMost(0.1)),
        mk(0.5, AtMost(0.1)),
        mk(math.nan, AtMost(0.1), n=0),
        mk(0.4, Within(0.05), paper_value=0.45, sem=0.01).with_(experiment="hebb-table", report="x/report.md"),
    ]
    assert counts(cs) == {REPRODUCED: 2, PARTLY: 0, NOT_REPRODUCED: 1, NOT_RUN: 1}
    row = cs[3].row()
    assert list(row)[:11] == [
        "experiment",
        "paper",
        "source",
        "claim",
        "paper_value",
        "ours",
        "sem",
        "n",
        "size",
        "verdict",
        "report",
    ]
    assert row["verdict"] == REPRODUCED and row["experiment"] == "hebb-table"
    md = claims_table(cs, experiment=True, report=True)
    assert md.count("\n") == len(cs) + 1
    assert "-0.05" in md  # ours − paper is shown
    assert "[report](x/report.md)" in md
    rep = Report(tmp_path, "t", {}).add_claims(cs)
    text = rep.render()
    assert "not tested" not in text and "## Verdicts" in text and "not reproduced" in text


def test_claims_beyond_the_papers_have_their_own_words():
    from plasticlab.study.claims import BEYOND, KPZ, AtLeast, Claim, claims_table

    ok = Claim("x", BEYOND, "atlas", math.nan, 1.0, math.nan, 3, "quick", AtLeast(0.5))
    bad = ok.with_(ours=0.0)
    paper = ok.with_(paper=KPZ)
    assert (ok.word, bad.word, paper.word) == ("holds", "does not hold", "reproduced")
    assert ok.verdict == paper.verdict == "reproduced"  # one rule decides; only the word differs
    table = claims_table([ok, bad])
    assert "✅ holds" in table and "❌ does not hold" in table and "reproduced" not in table
    assert ok.row()["verdict"] == "holds" and ok.row()["kind"] == "beyond the papers"


def test_all_cells_claims_say_how_many_cells_pass():
    from plasticlab.study.claims import KPZ, AllCells, Claim

    c = Claim("every cell positive", KPZ, "Table 1", math.nan, 2 / 3, math.nan, 3, "quick", AllCells("> 0"))
    assert c.measured() == "2 of 3 cells pass"  # was "0.667 (cells = 3)"


def test_size_names_a_changed_shape_and_an_empty_default():
    from plasticlab.study import get

    exp = get("hebb-table")
    assert "widths [32, 32, 32, 32] (full [32, 64, 64, 32])" in exp.size(exp.params(widths=[32, 32, 32, 32]))
    cls = get("hebb-classify")
    if "data_path" in cls.defaults and cls.defaults["data_path"] == "":
        assert '(full "")' in cls.size(cls.params(data_path="x"))


def test_numbers_in_the_thousands_print_whole():
    from plasticlab.study.claims import KPZ, AtMost, Claim

    c = Claim("epochs", KPZ, "speed-up", 1090.0, 1202.0, math.nan, 40, "paper", AtMost(2000))
    assert c.measured() == "1202 (n = 40)"  # was "1.2e+03 (n = 40)" beside the paper's 1090
