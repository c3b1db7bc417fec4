"""Claims as data: what a paper says, what we measured, and one verdict rule for every experiment.

A :class:`Claim` is one statement of a paper (text, paper, table/figure/section, the paper's value where it
gives one) beside our measurement (mean, sem, n, the size it was run at) and the *criterion* the verdict is
computed from. :func:`verdict` is the only place a verdict word is decided; every report and the scoreboard
use it, so the same numbers always give the same word:

- ``reproduced``     the criterion holds for our mean;
- ``partly``         it fails, but only narrowly: within the criterion's looser ``partly`` bound, or within
  two standard errors of the boundary (our data cannot tell the two apart);
- ``not reproduced`` it fails clearly, or every run diverged (a measured failure is never "not run");
- ``not run``        nothing was measured (n = 0 and no diverged run, or our value is NaN; ±inf is a value).

Criteria (all small frozen dataclasses with ``check`` and ``describe``):

- :class:`AtMost` / :class:`AtLeast`: our value against a threshold (``AtLeast(0)`` is a sign test);
- :class:`Within`: a tolerance (absolute or relative) around the paper's value;
- :class:`AllCells`: our value is the fraction of cells (of a grid) that pass a per-cell test, e.g. a sign
  or monotonicity test; reproduced when every cell passes, partly above a fraction.

Example::

    from plasticlab.study.claims import KPZ, AtMost, Claim, measure
    mean, sem, n = measure(df["rel_error"])
    c = Claim("Theorem holds for SGD to 10 %", KPZ, "stationarity theorem", math.nan, mean, sem, n, "quick",
              AtMost(0.10))
    c.verdict  # 'reproduced' / 'partly' / 'not reproduced' / 'not run'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, Protocol

import numpy as np

REPRODUCED: Final = "reproduced"
PARTLY: Final = "partly"
NOT_REPRODUCED: Final = "not reproduced"
NOT_RUN: Final = "not run"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_RUN)
Verdict = Literal["reproduced", "partly", "not reproduced", "not run"]

KPZ = "Koplow, Poggio & Ziyin 2025"
"""Part A paper: "Emergence of Hebbian Dynamics in Regularized Non-Local Learners" (arXiv 2505.18069)."""
NKC = "Ninou, Kadmon & Cayco-Gajic 2025"
"""Part B paper: curl descent (non-gradient learning with sign-flipped plasticity)."""

BEYOND = "beyond the papers"
"""The paper field of a claim neither paper makes (a consequence we test, or a check of the toolkit)."""

SEM_SLACK = 2.0
"""A miss by at most this many standard errors of our mean is 'partly', not 'not reproduced'."""

HOLDS: Final = "holds"
DOES_NOT_HOLD: Final = "does not hold"
BEYOND_WORDS = {REPRODUCED: HOLDS, PARTLY: PARTLY, NOT_REPRODUCED: DOES_NOT_HOLD, NOT_RUN: NOT_RUN}
"""The words of a claim beyond the papers: nothing to reproduce, so it holds / partly / does not hold."""

ICONS = {
    REPRODUCED: "✅",
    PARTLY: "🟡",
    NOT_REPRODUCED: "❌",
    NOT_RUN: "⚪",
    HOLDS: "✅",
    DOES_NOT_HOLD: "❌",
}


class Criterion(Protocol):
    """How a claim's numbers turn into pass / narrow miss / clear miss."""

    def check(self, ours: float, sem: float, paper_value: float) -> Verdict:
        """The verdict for a finite measurement (``verdict`` handles not run / diverged first)."""
        ...

    def describe(self) -> str:
        """The test in a few words, e.g. ``≤ 0.1`` or ``within ±10 % of paper``."""
        ...


def _slack(sem: float) -> float:
    return SEM_SLACK * sem if math.isfinite(sem) and sem > 0 else 0.0


@dataclass(frozen=True)
class AtMost:
    """Reproduced if ours ≤ limit; partly if ours ≤ ``partly`` (a looser limit) or within 2 sem of limit."""

    limit: float
    partly: float | None = None

    def check(self, ours: float, sem: float, paper_value: float) -> Verdict:
        """See class docstring."""
        if ours <= self.limit:
            return REPRODUCED
        if ours - _slack(sem) <= self.limit or (self.partly is not None and ours <= self.partly):
            return PARTLY
        return NOT_REPRODUCED

    def describe(self) -> str:
        """``≤ limit``."""
        return f"≤ {_num(self.limit)}"


