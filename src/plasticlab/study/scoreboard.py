"""The scoreboard: every experiment's claims in one table, the papers' claims counted apart from the checks
beyond them (``OUT/SCOREBOARD.md`` and ``OUT/scoreboard.csv``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from plasticlab.study.claims import BEYOND_WORDS, ICONS, VERDICTS, Claim, claims_table
from plasticlab.study.report import markdown_table

ROBUSTNESS = Path("hebb-conventions") / "robustness.csv"
"""The conventions study's robustness table, relative to the collection folder (one row per Part A claim)."""
SUMMARIES = ("robust", "convention-dependent", "fails under every convention", "not stationary", "not run")


@dataclass
class Outcome:
    """One experiment's part of the scoreboard: its claims, and why it has none if so."""

    name: str
    claims: list[Claim] = field(default_factory=list)
    status: str = "ok"  # ok | all diverged | missing | failed
    message: str = ""
    seconds: float = math.nan
    chunks: int = 0
    chunk_hours: float = math.nan  # summed wall time of the grid's chunks (one core each), from the manifest
    earlier_hours: float = 0.0  # the same for finished chunks of earlier runs kept in the folder
    size: str = ""


COLUMNS = [
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


def scoreboard_frame(outcomes: list[Outcome]) -> pd.DataFrame:
    """One row per claim with the scoreboard's columns (plus the test and the diverged count)."""
    rows = [c.row() for oc in outcomes for c in oc.claims]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]


def render_scoreboard(outcomes: list[Outcome], *, quick: bool, robustness: pd.DataFrame | None = None) -> str:
    """SCOREBOARD.md: verdict counts, the Part A robustness section, experiments without claims, then every
    claim. ``robustness``: the conventions study's table (None: the study was not run)."""
    claims = [c for oc in outcomes for c in oc.claims]
    size = "quick (small) size" if quick else "the sizes stated in each row"
    lines = [
        "# Scoreboard: does each claim of the two papers hold?",
        "",
        f"Papers: Koplow, Poggio & Ziyin 2025 (emergent Hebbian dynamics under weight decay) and Ninou, Kadmon & "
        f"Cayco-Gajic 2025 (curl descent). Runs at {size}; every number below is computed from the run's own "
        "results table, verdicts by one rule (`plasticlab.study.claims.verdict`): reproduced / partly (narrow "
        "miss: within the test's looser bound or 2 standard errors) / not reproduced / not run (nothing "
        "measured). Checks the papers do not make (their paper column says *beyond the papers*) use their own "
        "words, from the same rule: holds / partly / does not hold / not run.",
        "",
        f"**{headline(scoreboard_frame(outcomes))}**",
        "",
        *robustness_section(robustness),
    ]
    lines += [
        "| experiment | size | chunks | compute (chunk-hours) | status |",
        "|---|---|---|---|---|",
    ]
    for oc in outcomes:
        hours = "—" if math.isnan(oc.chunk_hours) else f"{oc.chunk_hours:.3g}"
        if oc.earlier_hours > 0:
            hours += f" (+ {oc.earlier_hours:.3g} earlier runs)"
        lines.append(f"| {oc.name} | {oc.size or '—'} | {oc.chunks} | {hours} | {oc.status} |")
    lines += [
        "",
        "Compute = the summed wall time of the run's chunks, each on one core, as the sweep manifest recorded "
        "it (on a loaded machine an upper bound of CPU time), counting the chunks of the run's own grid; "
        '"earlier runs" is the compute of chunks of earlier, differently sized runs kept in its folder.',
        "",
    ]
    bad = [oc for oc in outcomes if oc.status != "ok"]
    if bad:
        lines += ["| experiment | problem |", "|---|---|"]
        lines += [f"| {oc.name} | {oc.status}: {oc.message} |" for oc in bad]
        lines.append("")
    lines += [claims_table(claims, experiment=True, report=True), ""]
    return "\n".join(lines)


def write_scoreboard(out: Path, outcomes: list[Outcome], *, quick: bool) -> None:
    """Write OUT/SCOREBOARD.md and OUT/scoreboard.csv (with the robustness section when OUT holds the
    conventions study's table)."""
    scoreboard_frame(outcomes).to_csv(out / "scoreboard.csv", index=False)
    rob = pd.read_csv(out / ROBUSTNESS, keep_default_na=False) if (out / ROBUSTNESS).is_file() else None
    (out / "SCOREBOARD.md").write_text(render_scoreboard(outcomes, quick=quick, robustness=rob))


def robustness_counts(rob: pd.DataFrame) -> dict[str, int]:
    """How many Part A claims are robust / convention-dependent / fail under every convention / not
    stationary / not run (a convention-dependent summary names its conventions after the word)."""
    words = rob["summary"].astype(str)
    return {w: int(words.str.startswith(w).sum()) for w in SUMMARIES}


def robustness_section(rob: pd.DataFrame | None) -> list[str]:
    """The scoreboard's lines on Part A under each reading of the paper's conventions."""
    head = ["## Part A under each convention (loss normalisation, layer init, where noise enters)", ""]
    if rob is None:
        return [*head, f"The conventions study (hebb-conventions) was not run: no {ROBUSTNESS.as_posix()}.", ""]
    n = robustness_counts(rob)
    text = ", ".join(f"{v} {k}" for k, v in n.items() if v or k != "not run")
    return [
        *head,
        f"**{len(rob)} Part A claims of hebb-table and hebb-phase: {text}.** The headline above counts them under "
        "the default convention (half_sum/plain) at each experiment's own size; here each is judged under every "
        "convention the conventions study ran, at that study's size ([its report](hebb-conventions/report.md)), "
        "a claim whose decay had not reached its stationary state (lr·γ·T < 5) marked as such rather than scored.",
        "",
        markdown_table(rob),
        "",
    ]


def headline(board: pd.DataFrame) -> str:
    """The count in words from a scoreboard table (``verdict`` holds each row's word, ``kind`` says paper or
    beyond): ``160 claims of the papers: ✅ 104 reproduced, …; 12 checks beyond the papers: ✅ 10 holds, …``."""
    words = board["verdict"].astype(str)
    beyond = board["kind"].eq("beyond the papers") if "kind" in board else pd.Series(False, index=board.index)
    paper = words[~beyond].tolist()
    text = f"{len(paper)} claims of the papers: " + ", ".join(f"{ICONS[v]} {paper.count(v)} {v}" for v in VERDICTS)
    others = words[beyond].tolist()
    if others:
        names = [BEYOND_WORDS[v] for v in VERDICTS]
        text += f"; {len(others)} checks beyond the papers: " + ", ".join(
            f"{ICONS[w]} {others.count(w)} {w}" for w in names
        )
    return text
