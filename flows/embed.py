"""Wiring of `thresher embed` and `thresher search`: store -> Ray actors -> store -> FAISS."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.flows import runtime
from thresher.scoring.embedders import EmbedderConfig, EmbedStage, TextEmbedder
from thresher.scoring.funnel import Funnel, funnel_search
from thresher.scoring.matryoshka import check_dims, fit_rotation, normalize, prefix
from thresher.storage import queries
from thresher.storage import vectors as vstore
from thresher.storage.errors import ThresherError
from thresher.storage.index import add, new_index, set_search_width
from thresher.storage.ray_adapter import run_task
from thresher.storage.store import StageCounts, Store

ROTATION_SAMPLE = 50_000
SHORTLIST_BATCH = 65_536  # rotated vectors read at a time to fill a shortlist index


@dataclass(frozen=True)
class IndexConfig:
    dims: tuple[int, ...] | None = None  # None: 32, 64, 128, ... below d, then d
    shortlist_dim: int | None = None  # None: 128 when it is one of the dims, else the smallest
    rotation: str = "pca"
    kind: str = "auto"
    codes: str = "none"
    refit: bool = False
    seed: int = 0


@dataclass(frozen=True)
class EmbedReport:
    model: str
    embedded: int
    already: int
    index: vstore.IndexInfo | None


def default_dims(d: int) -> list[int]:
    dims, m = [], 32
    while m < d:
        dims.append(m)
        m *= 2
    return [*dims, d]


def embed(
    store: Store,
    config: EmbedderConfig,
    index: IndexConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> EmbedReport:
    """Embed every item that has no vector for this model yet, then update its index."""
    text = store.text_column()
    todo = queries.embed_todo(config.name, text)
    n_todo = queries.count(store, todo)
    total = queries.count(store, queries.kept_items())
    if n_todo:
        with store.run("embed", {"encoder": dataclasses.asdict(config)}) as run:
            staged = runtime.stage(run, "embed-todo", todo)
            # embed: one model load per Ray actor; vectors stream into the table as they come
            writer = run.writer("embeddings")
            dim = 0
            for out in runtime.stream(
                EmbedStage(config, "text"),
                staged,
                batch_rows=config.batch_size * 8,
                on_progress=on_progress,
            ):
                writer.append(
                    item_id=out.column("item_id"), model=config.name, vector=out.column("vector")
                )
                dim = out.schema.field("vector").type.list_size
            writer.close()
            if queries.encoder(store, config.name) is None:
                run.catalog_rows.append(
                    (
                        "models",
                        {
                            "model": config.name,
                            "encoder": json.dumps(dataclasses.asdict(config)),
                            "dim": dim,
                            "run_id": run.run_id,
                        },
                    )
                )
            run.record(StageCounts("embed", config.name, staged.rows, staged.rows, 0, 0))
            run.message = f"{staged.rows} items embedded with {config.name}"
    info = update_index(store, config.name, index)  # None: the latest settings
    return EmbedReport(config.name, n_todo, total - n_todo, info)


def update_index(
    store: Store, model: str, cfg: IndexConfig | None = None, shortlist: bool = True
) -> vstore.IndexInfo:
    """Bring a model's index up to date (a global step: one Ray task, its own store run).

    Without `shortlist` (semantic dedup, density: they read only the rotated vectors) a
    version that has no shortlist index yet gets none; with it (embed, index, search)
    the shortlist is built when missing (an HNSW index over 1M items took 367 s of the
    411 s of `dedup --semantic` on 2 cores). Up to date already (the same settings, as
    many vectors as the model has, a shortlist if asked for): nothing runs and Ray is
    not started. No `cfg`: the latest version's settings (the defaults for the first),
    so that dedup, score and search add to an index built with `embed --index ivf ...`
    instead of rebuilding it with the defaults."""
    previous = vstore.latest_index(store, model)
    if cfg is None:
        cfg = IndexConfig() if previous is None else settings_of(previous)
    if (
        previous is not None
        and not _rebuild(previous, cfg)
        and vstore.embedding_models(store).get(model, 0) == previous.n_items
        and (previous.has_shortlist or not shortlist)
    ):
        return previous
    rows = vstore.embedding_models(store).get(model, 0)
    info: vstore.IndexInfo = run_task(_update_index, store, model, cfg, shortlist, rows=rows)
    return info


def settings_of(info: vstore.IndexInfo) -> IndexConfig:
    """The settings an index version was built with."""
    return IndexConfig(
        dims=tuple(info.dims),
        shortlist_dim=info.shortlist_dim,
        rotation=info.rotation,
        kind=info.kind,
        codes=info.codes,
    )


def changed_settings(store: Store, model: str, refit: bool = False, **given: Any) -> IndexConfig:
    """The model's index settings (the latest version's, the defaults for the first) with
    the `given` ones that are not None changed: `embed` with no index option adds to the
    index as it is, and `embed --codes sq8` keeps its rotation and dims. New `dims` without
    a `shortlist_dim` take the default shortlist width."""
    previous = vstore.latest_index(store, model)
    base = IndexConfig() if previous is None else settings_of(previous)
    changes = {k: v for k, v in given.items() if v is not None}
    if "dims" in changes and "shortlist_dim" not in changes:
        changes["shortlist_dim"] = None
    return dataclasses.replace(base, refit=refit, **changes)


def _rebuild(previous: vstore.IndexInfo | None, cfg: IndexConfig) -> bool:
    return (
        previous is None
        or cfg.refit
        or previous.rotation != cfg.rotation
        or (cfg.dims is not None and previous.dims != check_dims(cfg.dims, previous.dims[-1]))
        or (cfg.kind, cfg.codes) != (previous.kind, previous.codes)
        or (cfg.shortlist_dim is not None and cfg.shortlist_dim != previous.shortlist_dim)
    )


def _update_index(store: Store, model: str, cfg: IndexConfig, shortlist: bool) -> vstore.IndexInfo:
    """Add new vectors to a model's index, or refit the rotation and rebuild it; then
    build its shortlist index if asked for and missing."""
    info = _add_or_rebuild(store, model, cfg, shortlist)
    if shortlist and not info.has_shortlist:
        info = _build_shortlist(store, info, cfg)
    return info


def _add_or_rebuild(
    store: Store, model: str, cfg: IndexConfig, shortlist: bool
) -> vstore.IndexInfo:
    previous = vstore.latest_index(store, model)
    if not _rebuild(previous, cfg):
        assert previous is not None
        loaded = vstore.load(store, previous, vectors_too=False)
        parts = list(vstore.iter_embeddings(store, model, skip_ids=loaded.ids))
        if not parts:
            return previous
        ids = np.concatenate([p[0] for p in parts])
        rotated = normalize(np.concatenate([p[1] for p in parts])) @ loaded.rotation
        if loaded.shortlist is not None:  # else the first search builds it over every part
            add(
                loaded.shortlist,
                prefix(rotated, previous.shortlist_dim),
                np.arange(len(loaded.ids), len(loaded.ids) + len(ids)),
            )
        with store.run("index", {"model": model, "mode": "add"}) as run:
            info = vstore.write_version(
                run,
                model,
                previous,
                rotation_kind=previous.rotation,
                rotation=None,
                dims=previous.dims,
                shortlist_dim=previous.shortlist_dim,
                new_ids=ids,
                new_vectors=rotated,
                shortlist=loaded.shortlist,
                kind=previous.kind,
                codes=previous.codes,
            )
            run.record(StageCounts("index", model, len(ids), len(ids), 0, 0))
        return info

    # the rotation from a seeded sample (the same rows whatever the batch size), then the
    # rotated vectors and the shortlist index a batch at a time: memory is a batch plus the
    # sample and the index, never all the vectors
    n = vstore.embedding_models(store).get(model, 0)
    rng = np.random.default_rng(cfg.seed)
    sample = _rows_at(store, model, np.sort(rng.choice(n, min(n, ROTATION_SAMPLE), replace=False)))
    d = sample.shape[1]
    dims = check_dims(cfg.dims or default_dims(d), d)
    rotation = fit_rotation(sample, cfg.rotation, dims)
    shortlist_dim = cfg.shortlist_dim or (128 if 128 in dims else dims[0])
    if shortlist_dim not in dims:
        raise ThresherError(f"shortlist dim {shortlist_dim} is not one of the prefix dims {dims}")
    index = (
        new_index(
            shortlist_dim, n, cfg.kind, cfg.codes, train=prefix(sample @ rotation, shortlist_dim),
            seed=cfg.seed,
        )
        if shortlist
        else None
    )  # fmt: skip
    del sample
    with store.run("index", {"model": model, "mode": "build", **dataclasses.asdict(cfg)}) as run:
        part = vstore.PartWriter(run, model, n, d)
        ids = np.empty(n, np.int64)
        pos = 0
        for batch_ids, batch in vstore.iter_embeddings(store, model):
            rotated = normalize(batch) @ rotation
            part.write(rotated)
            ids[pos : pos + len(rotated)] = batch_ids
            if index is not None:
                add(index, prefix(rotated, shortlist_dim), np.arange(pos, pos + len(rotated)))
            pos += len(rotated)
        part.close()
        info = vstore.write_version(
            run,
            model,
            previous,
            rotation_kind=cfg.rotation,
            rotation=rotation,
            dims=dims,
            shortlist_dim=shortlist_dim,
            new_ids=ids,
            new_vectors=None,
            shortlist=index,
            kind=cfg.kind,
            codes=cfg.codes,
        )
        run.record(StageCounts("index", model, n, n, 0, 0))
    return info


def _build_shortlist(store: Store, info: vstore.IndexInfo, cfg: IndexConfig) -> vstore.IndexInfo:
    """A version with the same rotated vectors and a shortlist index over them, trained
    (IVF, codes) on the rows a full build trains on, filled a batch at a time."""
    parts = vstore.VectorParts(store, info)
    n = info.n_items
    rng = np.random.default_rng(cfg.seed)
    sample = np.sort(rng.choice(n, min(n, ROTATION_SAMPLE), replace=False))
    train = parts.take_prefix(sample, info.shortlist_dim)
    index = new_index(info.shortlist_dim, n, info.kind, info.codes, train=train, seed=cfg.seed)
    del train
    for start in range(0, n, SHORTLIST_BATCH):
        rows = np.arange(start, min(n, start + SHORTLIST_BATCH))
        add(index, parts.take_prefix(rows, info.shortlist_dim), rows)
    with store.run("index", {"model": info.model, "mode": "shortlist"}) as run:
        out = vstore.write_version(
            run,
            info.model,
            info,
            rotation_kind=info.rotation,
            rotation=None,
            dims=info.dims,
            shortlist_dim=info.shortlist_dim,
            new_ids=np.zeros(0, np.int64),
            new_vectors=None,
            shortlist=index,
            kind=info.kind,
            codes=info.codes,
        )
        run.record(StageCounts("index", info.model, n, n, 0, 0))
    return out


def _rows_at(store: Store, model: str, positions: np.ndarray) -> np.ndarray:
    """Unit vectors at sorted `positions` of the model's vectors in item_id order."""
    out, start = [], 0
    for _, batch in vstore.iter_embeddings(store, model):
        lo, hi = np.searchsorted(positions, [start, start + len(batch)])
        out.append(normalize(batch[positions[lo:hi] - start]))
        start += len(batch)
    return np.concatenate(out)


