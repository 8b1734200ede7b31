"""The `thresher` command line.

Errors a user can cause (a bad path, column, value or query) print one line on
stderr and exit with code 2; a traceback means a bug in thresher.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import typing
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from thresher.flows import config as cfgmod
from thresher.flows.config import DedupSection, EmbedSection, IngestSection, SelectSection
from thresher.flows.output import OUTPUT_FORMATS, summary_table, write_result
from thresher.scoring.matryoshka import RotationKind
from thresher.selection.iwes import STRATEGIES
from thresher.storage.errors import ThresherError
from thresher.storage.index import Codes, IndexKind

DEDUP_FUZZY = cfgmod.default(DedupSection, "fuzzy")
DEDUP_SEMANTIC = cfgmod.default(DedupSection, "semantic")
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


TOP_LANGUAGES = 12  # rows langid prints; SQL on `languages` has them all


@cli.command()
@click.argument("store")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def langid(store: str, quiet: bool) -> None:
    """Identify the language of STORE's items that have none yet (table languages).

    An ISO 639-1 code and a confidence per item; the curate flow's [filter]
    languages = ["en"] keeps only those languages.
    """
    from thresher.flows.langid import identify_languages

    with progress("langid", quiet) as update:
        r = identify_languages(_open_store(store), on_progress=update)
    rows = [{"language": lang, "items": n} for lang, n in r.by_language.items()]
    click.echo(f"{r.identified} new items identified", nl=True)
    if len(rows) > TOP_LANGUAGES:  # the long tail is mostly misidentified short texts
        rest = rows[TOP_LANGUAGES - 1 :]
        others = f"{len(rest)} others"
        rows = [
            *rows[: TOP_LANGUAGES - 1],
            {"language": others, "items": sum(r["items"] for r in rest)},
        ]
    if rows:
        click.echo(summary_table(rows), nl=False)


@cli.command()
@click.argument("store")
@click.argument("eval_files", nargs=-1, required=True)
@click.option("--ngram", type=click.IntRange(min=1), default=13, show_default=True)
@click.option("--text-column", help="The eval files' text column [default: guessed].")
def decontaminate(
    store: str, eval_files: tuple[str, ...], ngram: int, text_column: str | None
) -> None:
    """Find STORE's items sharing a word n-gram with any text of EVAL_FILES (JSONL, CSV,
    Parquet) and record them in `contamination`; select leaves them out.

    Only batches not yet checked against an eval file are checked.
    """
    from thresher.flows.decontam import decontaminate as run

    r = run(_open_store(store), list(eval_files), ngram, text_column)
    rows = [{"eval file": k, "contaminated items": v} for k, v in r.contaminated.items()]
    click.echo(f"{r.checked} item checks, {sum(r.contaminated.values())} contaminated")
    if rows:
        click.echo(summary_table(rows), nl=False)


@cli.command()
@click.argument("store")
@click.option("--exact", is_flag=True, help="Exact duplicates of normalized text.")
@click.option(
    "--fuzzy",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    metavar="JACCARD",
    help=f"Near duplicates: MinHash-LSH at this Jaccard (e.g. {DEDUP_FUZZY}).",
)
@click.option(
    "--semantic",
    type=click.FloatRange(0, 1, min_open=True),
    metavar="COSINE",
    help=f"Semantic duplicates: SemDeDup at this cosine (e.g. {DEDUP_SEMANTIC}).",
)
@click.option(
    "--keep",
    type=click.Choice(cfgmod.choices(DedupSection, "semantic_keep")),
    default=cfgmod.default(DedupSection, "semantic_keep"),
    show_default=True,
    help="Which item of a semantic group is kept.",
)
@click.option("--model", default=None, help="Embeddings for --semantic [default: the only one].")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def dedup(
    store: str,
    exact: bool,
    fuzzy: float | None,
    semantic: float | None,
    keep: str,
    model: str | None,
    quiet: bool,
) -> None:
    """Find duplicates in STORE, cheapest pass first, and record them in `duplicates`.

    With no flag: exact, fuzzy at Jaccard 0.8 and, if the store has
    embeddings, semantic at cosine 0.95. Each pass checks only items it has
    not seen, against the items it kept before.
    """
    from thresher.flows import dedup as passes
    from thresher.storage.vectors import embedding_models

    s = _open_store(store)
    everything = not (exact or fuzzy is not None or semantic is not None)
    reports = []
    if exact or everything:
        with progress("dedup (exact)", quiet) as update:
            reports.append(passes.dedup_exact(s, on_progress=update))
    if fuzzy is not None or everything:
        with progress("dedup (fuzzy)", quiet) as update:
            reports.append(passes.dedup_fuzzy(s, fuzzy or DEDUP_FUZZY, on_progress=update))
    if semantic is not None or (everything and embedding_models(s)):
        reports.append(passes.dedup_semantic(s, semantic or DEDUP_SEMANTIC, model, keep))
    elif everything:
        reports.append(
            passes.DedupReport(0, "semantic", 0, 0, "skipped: no embeddings (run thresher embed)")
        )
    click.echo(
        summary_table(
            [
                {
                    "method": r.method,
                    "new items checked": r.checked,
                    "duplicates found": r.duplicates,
                    "note": r.note,
                }
                for r in reports
            ]
        ),
        nl=False,
    )


@cli.command()
@click.argument("store")
@click.option(
    "--clusters",
    type=click.IntRange(min=1),
    default=None,
    help="k for k-means [default: the label count, else round(sqrt(n / 4))].",
)
@click.option(
    "--metrics",
    default="prototype,density,uncertainty",
    show_default=True,
    help="Comma-separated: prototype, density, uncertainty, label_issue, quality.",
)
@click.option(
    "--reference",
    default=None,
    metavar="FILE",
    help="For quality: texts of what good looks like (JSONL, CSV, Parquet).",
)
@click.option("--reference-column", default=None, help="Its text column [default: guessed].")
@click.option("--model", default=None, help="Which model's vectors [default: the only one].")
@click.option(
    "--refit", is_flag=True, help="Fit new centroids (and quality probe); rescore every item."
)
@click.option("--seed", type=click.IntRange(0, cfgmod.SEED_MAX), default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def score(
    store: str,
    clusters: int | None,
    metrics: str,
    reference: str | None,
    reference_column: str | None,
    model: str | None,
    refit: bool,
    seed: int,
    quiet: bool,
) -> None:
    """Score STORE's kept items: prototype_distance (and clusters), knn_distance, and,
    with labels, entropy and margin of a linear probe; on request label_issue (confident
    learning) and quality (a probe of --reference against the store)."""
    from thresher.flows.score import describe
    from thresher.flows.score import score as run_score

    names = tuple(m.strip() for m in metrics.split(",") if m.strip())
    with progress("score", quiet) as update:
        report = run_score(
            _open_store(store),
            model=model,
            clusters=clusters,
            metrics=names,
            refit=refit,
            seed=seed,
            reference=reference,
            reference_column=reference_column,
            on_progress=update,
        )
    click.echo(summary_table(describe(report)), nl=False)


@cli.command("select")
@click.argument("store")
@click.argument("name")
@click.option(
    "--keep",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    metavar="FRACTION",
    help="Fraction of the candidates to keep.",
)
@click.option(
    "--keep-tokens",
    type=click.IntRange(1),
    default=None,
    metavar="N",
    help="Instead of --keep: the policy's pick holding at most N tokens and at least 0.95 N "
    "(`thresher tokens` first; `thresher plan` suggests N).",
)
@click.option(
    "--policy",
    type=click.Choice(cfgmod.choices(SelectSection, "policy")),
    default=cfgmod.default(SelectSection, "policy"),
    show_default=True,
    help="auto picks by regime, from measurements (README, Selections): easy when fewer "
    "than 3 items are kept per cluster, hard when keeping >= 70%, else random; the output "
    "names the policy that ran.",
)
@click.option(
    "--balance",
    type=click.Choice(cfgmod.choices(SelectSection, "balance")),
    default=cfgmod.default(SelectSection, "balance"),
    show_default=True,
    help="Split the budget over clusters or labels (auto: labels when the items have "
    "them, else clusters; measured, README Selection variants).",
)
@click.option(
    "--where",
    default=None,
    metavar="SQL",
    help="Restrict candidates: a SQL condition on items' columns.",
)
@click.option("--seed", type=click.IntRange(0, cfgmod.SEED_MAX), default=0, show_default=True)
@click.option("--model", default=None, help="Embeddings for kcenter [default: the only one].")
@click.option(
    "--keep-contaminated", is_flag=True, help="Keep items found by `thresher decontaminate`."
)
@click.option(
    "--drop-label-issues",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    metavar="F",
    help="First leave out the fraction F of labelled items most likely mislabelled "
    "(`thresher score --metrics label_issue`).",
)
@click.option(
    "--report",
    is_flag=True,
    help="Also print what this policy measured against random in benchmarks of this keep.",
)
def select_cmd(
    store: str,
    name: str,
    keep: float | None,
    keep_tokens: int | None,
    policy: str,
    balance: str,
    where: str | None,
    seed: int,
    model: str | None,
    keep_contaminated: bool,
    drop_label_issues: float,
    report: bool,
) -> None:
    """Keep FRACTION (or N tokens) of STORE's non-duplicate items as selection NAME (table
    selections)."""
    from thresher.flows.select import select_items

    if (keep is None) == (keep_tokens is None):
        raise click.UsageError("give one of --keep FRACTION or --keep-tokens N")
    r = select_items(
        _open_store(store),
        name,
        keep or 1.0,
        policy=policy,
        balance=balance,
        where=where,
        seed=seed,
        model=model,
        keep_contaminated=keep_contaminated,
        keep_tokens=keep_tokens,
        drop_label_issues=drop_label_issues,
    )
    row = {"selection": r.name, "policy": r.policy, "candidates": r.candidates}
    if drop_label_issues:
        row["mislabelled left out"] = r.dropped
    row["selected"] = r.selected
    if r.tokens is not None:
        row["tokens"] = r.tokens
    click.echo(summary_table([{**row, "run": r.run_id}]), nl=False)
    if report:
        from thresher.selection.measured import expected_effect

        ran = r.policy.removeprefix("auto = ")
        for line in expected_effect(ran, r.balance, r.selected / r.candidates, drop_label_issues):
            click.echo(f"measured: {line}")


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


@cli.command()
@click.argument("store")
@click.option(
    "--tokenizer",
    default="minilm",
    show_default=True,
    metavar="DIR",
    help="A local Hugging Face tokenizer folder (tokenizer.json); minilm: the bundled one.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def tokens(store: str, tokenizer: str, quiet: bool) -> None:
    """Count the tokens of STORE's kept items that have no count yet (table tokens)."""
    from thresher.flows.tokens import count_item_tokens

    with progress("tokens", quiet) as update:
        r = count_item_tokens(_open_store(store), tokenizer, on_progress=update)
    click.echo(f"{r.items} items counted, {r.tokens} tokens")


