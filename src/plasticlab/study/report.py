"""report.md writer: config, figures, our numbers beside the paper's, a verdict per claim.

Every number and figure in a report comes from the results table passed in; nothing is typed in, except the
paper's reference values, which are always labelled as the paper's and shown beside ours with the difference.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from plasticlab.study.claims import Claim, claims_table


def _fmt(x: Any, digits: int = 3) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "—"
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.{digits - 1}e}"
        return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits}f}".rstrip("0").rstrip(".") or "0"
    return str(x)


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a markdown table, floats to ``digits`` significant digits."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, digits) for v in row) + " |")
    return "\n".join(lines)


class Report:
    """Collects text, tables, figures and claims and writes OUT/report.md."""

    def __init__(self, out: Path | str, title: str, params: dict[str, Any]):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.params = params
        self.parts: list[str] = []
        self.verdicts: list[Claim] = []

    def text(self, md: str) -> Report:
        """Append a markdown paragraph (stripped)."""
        self.parts.append(md.strip())
        return self

    def table(self, df: pd.DataFrame, caption: str | None = None, digits: int = 3) -> Report:
        """Append ``df`` as a markdown table, floats to ``digits`` significant digits, under ``caption`` if any."""
        if caption:
            self.parts.append(f"**{caption}**")
        self.parts.append(markdown_table(df, digits))
        return self

    def figure(self, fig, name: str, caption: str) -> Report:
        """Save a matplotlib figure as OUT/name.png and link it."""
        import matplotlib.pyplot as plt

        fname = name if name.endswith(".png") else f"{name}.png"
        fig.savefig(self.out / fname, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.parts.append(f"![{caption}]({fname})\n\n*{caption}*")
        return self

    def add_claims(self, claims: list[Claim]) -> Report:
        """Claims with our numbers; rendered first, verdicts from ``plasticlab.study.claims.verdict``."""
        self.verdicts.extend(claims)
        return self

    def compare(
        self, ours: pd.DataFrame, paper: pd.DataFrame, on: list[str], value: str, caption: str
    ) -> pd.DataFrame:
        """Our value beside the paper's, with the difference; returns the joined table."""
        paper = paper.rename(columns={value: "paper"})
        if paper.empty:  # no paper cell for this run's grid: its key columns have no dtype to join on
            paper = paper.astype({k: ours[k].dtype for k in on})
        m = ours.merge(paper, on=on, how="outer")
        m = m.rename(columns={value: "ours"})
        m["ours − paper"] = m["ours"] - m["paper"]
        self.table(m[on + ["ours", "paper", "ours − paper"]], caption)
        return m

    def render(self) -> str:
        """The whole report as markdown: title, verdicts, the parts in order, then the configuration as JSON."""
        lines = [f"# {self.title}", ""]
        if self.verdicts:
            lines += ["## Verdicts", ""]
            sizes = {c.size for c in self.verdicts}
            one = len(sizes) == 1
            if one:
                lines += [f"Run size: {sizes.pop()}.", ""]
            lines += [claims_table(self.verdicts, size=not one), ""]
        lines += [p + "\n" for p in self.parts]
        lines += ["## Configuration", "", "```json", json.dumps(self.params, indent=2, default=str), "```", ""]
        return "\n".join(lines)

    def write(self) -> Path:
        """Write OUT/report.md and OUT/config.json; returns the report's path."""
        path = self.out / "report.md"
        path.write_text(self.render())
        (self.out / "config.json").write_text(json.dumps(self.params, indent=2, default=str))
        return path


def _is_legacy(exp: Any) -> bool:
    """An experiment that still writes its own report (being moved onto :func:`write_report`'s layout)."""
    return callable(getattr(exp, "report", None))


def write_report(exp: Any, df: pd.DataFrame, p: dict[str, Any], out: Path | str) -> list[Claim]:
    """Write OUT/report.md and its figures for experiment ``exp`` and return its claims.

    ``exp.claims`` is called exactly once here; the report, ``reproduce`` and the scoreboard all use the list
    returned, each claim stamped with the run's size. Every report has the same layout: title, verdicts (the
    paper's value beside ours with the difference), notes, figures, tables, configuration.
    """
    size = exp.size(p)
    claims = [c.with_(size=size) for c in exp.claims(df, p)]
    if _is_legacy(exp):
        exp.report(df, p, Path(out))
        return claims
    rep = Report(out, f"{exp.name} — {exp.title or exp.summary}", p).add_claims(claims)
    if notes := exp.notes(p).strip():
        rep.text(notes)
    for f in exp.figures(df, p):
        rep.figure(f.fig, f.name, f.caption)
    for t in exp.tables(df, p):
        rep.table(t.frame, t.caption, t.digits)
    for name, frame in exp.files(df, p).items():
        path = rep.out / name
        frame.to_parquet(path, index=False) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    rep.write()
    return claims