def search(
    store: Store,
    *,
    text: str | None = None,
    like: int | None = None,
    like_id: str | None = None,
    k: int = 10,
    model: str | None = None,
    shortlist: int = 100,
) -> pa.Table:
    """The k nearest items to a text, to an item (`like`: its item_id; `like_id`: the
    value of its id column): rank, item_id, similarity, the id column, text, label."""
    if sum(q is not None for q in (text, like, like_id)) != 1:
        raise ThresherError("give exactly one of --text, --like or --like-id")
    if like_id is not None:
        like = _item_of_user_id(store, like_id)
    if k < 1:
        raise ThresherError(f"k must be >= 1, got {k}")
    model = vstore.pick_model(store, model)
    info = vstore.latest_index(store, model)
    if info is None or not info.has_shortlist:  # dedup and density leave it to a search
        info = update_index(store, model)
    loaded = vstore.load(store, info)
    assert loaded.shortlist is not None
    if like is not None:
        where = np.flatnonzero(loaded.ids == like)
        if not len(where):
            raise ThresherError(f"item {like} has no {model!r} embedding (or no such item)")
        query = loaded.vectors[where[:1]]
    else:
        query = _encode_query(store, model, text or "") @ loaded.rotation
    # funnel: shortlist on the short prefix, rerank on longer ones and the full vector
    set_search_width(loaded.shortlist, shortlist)
    funnel = Funnel.build(
        loaded.vectors, [m for m in info.dims if m >= info.shortlist_dim], loaded.shortlist
    )
    scores, pos = funnel_search(query, funnel, k + (like is not None), shortlist)
    keep = [
        (s, loaded.ids[p])
        for s, p in zip(scores[0], pos[0], strict=True)
        if p >= 0 and loaded.ids[p] != like
    ][:k]
    return _with_text(store, keep)


