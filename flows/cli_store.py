"""`thresher` commands on the store itself: init, ingest, sql, runs, check, report,
publish, export."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import click

from thresher.flows import config as cfgmod
from thresher.flows.cli import _fail, _open_store, cli, err, progress
from thresher.flows.config import IngestSection
from thresher.flows.output import OUTPUT_FORMATS, summary_table, write_result
from thresher.storage.errors import ThresherError


@cli.command()
@click.argument("store")
@click.option("--text-column", help="On an existing store: the text column of its sources.")
@click.option("--label-column", help="On an existing store: the label column of its sources.")
def init(store: str, text_column: str | None, label_column: str | None) -> None:
    """Create an empty store at STORE (or refresh the views of an existing one).

    With --text-column or --label-column, name that column for every source ingested
    so far: the fix for a store ingested without (or with the wrong) --text-column."""
    from thresher.storage.roles import set_roles
    from thresher.storage.store import Store

    s = Store.init(store)
    roles = {"text_column": text_column, "label_column": label_column}
    if given := {k: v for k, v in roles.items() if v}:
        set_roles(s, given)
    click.echo(f"store ready at {s.root}")


@cli.command()
@click.argument("store")
@click.argument("sources", nargs=-1, required=True)
@click.option("--id-column", help="Column whose value identifies a row (item_id derives from it).")
@click.option("--text-column", help="Column holding the text to curate.")
@click.option("--label-column", help="Column holding a class label.")
@click.option("--embedding-column", help="Column holding a precomputed vector (list of floats).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(cfgmod.choices(IngestSection, "format")),
    default=cfgmod.default(IngestSection, "format"),
    show_default=True,
    help="Source format; auto goes by the file suffix.",
)
@click.option(
    "--batch-rows",
    type=click.IntRange(min=1),
    default=65_536,
    show_default=True,
    help="Rows read and written at a time (bounds memory).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def ingest(
    store: str,
    sources: tuple[str, ...],
    id_column: str | None,
    text_column: str | None,
    label_column: str | None,
    embedding_column: str | None,
    fmt: str,
    batch_rows: int,
    quiet: bool,
) -> None:
    """Ingest SOURCES (files, directories, globs, or object-store URIs such as
    s3://bucket/raw/*.jsonl) into STORE.

    Every source column is kept. A file already ingested (same content; for an
    object, same URI, size and modification time) is skipped. Rows that cannot be
    ingested go to the rejects table with a reason; a file that cannot be read stops
    the ingest and changes nothing.
    """
    from thresher.storage.ingest import IngestConfig
    from thresher.storage.ingest import ingest as run_ingest

    s = _open_store(store)
    if text_column is None:
        text_column = _text_column_for(s, sources, fmt, embedding_column)
    cfg = IngestConfig(
        id_column,
        text_column,
        label_column,
        embedding_column,
        fmt,
        batch_rows,
    )
    with progress("ingest", quiet) as update:
        report = run_ingest(s, sources, cfg, on_progress=update)
    rows = [
        {
            "source": src.path,
            "status": src.status,
            "batch": src.batch_id,
            "rows": src.rows_in,
            "kept": src.kept,
            "rejected": src.rejected,
        }
        for src in report.sources
    ]
    click.echo(summary_table(rows), nl=False)
    click.echo(f"run {report.run_id}: {report.kept} rows kept, {report.rejected} rejected")


def _text_column_for(
    store: Any, sources: tuple[str, ...], fmt: str, embedding_column: str | None
) -> str | None:
    """No --text-column: the store's, or the obvious one of the first source (said on
    stderr); refused with the candidates when not obvious, unless the source brings
    vectors (--embedding-column) and may have no text at all."""
    from thresher.storage.errors import StoreError
    from thresher.storage.guess import text_column_for
    from thresher.storage.ingest import expand_sources
    from thresher.storage.uri import RemoteFile

    try:
        return str(store.text_column())
    except StoreError:
        raise
    except ThresherError:
        pass  # none recorded yet
    files = expand_sources(list(sources), typing.cast(typing.Any, fmt))
    if isinstance(files[0], RemoteFile):
        return None  # reading an object's columns would mean downloading it first
    try:
        column, why = text_column_for(files[0], typing.cast(typing.Any, fmt))
    except ThresherError:
        if embedding_column:
            return None
        raise
    err.print(f"text column: {column!r} ({why}; --text-column to choose another)", soft_wrap=True)
    return column


@cli.command()
@click.argument("store")
@click.argument("query")
@click.option(
    "--format", "fmt", type=click.Choice(OUTPUT_FORMATS), default="table", show_default=True
)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the result to FILE.")
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Rows shown by --format table on a terminal.",
)
def sql(store: str, query: str, fmt: str, out: str | None, max_rows: int) -> None:
    """Run a read-only SQL QUERY over STORE's tables (items, rejects, embeddings,
    duplicates, clusters, scores, selections, runs, stages, sources, files)."""
    from thresher.storage.sql import read_only_query

    result = read_only_query(_open_store(store), query)
    write_result(result, fmt, out, max_rows)


@cli.command()
@click.argument("store")
@click.option(
    "--format", "fmt", type=click.Choice(OUTPUT_FORMATS[:3]), default="table", show_default=True
)
@click.option("--stages", is_flag=True, help="One row per stage of each run, with its seconds.")
def runs(store: str, fmt: str, stages: bool) -> None:
    """List STORE's runs with their row accounting and wall seconds."""
    s = _open_store(store)
    from thresher.storage import queries

    table = queries.stages(s) if stages else queries.runs(s)
    write_result(table, fmt, None, max_rows=table.num_rows or 1)


