"""`thresher` commands of the LLM-data filters: langid, decontaminate, tokens, plan, pii."""

from __future__ import annotations

import click

from thresher.flows.cli import _fail, _open_store, cli, progress
from thresher.flows.output import summary_table

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