@cli.command()
@click.argument("store")
@click.option("--params", required=True, metavar="P", help="Model size: 125M, 1.3B, 7e9, ...")
def plan(store: str, params: str) -> None:
    """The compute-optimal token count for a model of P parameters (20 tokens per
    parameter, Hoffmann et al. 2022), STORE's kept tokens, and the --keep-tokens to use."""
    from thresher.flows.tokens import plan as make_plan
    from thresher.scoring.tokens import parse_params

    p = make_plan(_open_store(store), parse_params(params))
    if not p.counted_items:
        _fail(f"no token counts: run thresher tokens {store} first")
    click.echo(f"compute-optimal tokens for {p.params:,} parameters: {p.optimal:,}")
    click.echo(f"kept tokens: {p.kept_tokens:,} in {p.counted_items:,} items")
    if p.counted_items < p.kept_items:
        click.echo(f"({p.kept_items - p.counted_items} kept items not counted yet)")
    click.echo(f"--keep-tokens {p.keep_tokens}")


@cli.command()
@click.argument("store")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def pii(store: str, quiet: bool) -> None:
    """Find e-mail addresses, phone numbers, IP addresses, card numbers, IBANs and US
    SSNs in the text of STORE's kept items not scanned yet (table pii: item_id, kind,
    start, end). The stored text is never changed; export --redact-pii redacts."""
    from thresher.flows.pii import scan_pii

    with progress("pii", quiet) as update:
        r = scan_pii(_open_store(store), on_progress=update)
    kinds = ", ".join(f"{v} {k}" for k, v in r.by_kind.items()) or "none"
    click.echo(f"{r.scanned} items scanned, {r.items_with_pii} with PII ({kinds})")


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


