"""`thresher` commands of the vectors: embed, search."""

from __future__ import annotations

import typing

import click

from thresher.flows import config as cfgmod
from thresher.flows.cli import _open_store, cli, progress
from thresher.flows.config import EmbedSection
from thresher.flows.output import OUTPUT_FORMATS, summary_table, write_result
from thresher.scoring.matryoshka import RotationKind
from thresher.storage.errors import ThresherError
from thresher.storage.index import Codes, IndexKind


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
    help="Matryoshka prefix widths [default: the index's, else 32,64,128,... up to the "
    "full width].",
)
@click.option(
    "--rotation",
    type=click.Choice(typing.get_args(RotationKind)),
    default=None,
    help="How prefixes become meaningful (identity: Matryoshka-trained models) "
    "[default: the index's, else pca].",
)
@click.option(
    "--index",
    "kind",
    type=click.Choice(typing.get_args(IndexKind)),
    default=None,
    help="Shortlist index kind [default: the index's, else auto].",
)
@click.option(
    "--codes",
    type=click.Choice(typing.get_args(Codes)),
    default=None,
    help="Compressed codes for the shortlist index [default: the index's, else none].",
)
@click.option(
    "--shortlist-dim",
    type=click.IntRange(min=1),
    default=None,
    help="Prefix width of the shortlist index [default: the index's, else 128 if a prefix, "
    "else the smallest].",
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
    rotation: str | None,
    kind: str | None,
    codes: str | None,
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
    from thresher.flows.embed import changed_settings
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
        settings = changed_settings(
            s,
            cfg.name,
            refit=refit,
            dims=_int_list(dims),
            shortlist_dim=shortlist_dim,
            rotation=rotation,
            kind=kind,
            codes=codes,
        )
        report = run_embed(s, cfg, settings, on_progress=update)
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
