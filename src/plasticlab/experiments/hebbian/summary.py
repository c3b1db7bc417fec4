"""results/part-a.md: what each Part A mismatch study finds, a read-only view of the committed runs.

    python -m plasticlab.experiments.hebbian.summary results      # rewrites results/part-a.md

A view, not an experiment: it runs nothing. Every number comes from a committed folder's own table through
its experiment's ``claims(df, p)``, stamped with the run's size as :func:`plasticlab.study.report.write_report`
stamps it (the same verdicts the reports and the scoreboard show), rendered by the framework's
:func:`~plasticlab.study.claims.claims_table`; the side tables (both Adam forms, DFA at γ = 0 by width and
length, the theorem's unscored rows) are DataFrames rendered by :func:`~plasticlab.study.report.markdown_table`.
A folder that is missing, or whose sweep has finished only some chunks, is said to be so; nothing is filled
in by hand.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from plasticlab.experiments.hebbian.dfa import by_length
from plasticlab.experiments.hebbian.paper import TABLE1_GAMMAS, TABLE1_MLP, TABLE1_MLP_DFA0
from plasticlab.experiments.hebbian.theorem import theorem_table
from plasticlab.study import get
from plasticlab.study.claims import Claim, claims_table, counts, measure
from plasticlab.study.report import markdown_table

PAPER_DFA0 = TABLE1_MLP_DFA0


@dataclass(frozen=True)
class Study:
    """One committed folder of a Part A study: what it asks and the command that made it."""

    folder: str
    question: str
    command: str
    reduced: str


FINDINGS: list[tuple[str, str, list[Study]]] = [
    (
        "Adam row of Table 1: decoupled decay (AdamW) or coupled L2?",
        "Both forms measured on the same quantity, −∂ℓ/∂W of layer 2. The paper's row rises with γ: compare each "
        "form's rise claim. `hebb-adam-mean-loss` reads the paper's γ with torch's mean-reduced loss (γ × 16 in "
        "our ½‖·‖² convention).",
        [
            Study("hebb-adam", "coupled L2", "plasticlab run hebb-adam --set rules=adam_l2", "coupled Adam only"),
            Study(
                "hebb-adam-decoupled",
                "decoupled decay",
                "plasticlab run hebb-adam --set rules=adam --set adam_lrs=1e-2 --set seeds=0,1,2",
                "3 of 5 seeds",
            ),
            Study(
                "hebb-adam-mean-loss",
                "coupled L2, mean-reduced loss",
                "plasticlab run hebb-adam --set rules=adam_l2 --set lrs=1e-3,1e-2 --set gammas=0,8e-4,8e-3,8e-2 "
                "--set seeds=0,1,2,3,4 --set gamma_factor=16",
                "10000 steps (the experiment's default)",
            ),
        ],
    ),
    (
        "SGD row of Table 1: plain SGD or SGD with momentum?",
        "The paper does not say. `sgd:momentum=0.9` is torch's `SGD(lr, momentum=0.9, weight_decay=γ)` (the L2 "
        "term goes through the momentum buffer); both forms at the same lr, steps and seeds, each set beside the "
        "paper's SGD row. The heavy ball is a ≈ 10× larger step on gradient and decay alike: stationary sooner "
        "(plain SGD at γ = 5e-4 has lr·γ·T = 1 here, not yet stationary), with more step noise.",
        [
            Study(
                "hebb-table-momentum",
                "momentum 0 vs 0.9",
                "plasticlab run hebb-table --set rules=sgd,sgd:momentum=0.9 --set seeds=0,1,2 --set steps=20000 "
                "--set n_val=500 --set dtype=float32",
                "3 seeds, 2e4 steps (1e5 in the paper-size table)",
            )
        ],
    ),
    (
        "DFA at γ = 0: is it Hebbian without decay (Table 1: 0.45)?",
        "Layer-2 alignment at γ = 0 as a run of T steps would report it (mean over [¾T, T]), per depth, width, "
        "feedback scale and teacher scale; the table below collects every 4-matrix, scale-1 run by width and T.",
        [
            Study(
                "hebb-dfa",
                "depth, width, feedback and teacher scale, T ≤ 30000",
                "plasticlab run hebb-dfa",
                "the experiment's default: 7 shapes, T ≤ 30000 steps, 5 seeds",
            ),
            Study(
                "hebb-dfa-width",
                "hidden width 16–128, T ≤ 2e4",
                "plasticlab run hebb-dfa --set shapes=4x16x1x20000,4x32x1x20000,4x64x1x20000,4x128x1x20000 "
                "--set scales=1 --set seeds=0,1,2 --set every=200 --set lengths=1000,3000,10000,20000",
                "3 seeds, feedback scale 1",
            ),
            Study(
                "hebb-dfa-long",
                "width 16 to 2e5 steps",
                "plasticlab run hebb-dfa --set shapes=4x16x1x200000 --set scales=1 --set seeds=0,1 "
                "--set every=1000 --set lengths=3000,10000,30000,100000,200000",
                "2 seeds, one width",
            ),
        ],
    ),
    (
        "Transformer rows of Table 1",
        "Stationarity under decoupled decay needs ≳ 5/(lr·γ) steps (10⁵–10⁶ at the paper's γ with lr 1e-2), out "
        "of reach here except at γ = 5e-2; coupled L2 is normalised by Adam and settles much sooner. "
        "`hebb-transformer-mean-loss` reads the paper's γ with torch's mean-reduced loss (γ × 16 in our ½‖·‖² "
        "convention), as `hebb-adam-mean-loss` does for the MLP.",
        [
            Study(
                "hebb-transformer-adam-forms",
                "both Adam forms, 1 seed, 3000 steps",
                "plasticlab run hebb-transformer --set rules=adam,adam_l2 --set gammas=5e-4,5e-3 --set seeds=0 "
                "--set steps=3000 --set batch_size=128 --set every=10",
                "1 seed, 3000 steps, batch 128",
            ),
            Study(
                "hebb-transformer-adam-l2",
                "coupled L2 at the paper's γ, 2 seeds",
                "plasticlab run hebb-transformer --set rules=adam_l2 --set gammas=0,5e-4,5e-3 --set seeds=0,1 "
                "--set steps=6000 --set batch_size=128 --set every=10",
                "2 seeds, 6000 steps, batch 128",
            ),
            Study(
                "hebb-transformer-adamw-5e-2",
                "decoupled decay where 5/(lr·γ) fits (γ = 5e-2)",
                "plasticlab run hebb-transformer --set rules=adam --set gammas=5e-2 --set seeds=0,1 "
                "--set steps=10000 --set batch_size=128 --set every=10",
                "2 seeds, one γ beyond the paper's",
            ),
            Study(
                "hebb-transformer-mean-loss",
                "coupled L2, mean-reduced loss (γ × 16)",
                "plasticlab run hebb-transformer --set rules=adam_l2 --set gammas=0,8e-4,8e-3,8e-2 "
                "--set gamma_factor=16 --set seeds=0,1 --set steps=6000 --set batch_size=128 --set every=10",
                "2 seeds, 6000 steps, batch 128",
            ),
        ],
    ),
    (
        "The stationarity theorem's error for Adam and Oja",
        "The error splits into a drift term (the window is not yet stationary) and a jitter term (the weights' "
        "own fluctuation); each non-local rule is tested on the identity its stationarity implies. Oja (a local "
        "rule) and decoupled Adam on its raw gradient are outside the paper's claim: measured, not scored.",
        [
            Study(
                "hebb-theorem-steps2000",
                "the quick size whose errors were in question",
                "plasticlab run hebb-theorem --set rules=sgd,adam,adam_l2,dfa,random_nn,oja --set seeds=0,1 "
                "--set gammas=0.02 --set widths=32,32,32,32 --set steps=2000 --set n_train=5000 --set n_val=500 "
                "--set dtype=float32",
                "2 seeds, 2000 steps, width 32",
            )
        ],
    ),
    (
        "Lowest validation loss near the alignment ≈ 0 band",
        "A σ × γ grid per setting; the alignment at the validation-optimal cell.",
        [
            Study(
                "hebb-valopt",
                "five settings",
                "plasticlab run hebb-valopt",
                "the experiment's default: 3 seeds, 4 σ × 6 γ, 5000 steps",
            )
        ],
    ),
]


def load(folder: Path) -> tuple[pd.DataFrame, dict, str, str] | None:
    """A committed run: its table (results.parquet, else the finished parts), params, experiment and state."""
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return None
    m = json.loads(manifest.read_text())
    chunks = m.get("chunks", {})
    done = sum(c.get("state") == "done" for c in chunks.values())
    if (folder / "results.parquet").exists():
        df, state = pd.read_parquet(folder / "results.parquet"), "finished"
    else:
        parts = sorted((folder / "parts").glob("*.parquet"))
        if not parts:
            return None
        df = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
        state = f"{done} of {len(chunks)} chunks finished"
    exp = get(m["experiment"])
    return df, exp.params(**m["params"]), m["experiment"], state


def folder_claims(root: Path, folder: str) -> tuple[list[Claim], str]:
    """The folder's claims (its experiment's ``claims``) and its state; no claims when it is missing."""
    got = load(root / folder)
    if got is None:
        return [], "not committed"
    df, p, name, state = got
    exp, rep = get(name), f"{folder}/report.md"
    size = exp.size(p)
    return [c.with_(experiment=folder, report=rep, size=size) for c in exp.claims(df, p)], state


def dfa_length_width(root: Path) -> pd.DataFrame:
    """Layer-2 DFA alignment at γ = 0 of every 4-matrix, feedback-scale-1, teacher-scale-1 run by width and T:
    the hebb-dfa folders (mean over [¾T, T]) and hebb-table's DFA γ = 0 cell (its own late window)."""
    rows = []
    for folder in sorted(p.name for p in root.glob("hebb-dfa*") if p.is_dir()):
        got = load(root / folder)
        if got is None:
            continue
        df, p, _, _ = got
        t = by_length(df, p["lengths"])
        t = t[(t.depth == 4) & (t.teacher_scale == 1.0) & (t.scale == 1.0)]
        rows += [dict(r, source=folder) for r in t[["width", "T", "alignment", "sem", "n"]].to_dict("records")]
    got = load(root / "hebb-table")
    if got is not None:
        df, p, _, _ = got
        d = df[(df.rule == "dfa") & (df.gamma == 0.0) & (df.layer == 1) & ~df.diverged]
        if len(d) and list(p["widths"][1:-1]) == [p["widths"][1]] * 2 and len(p["widths"]) == 4:
            mean, sem, n = measure(d.alignment)
            rows.append(
                dict(
                    source="hebb-table", width=int(p["widths"][1]), T=int(p["steps"]), alignment=mean, sem=sem, n=n
                )
            )
    return pd.DataFrame(rows, columns=["source", "width", "T", "alignment", "sem", "n"])


