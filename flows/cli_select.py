"""`thresher` commands that dedup, score, select and learn."""

from __future__ import annotations

import click

from thresher.flows import config as cfgmod
from thresher.flows.cli import _open_store, cli, progress
from thresher.flows.config import DedupSection, SelectSection
from thresher.flows.output import summary_table
from thresher.selection.iwes import STRATEGIES

DEDUP_FUZZY = cfgmod.default(DedupSection, "fuzzy")
DEDUP_SEMANTIC = cfgmod.default(DedupSection, "semantic")


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
