"""The `thresher` command line.

Errors a user can cause (a bad path, column, value or query) print one line on
stderr and exit with code 2; a traceback means a bug in thresher.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import typing
from collections.abc import Callable, Iterator
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from thresher.storage.errors import ThresherError

err = Console(stderr=True)


class _Group(click.Group):
    """The error boundary: a user error (`ThresherError`), a file the system refused
    (an `OSError` naming it: missing, not allowed, disk full) and a bad option become
    one `thresher: error:` line and exit code 2. Anything else is a bug in thresher
    and keeps its traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("thresher: aborted", err=True)
            sys.exit(130)
        except click.UsageError as exc:
            _fail(f"{_command_path(exc.ctx)}{exc.format_message()}")
        except click.ClickException as exc:
            _fail(exc.format_message())
        except (ThresherError, OSError) as exc:
            _fail(_one_line(exc))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _command_path(ctx: click.Context | None) -> str:
    return f"{ctx.command_path}: " if ctx is not None and ctx.parent is not None else ""


def _fail(message: str) -> typing.NoReturn:
    click.echo(f"thresher: error: {message}", err=True)
    sys.exit(2)


@contextlib.contextmanager
def progress(label: str, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (only on a terminal); yields `update(done, total)`."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    )
    with bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _open_store(path: str) -> Any:
    from thresher.storage.store import Store

    return Store(path)


# commands that may start Ray or Prefect's ephemeral server: a watchdog ends them with
# thresher, however thresher ends (see flows/watchdog.py)
STARTS_PROCESSES = {"ingest", "dedup", "embed", "score", "select", "export", "learn", "label"}
STARTS_PROCESSES |= {"search", "demo", "run", "schedule", "publish", "langid", "decontaminate"}
STARTS_PROCESSES |= {"tokens", "pii"}


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="thresher", prog_name="thresher")
@click.option("-v", "--verbose", is_flag=True, help="Log what thresher does.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """thresher: find duplicates and redundant examples, and select a smaller
    training set that trains as well as the whole."""
    if ctx.invoked_subcommand in STARTS_PROCESSES and "--help" not in sys.argv:
        from thresher.flows import watchdog

        watchdog.start()
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if verbose:  # Prefect's own flow and task run logs too
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cli(prog_name="thresher")


# the commands, each group in its module, register themselves on `cli`
from thresher.flows import cli_embed, cli_flow, cli_select, cli_store, cli_text  # noqa: E402, F401

if __name__ == "__main__":
    main()