@cli.command()
@click.argument("store")
@click.argument("name")
@click.option("--budget", type=click.IntRange(min=1), required=True, help="Labels to spend.")
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True)
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default="iwes",
    show_default=True,
)
@click.option("--seed", type=click.IntRange(0, cfgmod.SEED_MAX), default=0, show_default=True)
@click.option("--model", default=None, help="Which model's vectors [default: the only one].")
@click.option(
    "--review-label-issues",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="First put the N labelled items most likely mislabelled in selection NAME.review, "
    "to relabel (`thresher score --metrics label_issue`).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def learn(
    store: str,
    name: str,
    budget: int,
    rounds: int,
    strategy: str,
    seed: int,
    model: str | None,
    review_label_issues: int | None,
    quiet: bool,
) -> None:
    """Active learning: with a label column, simulated (the column is the oracle); without,
    one round of the label loop per call. The items picked, with their importance
    weights, become selection NAME."""
    from thresher.flows.learn import learn as run_learn
    from thresher.flows.learn import review_label_issues as review

    if review_label_issues:
        shown, n = review(_open_store(store), name, review_label_issues)
        click.echo(f"{n} likely mislabelled items to relabel first: selection {shown!r}")

    with progress("learn (rounds)", quiet) as update:
        r = run_learn(
            _open_store(store),
            name,
            budget,
            rounds=rounds,
            strategy=strategy,
            seed=seed,
            model=model,
            on_progress=update,
        )
    click.echo(
        summary_table([{"labels used": n, "pool accuracy": round(acc, 4)} for n, acc in r.curve]),
        nl=False,
    )
    click.echo(f"selection {r.name!r}: {r.selected} of {r.pool} items, strategy {r.strategy}")