def _encode_query(store: Store, model: str, text: str) -> np.ndarray:
    if not text.strip():
        raise ThresherError("--text is empty")
    encoder = queries.encoder(store, model)
    if encoder is None:
        raise ThresherError(
            f"model {model!r} holds ingested vectors, with no encoder for a "
            "text query; search it with --like ITEM_ID"
        )
    return TextEmbedder(EmbedderConfig(**encoder)).encode([text])


def _item_of_user_id(store: Store, value: str) -> int:
    column = queries.id_column(store)
    if column is None:
        raise ThresherError("--like-id needs an id column: ingest with --id-column")
    found = queries.items_with_user_id(store, column, value)
    if not found:
        raise ThresherError(f"no item has {column} = {value!r}")
    if len(found) > 1:
        raise ThresherError(
            f"{column} = {value!r} names several items ({found[0]}, {found[1]}, ...): "
            "use --like ITEM_ID"
        )
    return found[0]


def _with_text(store: Store, hits: Sequence[tuple[float, int]]) -> pa.Table:
    """The hits with the user's own columns: the id column, the text and the label."""
    ids = np.array([h[1] for h in hits], dtype=np.int64)
    try:
        text_column: str | None = store.text_column()
    except ThresherError:
        text_column = None
    out = pa.table(
        {
            "rank": pa.array(range(1, len(hits) + 1), pa.int32()),
            "item_id": pa.array(ids, pa.int64()),
            "similarity": pa.array([float(h[0]) for h in hits], pa.float32()),
        }
    )
    roles = {"id": queries.id_column(store), "text": text_column}
    roles["label"] = queries.label_column(store)
    wanted = {role: col for role, col in roles.items() if col is not None}
    found = queries.item_columns(store, ids, list(wanted.values())) if wanted else None
    for i, (role, col) in enumerate(wanted.items()):
        assert found is not None
        name = col if role == "id" and col not in out.column_names else role
        out = out.append_column(name, found.column(i))
    if "text" not in wanted:
        out = out.append_column("text", pa.nulls(len(ids), pa.string()))
    return out