@cli.command()
@click.argument("store")
@click.option(
    "--repair",
    is_flag=True,
    help="Unregister every file of each run that holds a damaged table file, so that "
    "the next run of its command redoes it.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def check(store: str, repair: bool, quiet: bool) -> None:
    """Check that every file STORE's catalog registers is there, readable, and holds the
    rows recorded; list each problem with how to recover. Exit code 2 when any."""
    from thresher.storage import check as checks

    s = _open_store(store)
    with progress("check", quiet) as update:
        report = checks.check(s, on_progress=update)
    if repair and report.problems:
        dropped, kept = checks.repair(s, report)
        for line in dropped + kept:
            click.echo(f"repair: {line}")
        with progress("check", quiet) as update:
            report = checks.check(s, on_progress=update)
    if report.problems:
        rows = [{"file": p.path, "problem": p.problem, "run": p.run_id} for p in report.problems]
        click.echo(summary_table(rows), nl=False)
        click.echo("how to recover:")
        for p in report.problems:
            click.echo(f"  {p.path}: {p.fix}")
        _fail(f"store {s.root} has {len(rows)} problem(s), listed above")
    click.echo(f"ok: {report.tables} tables, {report.files} files, {report.rows} rows")


@cli.command()
@click.argument("store")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the HTML page [default: STORE/report.html].",
)
def report(store: str, out: str | None) -> None:
    """Write one self-contained HTML page (opens offline) of what curation did to
    STORE: runs, the stage funnel, rejects, duplicates with examples, score histograms,
    a map of the embeddings, the selection against the pool, learning curves."""
    from thresher.flows.report import build

    s = _open_store(store)
    path = build(s, Path(out) if out else s.root / "report.html")
    click.echo(f"report written to {path}")


@cli.command("publish")
@click.argument("store")
@click.argument("name")
@click.option(
    "--to",
    "to_uri",
    default=None,
    metavar="URI",
    help="Also copy the version to URI/NAME/vVERSION (a folder or s3://bucket/prefix).",
)
def publish_cmd(store: str, name: str, to_uri: str | None) -> None:
    """Publish the latest version of selection NAME (made by `thresher select` or
    `learn`) under STORE/published/NAME/vVERSION, where the trainer feed
    (`SelectionFeed.from_store`) and examples/train.py read it. A version already
    published is not written again."""
    from thresher.flows.select import mirror, publish

    pub = publish(_open_store(store), name)
    if pub.new:
        click.echo(
            f"selection {name!r} ({pub.rows} rows, selection run {pub.selection_run}) "
            f"published as version {pub.version}: {pub.path}"
        )
    else:
        click.echo(
            f"selection {name!r} (selection run {pub.selection_run}) is already published "
            f"as version {pub.version}: {pub.path}; nothing to do"
        )
    if to_uri:
        click.echo(f"copied to {mirror(pub, to_uri)}")


@cli.command("export")
@click.argument("store")
@click.argument("name")
@click.argument("out_dir")
@click.option(
    "--redact-pii",
    is_flag=True,
    help="Replace the spans `thresher pii` found with <EMAIL>, <PHONE>, ... in the text.",
)
def export_cmd(store: str, name: str, out_dir: str, redact_pii: bool) -> None:
    """Write selection NAME (its latest run) with every item column and its weight to
    OUT_DIR as Parquet: a local folder or an object-store URI (s3://bucket/prefix)."""
    from thresher.flows.select import export

    done = export(_open_store(store), name, out_dir, redact_pii=redact_pii)
    click.echo(
        f"{done.rows} rows of selection {name!r} version {done.version} written to {out_dir}"
    )