@cli.command()
@click.argument("store")
@click.argument("file")
@click.option("--allow-new-classes", is_flag=True, help="Accept classes not seen before.")
def label(store: str, file: str, allow_new_classes: bool) -> None:
    """Bring annotators' labels back: FILE (CSV, JSONL or Parquet) with columns item_id and
    label. Unknown items, or classes never seen before, are refused."""
    from thresher.flows.learn import add_labels

    n = add_labels(_open_store(store), file, allow_new_classes)
    click.echo(f"{n} labels recorded")


def _int_list(value: str | None) -> tuple[int, ...] | None:
    if not value:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None


@cli.command()
@click.argument("store")
@click.option(
    "--model",
    default=cfgmod.default(EmbedSection, "model"),
    show_default=True,
    help="'minilm' (built in, offline) or a local sentence-transformers directory.",
)
@click.option(
    "--dims",
    default=None,
    metavar="M1,M2,...",
    help="Matryoshka prefix widths [default: 32,64,128,... up to the full width].",
)
@click.option(
    "--rotation",
    type=click.Choice(typing.get_args(RotationKind)),
    default="pca",
    show_default=True,
    help="How prefixes become meaningful (identity: Matryoshka-trained models).",
)
@click.option(
    "--index",
    "kind",
    type=click.Choice(typing.get_args(IndexKind)),
    default="auto",
    show_default=True,
    help="Shortlist index kind.",
)
@click.option(
    "--codes",
    type=click.Choice(typing.get_args(Codes)),
    default="none",
    show_default=True,
    help="Compressed codes for the shortlist index.",
)
@click.option(
    "--shortlist-dim",
    type=click.IntRange(min=1),
    default=None,
    help="Prefix width of the shortlist index [default: 128 if a prefix, else the smallest].",
)
@click.option(
    "--max-seq-length",
    type=click.IntRange(min=8),
    default=cfgmod.default(EmbedSection, "max_seq_length"),
    show_default=True,
    help="Tokens per text; longer texts are cut.",
)
@click.option("--int8", is_flag=True, help="Dynamic int8 quantization (CPU; faster).")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=cfgmod.default(EmbedSection, "batch_size"),
    show_default=True,
)
@click.option("--refit", is_flag=True, help="Refit the rotation and rebuild the index.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def embed(
    store: str,
    model: str,
    dims: str | None,
    rotation: str,
    kind: str,
    codes: str,
    shortlist_dim: int | None,
    max_seq_length: int,
    int8: bool,
    batch_size: int,
    refit: bool,
    quiet: bool,
) -> None:
    """Embed STORE's items that have no vector for MODEL yet, and index them.

    Runs as Ray actors (one model load each; one GPU each when CUDA is there).
    """
    from thresher.flows.embed import IndexConfig
    from thresher.flows.embed import embed as run_embed
    from thresher.scoring.embedders import EmbedderConfig, model_path

    try:
        model_path(model)  # there, not loaded: a wrong name fails before anything runs
    except ThresherError as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from None
    s = _open_store(store)
    cfg = EmbedderConfig(
        model=model, max_seq_length=max_seq_length, int8=int8, batch_size=batch_size
    )
    with progress(f"embed ({cfg.name})", quiet) as update:
        report = run_embed(
            s,
            cfg,
            IndexConfig(_int_list(dims), shortlist_dim, rotation, kind, codes, refit),
            on_progress=update,
        )
    info = report.index
    click.echo(
        summary_table(
            [
                {
                    "model": report.model,
                    "embedded": report.embedded,
                    "already there": report.already,
                    "index version": info.version if info else None,
                    "indexed": info.n_items if info else 0,
                    "prefix dims": ",".join(map(str, info.dims)) if info else "",
                    "shortlist dim": info.shortlist_dim if info else None,
                    "rotation": info.rotation if info else "",
                }
            ]
        ),
        nl=False,
    )


