"""Command line: `plasticlab list | run NAME | reproduce | show DIR | status DIR`.

User errors (unknown experiment, key or value) are one line naming the bad input and the valid choices,
exit code 2, never a traceback.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import typer

from plasticlab.errors import PlasticlabError, PlasticlabWarning


class _OneLineErrors(typer.core.TyperGroup):
    """A usage error (``--workers two``, an unknown option) is one ``error:`` line and exit 2, like every
    other user error, instead of click's framed box."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Run the command line; usage errors become one line."""
        # click's exceptions, wherever this typer keeps them (click itself, or its vendored copy)
        exc = sys.modules[typer.BadParameter.__module__]
        standalone_mode = kwargs.get("standalone_mode", True)
        kwargs["standalone_mode"] = False  # errors come back here instead of being drawn in a box
        try:
            rv = super().main(*args, **kwargs)
        except exc.NoArgsIsHelpError as e:  # `plasticlab` alone: the help, as before
            if not standalone_mode:
                raise
            typer.echo(e.ctx.get_help() if e.ctx is not None else "")
            sys.exit(e.exit_code)
        except exc.ClickException as e:
            if not standalone_mode:
                raise
            ctx = getattr(e, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            message = " ".join(e.format_message().split())
            typer.secho(f"error: {message}{where}", err=True, fg=typer.colors.RED)
            sys.exit(2 if isinstance(e, exc.UsageError) else e.exit_code)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


app = typer.Typer(
    cls=_OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    help="plasticlab: which learning rule is this network really following?",
)


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def _one_line_warnings() -> None:
    """Show plasticlab's own warnings (a damaged part moved aside, ...) as one ``warning:`` line each."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, PlasticlabWarning):
            typer.secho(f"warning: {message}", err=True, fg=typer.colors.YELLOW)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _sigterm_as_interrupt() -> None:
    """SIGTERM (kill, a batch system's time limit) stops a run the way Ctrl-C does: cancel, save, exit."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _interrupted_message(out: Path) -> str:
    from plasticlab.sweeps import summary as sweep_summary

    try:
        s = sweep_summary(out)
        saved = f"{s['done']} of {s['total']} chunks are saved in {out}"
    except Exception:  # interrupted before the manifest existed
        saved = f"nothing was computed yet in {out}"
    cmd = " ".join(shlex.quote(a) for a in ["plasticlab", *sys.argv[1:]]) if _invoked_as_cli() else ""
    again = f"resume with the same command: {cmd}" if cmd else "run the same command again to resume"
    return f"interrupted: {saved}; {again}"


def _invoked_as_cli() -> bool:
    return Path(sys.argv[0]).name in {"plasticlab", "cli.py"} or sys.argv[0].endswith("plasticlab.cli")


def _parse_sets(sets: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in sets:
        if "=" not in item:
            _fail(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        if k.strip() in out:  # silently keeping the last would run something other than what was asked
            _fail(f"--set {k.strip()} is given twice ({out[k.strip()]!r} and {v!r}); give each key once")
        out[k.strip()] = v
    return out


@app.command("list")
def list_cmd() -> None:
    """List the experiments, one line each."""
    from plasticlab.experiments import all_experiments

    for name, exp in all_experiments().items():
        typer.echo(f"{name:<18} {exp.summary}  (quick ≤ {exp.budget_s:.0f} s)")


def _help_with_params(ctx: typer.Context, name: str | None) -> None:
    """`run NAME --help`: the usual help, then NAME's `--set` keys."""
    typer.echo(ctx.get_help())
    if name:
        from plasticlab.params_table import params_table
        from plasticlab.study import get

        try:
            typer.echo("\n" + params_table(get(name)))
        except PlasticlabError as e:
            _fail(str(e))
    else:
        typer.echo("\n`plasticlab run NAME --help` or `plasticlab params NAME` lists NAME's --set keys.")
    raise typer.Exit(0)


@app.command()
def params(name: str = typer.Argument(..., help="experiment name (see `plasticlab list`)")) -> None:
    """List every `--set` key of an experiment: default, quick value, type and allowed values."""
    from plasticlab.params_table import params_table
    from plasticlab.study import get

    try:
        typer.echo(params_table(get(name)))
    except PlasticlabError as e:
        _fail(str(e))


# Options shared by `run` and `reproduce`.
EXECUTOR = typer.Option("local", help="local | dask")
WORKERS = typer.Option(None, help="worker processes (default: all cores, one chunk each; 1 = in-process)")
SCHEDULER = typer.Option(
    None, help="Dask scheduler address, e.g. tcp://host:8786 (executor dask; default: a LocalCluster on 127.0.0.1)"
)
QUIET = typer.Option(False, "--quiet", "-q", help="no progress output")
DEVICE = typer.Option("auto", help="auto (CUDA when available, else CPU) | cpu | cuda | cuda:N")
PLUGIN = typer.Option(
    [],
    "--plugin",
    help="import MODULE (a name on PYTHONPATH or a .py file) first, here and in every worker (repeatable)",
)


def _default_workers(workers: int | None, executor: str) -> int | None:
    """The command line owns its process, so it uses every core by default; the Python API stays in-process
    by default because worker processes re-import a user's script (which then needs a __main__ guard)."""
    if workers is None and executor == "local":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return workers


def _sweep_failed(e: Any, out: Path) -> None:
    """Chunks raised: a usage error if every one was bad input, else a summary and exit 1."""
    if all(err["type"] == "PlasticlabError" for _, err in e.failed):
        # Every failure is bad input found inside a chunk (e.g. a data file): a usage error.
        i, err = e.failed[0]
        _fail(f"chunk {i}: {err['message']}")
    # Not a usage error: the run happened, some chunks raised. Summary, then exit 1.
    typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
    for i, err in e.failed[:10]:
        typer.echo(f"  chunk {i}: {err['type']}: {err['message']}", err=True)
    if len(e.failed) > 10:
        typer.echo(f"  ... and {len(e.failed) - 10} more", err=True)
    typer.echo(f"tracebacks: {out / 'manifest.json'}; status: plasticlab status {out}", err=True)
    raise typer.Exit(1) from None


@app.command(context_settings={"help_option_names": []})
def run(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="experiment name (see `plasticlab list`)", show_default=False),
    help_: bool = typer.Option(
        False, "--help", "-h", help="show this message and the experiment's --set keys, then exit"
    ),
    quick: bool = typer.Option(False, "--quick", help="small version, minutes on a laptop CPU"),
    set_: list[str] = typer.Option(
        [],
        "--set",
        "-s",
        help="override a parameter: key=value (lists: a,b,c); keys: `plasticlab params NAME`",
    ),
    out_text: str | None = typer.Option(
        None, "--out", "-o", help="output folder (default runs/NAME-quick with --quick, else runs/NAME)"
    ),
    executor: str = EXECUTOR,
    workers: int | None = WORKERS,
    scheduler: str | None = SCHEDULER,
    quiet: bool = QUIET,
    device: str = DEVICE,
    plugin: list[str] = PLUGIN,
) -> None:
    """Run an experiment; writes OUT/results.parquet, figures and OUT/report.md. Resumable: finished chunks
    are kept in OUT, so running the same command again computes only the chunks that are missing or failed."""
    from plasticlab.api import run as run_api
    from plasticlab.sweeps import SweepFailed

    if help_ or not name:
        _help_with_params(ctx, name)
    assert name is not None
    _one_line_warnings()
    if out_text is not None and not out_text.strip():
        _fail("--out is empty; give a folder, e.g. --out runs/my-run")
    out = Path("runs") / (name + ("-quick" if quick else "")) if out_text is None else Path(out_text)
    workers = _default_workers(workers, executor)
    _sigterm_as_interrupt()
    try:
        df = run_api(
            name,
            quick=quick,
            out=out,
            executor=executor,
            workers=workers,
            scheduler=scheduler,
            progress=not quiet,
            device=device,
            plugins=plugin,
            **_parse_sets(set_),
        )
    except SweepFailed as e:
        _sweep_failed(e, out)
    except KeyboardInterrupt:
        typer.secho(_interrupted_message(out), err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(130) from None
    except PlasticlabError as e:
        _fail(str(e))
    _done(df, name, out)


def _done(df: Any, name: str, out: Path) -> None:
    """Where the report is and how much was reused; exit 1 when every run diverged (nothing measured)."""
    from plasticlab.api import diverged_note
    from plasticlab.sweeps import summary as sweep_summary

    if (note := diverged_note(df)) is not None:
        # The run happened and is saved, but no claim could be measured: say so and exit 1.
        typer.secho(f"error: {name}: {note}; results and report are in {out}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
    last = sweep_summary(out)["last_run"]
    typer.echo(
        f"Report: {out / 'report.md'}  (chunks: {last['computed']} computed, "
        f"{last['chunks'] - last['todo']} reused)"
    )


@app.command()
def reproduce(
    quick: bool = typer.Option(False, "--quick", help="every experiment at its small size (minutes each)"),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="output folder (default results/, or runs/reproduce-quick with --quick)"
    ),
    only: list[str] = typer.Option(
        [], "--only", help="run just this experiment (repeatable); the scoreboard still lists the others"
    ),
    collect: bool = typer.Option(
        None,
        "--collect/--compute",
        help="read results already in OUT/NAME instead of computing (default: --collect without --quick)",
    ),
    rerender: bool = typer.Option(
        False, "--rerender", help="with --collect: draw each finished run's report.md and figures again"
    ),
    executor: str = EXECUTOR,
    workers: int | None = WORKERS,
    scheduler: str | None = SCHEDULER,
    device: str = DEVICE,
    quiet: bool = QUIET,
    plugin: list[str] = PLUGIN,
) -> None:
    """Run every paper experiment and write OUT/SCOREBOARD.md + OUT/scoreboard.csv, one row per claim.

    Without --quick the paper-size results already under OUT (results/ by default) are read, not recomputed;
    pass --compute to run what is missing. Resumable like `run`. Exits 1 if an experiment failed or all of
    its runs diverged.
    """
    from plasticlab.reproduce import reproduce as reproduce_all

    out = out or (Path("runs") / "reproduce-quick" if quick else Path("results"))
    collect = (not quick) if collect is None else collect
    workers = _default_workers(workers, executor)
    try:
        outcomes = reproduce_all(
            out,
            quick=quick,
            only=only or None,
            collect=collect,
            progress=not quiet,
            rerender=rerender,
            executor=executor,
            workers=workers,
            scheduler=scheduler,
            device=device,
            plugins=plugin,
        )
    except PlasticlabError as e:
        _fail(str(e))

    _scoreboard_done(out, outcomes, only)


def _scoreboard_done(out: Path, outcomes: list[Any], only: list[str]) -> None:
    """The scoreboard's counts (and those of the experiments asked for); exit 1 if one failed or all its runs
    diverged."""
    from pandas import read_csv

    from plasticlab.study.scoreboard import headline, scoreboard_frame

    board = headline(read_csv(out / "scoreboard.csv"))  # every experiment's rows
    mine = scoreboard_frame([oc for oc in outcomes if oc.name in only])
    asked = f"; {', '.join(only)}: {headline(mine)}" if only else ""
    typer.echo(f"Scoreboard: {out / 'SCOREBOARD.md'}  ({board}{asked})")
    bad = [oc for oc in outcomes if oc.status in ("failed", "all diverged")]
    for oc in bad:
        typer.secho(f"error: {oc.name}: {oc.status}: {oc.message}", err=True, fg=typer.colors.RED)
    if bad:
        raise typer.Exit(1)


@app.command()
def show(path: Path = typer.Argument(..., help="an output folder of `plasticlab run`")) -> None:
    """Print a run's report and list its files."""
    report = path / "report.md"
    if not report.exists():
        _fail(f"no report.md in {path} (is it the --out folder of a finished run?)")
    from rich.console import Console
    from rich.markdown import Markdown

    Console().print(Markdown(report.read_text()))
    # hidden files (.sweep.lock, temp files of a running sweep) are machinery, not results
    typer.echo("\nFiles: " + ", ".join(sorted(p.name for p in path.iterdir() if not p.name.startswith("."))))


@app.command()
def status(path: Path = typer.Argument(..., help="an output folder of `plasticlab run`")) -> None:
    """Done / pending / failed chunks of a (possibly interrupted) run."""
    from plasticlab.sweeps import status as sweep_status

    try:
        typer.echo(sweep_status(path))
    except PlasticlabError as e:
        _fail(str(e))


def main() -> None:
    """Console entry point: run the typer app, print user errors as one line and exit 2."""
    try:
        app()
    except PlasticlabError as e:  # errors raised outside a command body
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