def _fmt(x: float) -> str:
    return "—" if pd.isna(x) else f"{x:+.3f}"


def dfa_section(root: Path) -> list[str]:
    """The DFA width × length table and the sentence on the paper's 0.45, both from the table."""
    t = dfa_length_width(root)
    if t.empty:
        return ["No DFA run committed."]
    cell = t.assign(
        v=[
            f"{_fmt(a)} ± {s:.3f} (n = {n})" if n > 1 else f"{_fmt(a)} (n = 1)"
            for a, s, n in zip(t.alignment, t["sem"], t.n)
        ]
    )
    wide = cell.pivot_table(index=["width", "source"], columns="T", values="v", aggfunc="first")
    wide.columns = [f"T = {c:g}" for c in wide.columns]
    lines = [
        "**Layer-2 DFA alignment at γ = 0 by hidden width and training length T** (nets [32, w, w, 32], tanh, "
        "lr 0.1, batch 256, feedback scale 1; mean ± sem over seeds; paper: "
        f"{PAPER_DFA0} ± 0.05, Koplow, Poggio & Ziyin 2025, Table 1)",
        "",
        markdown_table(wide.reset_index().fillna("")),
    ]
    best = t.loc[t.alignment.idxmax()]
    near = t[(t.alignment - PAPER_DFA0).abs() <= 0.1]
    lines += [
        "",
        f"Largest value in this table: {_fmt(best.alignment)} (width {int(best.width)}, T = {int(best['T']):g}, "
        f"{best.source}); spread of all {len(t)} entries: {_fmt(t.alignment.min())} to {_fmt(t.alignment.max())}. "
        + (
            f"{len(near)} entries lie within ±0.1 of the paper's {PAPER_DFA0}."
            if len(near)
            else f"None lies within ±0.1 of the paper's {PAPER_DFA0}: neither longer training nor another "
            "width makes DFA Hebbian without decay in this regression."
        ),
    ]
    return lines