@cli.command()
@click.argument("store")
@click.option("--text", help="Find items similar to this text.")
@click.option("--like", type=int, metavar="ITEM_ID", help="Find items similar to this item.")
@click.option(
    "--like-id", metavar="VALUE", help="Find items similar to the item whose id column is VALUE."
)
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--model", default=None, help="Which model's vectors [default: the only one].")
@click.option(
    "--shortlist",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Candidates taken from the shortlist prefix before reranking.",
)
@click.option(
    "--format", "fmt", type=click.Choice(OUTPUT_FORMATS[:3]), default="table", show_default=True
)
def search(
    store: str,
    text: str | None,
    like: int | None,
    like_id: str | None,
    k: int,
    model: str | None,
    shortlist: int,
    fmt: str,
) -> None:
    """Nearest items to --text, --like ITEM_ID or --like-id VALUE (the --id-column value
    given at ingest), by funnel search over Matryoshka prefixes; the hits show the id
    column, the text and the label."""
    from thresher.flows.embed import search as run_search

    result = run_search(
        _open_store(store),
        text=text,
        like=like,
        like_id=like_id,
        k=k,
        model=model,
        shortlist=shortlist,
    )
    write_result(result, fmt, None, max_rows=k)


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


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cli(prog_name="thresher")


if __name__ == "__main__":
    main()
