"""`thresher` commands that run the curate flow: demo, run, config, schedule."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from thresher.flows.cli import cli, err, progress
from thresher.flows.output import summary_table
from thresher.storage.errors import ThresherError


@cli.command()
@click.option(
    "--store",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to build the demo store [default: ./thresher-demo].",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def demo(store: str | None, quiet: bool) -> None:
    """Run the curate flow (Prefect driving Ray) on the bundled demo corpus and show
    what each stage did, with the SQL to look further."""
    _quiet_prefect()
    from thresher.flows.demo import run_demo

    root = Path(store or "thresher-demo")
    run_demo(root, quiet=quiet, echo=click.echo, progress=progress, program=_program())


@cli.command("run")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def run_cmd(config: str, quiet: bool) -> None:
    """Run the curate flow (ingest, filter, embed, dedup, score, select, publish) that
    the TOML file CONFIG describes, as a Prefect flow driving Ray. Stages with nothing
    new to do are skipped, so a rerun resumes and a later run adds only new sources."""
    _quiet_prefect()
    from thresher.flows.runner import run_config

    result = run_config(
        config, bars=lambda label: progress(label, quiet), announce=None if quiet else err.print
    )
    click.echo(summary_table(result["stages"]))
    click.echo(f"curate run {result['run_id']} of store {result['store']}")


@cli.command("config")
@click.argument("sources", nargs=-1)
@click.option("--store", default="store", show_default=True, help="The store path to write in.")
def config_cmd(sources: tuple[str, ...], store: str) -> None:
    """Print a curate config with every key at its default, for SOURCES (files, folders,
    globs): a starting point for `thresher run`."""
    from thresher.flows.config import template
    from thresher.storage.guess import guess_roles
    from thresher.storage.ingest import expand_sources

    try:
        guess = guess_roles(expand_sources(list(sources))[0]) if sources else None
    except ThresherError:
        guess = None  # sources that do not exist yet: the template's defaults
    click.echo(template(store, list(sources) or ["data"], guess), nl=False)


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--cron", required=True, help='When to run, e.g. "0 * * * *" (hourly).')
@click.option("--name", default=None, help="Deployment name [default: the config's [flow] name].")
def schedule(config: str, cron: str, name: str | None) -> None:
    """Serve the curate flow for CONFIG as a Prefect deployment on a cron schedule.

    Runs until stopped (Ctrl-C or SIGTERM); uses the Prefect server at PREFECT_API_URL,
    or a temporary one that ends with the command. Each scheduled run processes only
    source files it has not seen."""
    _quiet_prefect()
    from thresher.flows.runner import serve_schedule

    # A service manager's stop (SIGTERM) is a clean exit. Prefect's runner installs its
    # own SIGTERM handler (it exits 0) once serving, whose `stop()` leaves a coroutine
    # unawaited, as a stop before the runner starts does: that warning is noise here.
    signal.signal(signal.SIGTERM, _interrupt)
    warnings.filterwarnings("ignore", message=r"coroutine 'Runner\.\w+' was never awaited")
    # that exit leaves Prefect's event loop unclosed; its __del__, whenever the loop is
    # collected, would print a traceback ("Exception ignored in BaseEventLoop.__del__")
    sys.unraisablehook = _quiet_loop_teardown
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        serve_schedule(config, cron, name, announce=err.print)
    err.print("schedule stopped")


def _quiet_loop_teardown(unraisable: Any, default: Any = sys.unraisablehook) -> None:
    if "BaseEventLoop.__del__" not in getattr(unraisable.object, "__qualname__", ""):
        default(unraisable)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _program() -> str:
    """How the user started thresher, for the commands a hint suggests: `thresher` when
    that is on PATH, else the path they typed (`.venv/bin/thresher`)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name != "thresher":
        return "thresher"
    on_path = shutil.which("thresher")
    if on_path and Path(on_path).resolve() == Path(argv0).resolve():
        return "thresher"
    return os.path.relpath(argv0) if Path(argv0).is_absolute() else argv0


def _quiet_prefect() -> None:
    """Prefect logs a failed task's traceback at ERROR; the command line reports errors
    itself (one line for a user error), so its logs show only with -v."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