@dataclass(frozen=True)
class AtLeast:
    """Reproduced if ours ≥ limit; partly if ours ≥ ``partly`` (a looser limit) or within 2 sem of limit."""

    limit: float
    partly: float | None = None

    def check(self, ours: float, sem: float, paper_value: float) -> Verdict:
        """See class docstring."""
        if ours >= self.limit:
            return REPRODUCED
        if ours + _slack(sem) >= self.limit or (self.partly is not None and ours >= self.partly):
            return PARTLY
        return NOT_REPRODUCED

    def describe(self) -> str:
        """``≥ limit``."""
        return f"≥ {_num(self.limit)}"


@dataclass(frozen=True)
class Within:
    """Reproduced if |ours − paper| ≤ tol (absolute, or a fraction of |paper| with ``relative=True``).

    Partly if the gap is ≤ ``partly`` (same units as tol; default 2·tol) or within 2 sem of the tolerance.
    """

    tol: float
    relative: bool = False
    partly: float | None = None

    def _scale(self, paper_value: float) -> float:
        return abs(paper_value) if self.relative else 1.0

    def check(self, ours: float, sem: float, paper_value: float) -> Verdict:
        """See class docstring; a NaN paper value cannot be compared and counts as a clear miss."""
        if not math.isfinite(paper_value):
            return NOT_REPRODUCED
        gap = abs(ours - paper_value)
        scale = self._scale(paper_value)
        loose = (2 * self.tol if self.partly is None else self.partly) * scale
        if gap <= self.tol * scale:
            return REPRODUCED
        if gap - _slack(sem) <= self.tol * scale or gap <= loose:
            return PARTLY
        return NOT_REPRODUCED

    def describe(self) -> str:
        """``within ±tol of paper``."""
        tol = f"{self.tol:.0%}" if self.relative else _num(self.tol)
        return f"within ±{tol} of paper"


@dataclass(frozen=True)
class AllCells:
    """Ours is the fraction of cells passing a per-cell test: all → reproduced; ≥ ``partly`` → partly.

    The claim's n is the number of cells; its sem is ignored (cells are not samples of one quantity).
    """

    test: str
    partly: float = 0.5

    def check(self, ours: float, sem: float, paper_value: float) -> Verdict:
        """See class docstring."""
        if ours >= 1.0 - 1e-12:
            return REPRODUCED
        return PARTLY if ours >= self.partly else NOT_REPRODUCED

    def describe(self) -> str:
        """``all cells: <test>``."""
        return f"all cells: {self.test}"


@dataclass(frozen=True)
class Claim:
    """One claim of a paper beside our measurement; ``verdict`` is computed, never stored.

    ``paper_value`` is NaN when the paper gives no number. ``size`` says what the measurement was run at:
    ``"quick"``, ``"paper"`` or the exact reduction (e.g. ``"10 of 40 seeds"``). ``diverged`` counts runs that
    diverged and were left out of ours/sem/n. ``experiment`` and ``report`` are filled in by whoever collects
    claims across experiments (the scoreboard).
    """

    claim: str
    paper: str
    source: str
    paper_value: float
    ours: float
    sem: float
    n: int
    size: str
    criterion: Criterion
    diverged: int = 0
    note: str = ""
    experiment: str = ""
    report: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def verdict(self) -> Verdict:
        """The shared verdict of this claim (see :func:`verdict`)."""
        return verdict(self)

    @property
    def beyond(self) -> bool:
        """True for a claim neither paper makes (its ``paper`` is :data:`BEYOND`)."""
        return self.paper == BEYOND

    @property
    def word(self) -> str:
        """The verdict as a reader sees it: a paper's claim is reproduced / partly / not reproduced / not run;
        a claim beyond the papers holds / partly / does not hold / not run (nothing there to reproduce)."""
        return BEYOND_WORDS[self.verdict] if self.beyond else self.verdict

    def with_(self, **changes: Any) -> Claim:
        """A copy with some fields replaced (e.g. ``experiment=``, ``report=``, ``size=``)."""
        return replace(self, **changes)

    def measured(self) -> str:
        """Our measurement in words: ``0.12 ± 0.01 (n = 10)``, or why there is none."""
        if self.n == 0 and self.diverged:
            return f"all {self.diverged} runs diverged" + (f"; {self.note}" if self.note else "")
        if self.n == 0 or math.isnan(self.ours):
            return "nothing measured" + (f"; {self.note}" if self.note else "")
        if isinstance(self.criterion, AllCells) and math.isfinite(self.ours):
            s = f"{round(self.ours * self.n)} of {self.n} cells pass"
        else:
            s = _num(self.ours)
            if math.isfinite(self.sem) and self.n > 1:
                s += f" ± {_num(self.sem)}"
            s += f" (n = {self.n})"
        if self.diverged:
            s += f", {self.diverged} diverged"
        return s + (f"; {self.note}" if self.note else "")

    def row(self) -> dict[str, Any]:
        """The scoreboard row (experiment … verdict, report), then the test and the diverged count."""
        return dict(
            experiment=self.experiment,
            paper=self.paper,
            source=self.source,
            claim=self.claim,
            paper_value=self.paper_value,
            ours=self.ours,
            sem=self.sem,
            n=self.n,
            size=self.size,
            verdict=self.word,
            report=self.report,
            criterion=self.criterion.describe(),
            diverged=self.diverged,
            kind="beyond the papers" if self.beyond else "paper",
        )