def adam_forms_section(root: Path) -> list[str]:
    """Both Adam forms side by side in the hebb-table run (the paper's size), per γ, with the paper's row."""
    got = load(root / "hebb-table")
    if got is None:
        return ["No hebb-table run committed."]
    df, p, _, state = got
    forms = {"adam": "adam (decoupled decay, AdamW)", "adam_l2": "adam_l2 (coupled L2, Adam(weight_decay))"}
    rows = []
    for g, pv in zip(TABLE1_GAMMAS, TABLE1_MLP["adam"]):
        row = {"γ": f"{g:g}", "paper (Table 1, Adam row)": "— (collapse)" if pd.isna(pv) else f"{pv:+.2f}"}
        stat = []
        for rule, label in forms.items():
            d = df[(df.rule == rule) & (df.gamma == g) & (df.layer == 1) & ~df.diverged]
            row[label] = _form_cell(d)
            stat.append(f"{float(d.lr.iloc[0]) * g * p['steps']:g}" if len(d) else "—")
        rows.append({**row, "lr·γ·T (adam, adam_l2)": ", ".join(stat)})
    lines = [
        f"**Both Adam forms in the hebb-table run** ({len(p['seeds'])} seeds, T = {p['steps']:g} steps, "
        f"adam lr {p['adam_lr']:g}, {state}; 2nd-layer alignment, mean ± sem over the seeds whose weights did not "
        "collapse to 0; paper: Koplow, Poggio & Ziyin 2025, Table 1, where — is a collapse)",
        "",
        markdown_table(pd.DataFrame(rows)),
    ]
    lines += [
        "",
        "lr·γ·T ≥ 5 is the stationarity condition of a decoupled decay (≈ e⁻⁵ of the start left); coupled L2 "
        "is normalised by Adam, so its own relaxation is not lr·γ.",
    ]
    return lines


def _form_cell(d: pd.DataFrame) -> str:
    """One Adam form at one γ: mean ± sem over the seeds that did not collapse, and the collapse count."""
    if d.empty:
        return "not run yet"
    kept = d[~d.collapsed.astype(bool)]
    mean, sem, n = measure(kept.alignment) if len(kept) else (float("nan"), float("nan"), 0)
    spread = f" ± {sem:.2g}" if n > 1 else ""
    return f"{_fmt(mean)}{spread} (n = {n}); collapsed {len(d) - len(kept)} of {len(d)}"


def unscored_section(root: Path, folder: str) -> list[str]:
    """The rows of a hebb-theorem folder that carry no verdict (rules and signals outside the paper's claim),
    as measurements: the mean relative error and its drift and jitter terms per rule and identity."""
    got = load(root / folder)
    if got is None or got[2] != "hebb-theorem":
        return []
    t = theorem_table(got[0], got[1]["rules"])
    t = t[~t.scored]
    if t.empty:
        return []
    by = t.groupby(["rule", "identity"], sort=False)
    m = by[["rel_error_mean", "drift_term", "jitter_term"]].mean().reset_index()
    m["runs × layers"] = by.n.sum().to_numpy().astype(int)
    return [
        f"**`{folder}`: rows measured without a verdict** (the paper's theorem does not cover them)",
        "",
        markdown_table(m),
        "",
    ]