def verdict(c: Claim) -> Verdict:
    """The one verdict rule: not run / all diverged first, then the claim's criterion."""
    n_ok = c.n is not None and not (isinstance(c.n, float) and math.isnan(c.n)) and c.n > 0
    if not n_ok:
        return NOT_REPRODUCED if c.diverged else NOT_RUN
    if c.ours is None or math.isnan(float(c.ours)):
        return NOT_RUN  # ±inf is a measurement (e.g. a rule that never converged) and goes to the criterion
    pv = math.nan if c.paper_value is None else float(c.paper_value)
    sem = math.nan if c.sem is None else float(c.sem)
    return c.criterion.check(float(c.ours), sem, pv)


def measure(values: Iterable[float] | np.ndarray) -> tuple[float, float, int]:
    """Mean, standard error and count of the finite values (NaN / inf — diverged or collapsed — left out)."""
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, 0
    sem = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return float(x.mean()), sem, n


def fraction(passes: Sequence[bool] | np.ndarray) -> tuple[float, int]:
    """Fraction of cells passing and the number of cells (for :class:`AllCells`); (NaN, 0) when empty."""
    p = np.asarray(passes, dtype=bool).ravel()
    return (float(p.mean()), int(p.size)) if p.size else (math.nan, 0)


def counts(claims: Iterable[Claim]) -> dict[str, int]:
    """How many claims got each verdict (all four keys present)."""
    out = dict.fromkeys(VERDICTS, 0)
    for c in claims:
        out[c.verdict] += 1
    return out


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    x = float(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.2e}"
    if abs(x) >= 1000:
        return f"{x:.0f}"  # epochs and counts: 1202, never 1.2e+03 beside a paper's 1090
    return f"{x:.3g}"


def claims_table(
    claims: Sequence[Claim], *, experiment: bool = False, report: bool = False, size: bool = True
) -> str:
    """A markdown table of claims: paper value, ours ± sem (n), the difference, the test and the verdict."""
    head = (["experiment"] if experiment else []) + [
        "claim",
        "paper (source)",
        "paper value",
        "ours",
        "ours − paper",
        "test",
    ]
    head += (["size"] if size else []) + ["verdict"]
    head += ["report"] if report else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in claims:
        diff = c.ours - c.paper_value if math.isfinite(c.paper_value) and math.isfinite(c.ours) else math.nan
        cells = ([c.experiment] if experiment else []) + [
            c.claim,
            f"{c.paper}, {c.source}",
            _num(c.paper_value),
            c.measured(),
            _num(diff),
            c.criterion.describe(),
        ]
        cells += ([c.size] if size else []) + [f"{ICONS[c.word]} {c.word}"]
        if report:
            cells.append(f"[report]({c.report})" if c.report else "")
        lines.append("| " + " | ".join(s.replace("|", "\\|") for s in cells) + " |")
    return "\n".join(lines)