def conventions_section(root: Path) -> list[str]:
    """Every Table 1 and phase-diagram claim not reproduced under today's convention (the hebb-table and
    hebb-phase folders, as the scoreboard reads them), with its class from the conventions study's
    robustness.csv: robust, convention-dependent (and where it holds), fails under every convention, or not
    stationary at the study's size. Other Part A studies ran under one convention only, and say so."""
    from plasticlab.experiments.hebbian.conventions import claim_key

    path = root / "hebb-conventions" / "robustness.csv"
    rob = pd.read_csv(path, keep_default_na=False) if path.exists() else None
    rows = []
    for folder in ("hebb-table", "hebb-phase"):
        for c in folder_claims(root, folder)[0]:
            if c.verdict not in ("not reproduced", "partly"):
                continue
            hit = None if rob is None else rob[(rob.experiment == folder) & (rob.claim == claim_key(c.claim))]
            row = dict(experiment=folder, claim=c.claim, today=c.verdict)
            if hit is not None and len(hit):
                row |= {k: v for k, v in hit.iloc[0].items() if k not in ("experiment", "claim")}
            else:
                row["summary"] = "conventions study not run" if rob is None else "not among the study's claims"
            rows.append(row)
    if not rows:
        return []
    t = pd.DataFrame(rows).fillna("—")
    t = t[[c for c in t.columns if c != "summary"] + ["summary"]]
    n = t.summary.str.split(" (", regex=False).str[0].value_counts()
    return [
        "## Former ❌ and ⚠️ of Table 1 and the phase diagram, by convention",
        "",
        "Each claim not reproduced (or partly) under today's convention (½‖out − y‖² summed over outputs, "
        "bias-free N(0, 1/fan_in) layers, noise on the forward weights), beside its verdicts in "
        "`hebb-conventions` (a stated, shorter run: see its report) under the other readings of the paper. "
        + "Claims per class: "
        + "; ".join(f"{k}: {v}" for k, v in n.items())
        + ".",
        "",
        markdown_table(t),
        "",
    ]


def per_rule_cells(claims: list[Claim]) -> str:
    """How many Table 1 cells each rule of the claims reproduces (cell claims read "<rule>, γ = …")."""
    by: dict[str, list[Claim]] = {}
    for c in claims:
        if ", γ = " in c.claim:
            by.setdefault(c.claim.split(", γ = ")[0], []).append(c)
    parts = [f"`{r}` {sum(c.verdict == 'reproduced' for c in cs)} of {len(cs)}" for r, cs in by.items()]
    return "Table 1 SGD cells within ±0.1 of the paper, per form: " + ", ".join(parts) + "."


def render(root: Path) -> str:
    """The whole of part-a.md."""
    out = [
        "# Part A mismatch studies: what each now finds",
        "",
        "Rendered by `python -m plasticlab.experiments.hebbian.summary results` from the committed folders "
        "below; every number is computed from a folder's own table (its report shows the same claims, the "
        "scoreboard the ones of folders named like their experiment). What each study measures and why: "
        "`docs/part-a-mismatches.md`. Runs used one thread, `--workers 1`, niced, on a shared 2-core machine.",
        "",
    ]
    out += conventions_section(root)
    for title, text, studies in FINDINGS:
        out += [f"## {title}", "", text, ""]
        claims: list[Claim] = []
        states = []
        for s in studies:
            cs, state = folder_claims(root, s.folder)
            claims += cs
            states.append(f"| `{s.folder}` | {s.question} | {state} | {s.reduced} | `{s.command}` |")
        out += ["| folder | what | state | reduced | command |", "|---|---|---|---|---|", *states, ""]
        if title.startswith("Adam"):
            out += [*adam_forms_section(root), ""]
        if title.startswith("DFA"):
            out += [*dfa_section(root), ""]
        if title.startswith("The stationarity"):
            out += [line for st in studies for line in unscored_section(root, st.folder)]
        if title.startswith("SGD") and claims:
            out += [per_rule_cells(claims), ""]
        if claims:
            c = counts(claims)
            out += [
                claims_table(claims, experiment=True, report=True, size=False),
                "",
                "Verdicts: " + ", ".join(f"{v} {k}" for k, v in c.items() if v) + ".",
                "",
            ]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    """Write ROOT/part-a.md (ROOT = the first argument, default ``results``)."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0] if args else "results")
    (root / "part-a.md").write_text(render(root))
    print(root / "part-a.md")


if __name__ == "__main__":
    main()
