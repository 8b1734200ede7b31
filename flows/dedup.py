"""Wiring of `thresher dedup`: exact, then fuzzy, then semantic; each writes `duplicates`.

Each pass looks only at items it has not checked before (the `dedup_checked`
table) that are not already duplicates, against the items it kept in earlier
runs: saved MinHash signatures for fuzzy, the model's stored vectors for
semantic. Items kept earlier are never turned into duplicates later.
Keep order is (batch_id, item_id): earlier batches win.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from thresher.selection.exact import ContentHash, exact_duplicates
from thresher.selection.minhash import (
    LSHParams,
    MinHashStage,
    fuzzy_groups,
    lsh_candidates,
    shingle_hashes,
)
from thresher.selection.semantic import SemanticParams, semantic_duplicates
from thresher.storage import queries
from thresher.storage import vectors as vstore
from thresher.storage.ray_adapter import run_stage
from thresher.storage.store import Run, StageCounts, Store

Progress = Callable[[int, int], None] | None


@dataclass(frozen=True)
class DedupReport:
    run_id: int
    method: str
    checked: int
    duplicates: int
    note: str = ""


def _write(
    run: Run,
    method: str,
    ids: np.ndarray,
    dup_ids: np.ndarray,
    kept_ids: np.ndarray,
    sims: np.ndarray,
    keys: np.ndarray | None = None,
) -> None:
    n = len(dup_ids)
    run.write_table(
        "duplicates",
        pa.table(
            {
                "item_id": pa.array(dup_ids, pa.int64()),
                "kept_id": pa.array(kept_ids, pa.int64()),
                "method": pa.array([method] * n, pa.string()),
                "similarity": pa.array(sims, pa.float64()),
                "run_id": pa.array(np.full(n, run.run_id), pa.int64()),
            }
        ),
    )
    run.write_table(
        "dedup_checked",
        pa.table(
            {
                "item_id": pa.array(ids, pa.int64()),
                "method": pa.array([method] * len(ids), pa.string()),
                "key": pa.array(keys, pa.int64())
                if keys is not None
                else pa.nulls(len(ids), pa.int64()),
                "run_id": pa.array(np.full(len(ids), run.run_id), pa.int64()),
            }
        ),
    )
    run.record(StageCounts(f"dedup_{method}", "", len(ids), len(ids) - n, n, 0))
    run.message = f"{n} {method} duplicates among {len(ids)} new items"


def dedup_exact(store: Store, on_progress: Progress = None) -> DedupReport:
    """Exact duplicates of normalized text among new items and against kept ones."""
    text = store.text_column()
    new = queries.dedup_candidates(store, "exact", text)
    old = queries.dedup_kept(store, "exact")
    new_hashes = (
        np.concatenate(
            [
                out.column("content_hash").to_numpy()
                for out in run_stage(ContentHash("text"), new, on_progress=on_progress)
            ]
        )
        if new.num_rows
        else (np.zeros(0, np.int64))
    )
    # kept items' hashes were saved as `key` when they were checked: no text is read again
    hashes = np.concatenate([old.column("key").to_numpy(), new_hashes])
    ids = np.concatenate([old.column("item_id").to_numpy(), new.column("item_id").to_numpy()])
    dup, kept = exact_duplicates(hashes)
    with store.run("dedup", {"method": "exact", "text_column": text}) as run:
        _write(
            run,
            "exact",
            new.column("item_id").to_numpy(),
            ids[dup],
            ids[kept],
            np.ones(len(dup)),
            keys=new_hashes,
        )
    return DedupReport(run.run_id, "exact", new.num_rows, len(dup))


def dedup_fuzzy(store: Store, threshold: float = 0.8, on_progress: Progress = None) -> DedupReport:
    """MinHash-LSH near duplicates (Jaccard of character 5-gram sets >= threshold)."""
    params = LSHParams(threshold=threshold)
    text = store.text_column()
    new = queries.dedup_candidates(store, "fuzzy", text)
    old = queries.dedup_kept(store, "fuzzy")
    # signatures and shingles of new items, through Ray; saved signatures of kept ones
    outs = (
        list(run_stage(MinHashStage("text", params), new, on_progress=on_progress))
        if new.num_rows
        else []
    )
    new_sig = (
        np.concatenate([_fixed(o.column("signature")) for o in outs])
        if outs
        else (np.zeros((0, params.num_perm), np.uint32))
    )
    old_ids = old.column("item_id").to_numpy()
    sig = (
        np.concatenate([queries.minhash_signatures(store, old_ids), new_sig])
        if len(old_ids)
        else new_sig
    )
    ids = np.concatenate([old_ids, new.column("item_id").to_numpy()])
    cand = lsh_candidates(sig, *params.bands())
    # shingles: new items from the stage; kept items only where they are candidates
    needed_old = np.unique(cand[cand < len(old_ids)])
    old_shingles = (
        _shingle_lists(queries.texts(store, old_ids[needed_old], text)) if len(needed_old) else []
    )
    lists: list[np.ndarray] = [np.zeros(0, np.uint32)] * len(old_ids)
    for pos, sh in zip(needed_old.tolist(), old_shingles, strict=True):
        lists[pos] = sh
    for o in outs:
        col = o.column("shingles").combine_chunks()
        lists.extend(np.split(col.values.to_numpy(), col.offsets.to_numpy()[1:-1]))
    offsets = np.zeros(len(lists) + 1, np.int64)
    np.cumsum([len(x) for x in lists], out=offsets[1:])
    hashes = np.concatenate(lists) if lists else np.zeros(0, np.uint32)
    res = fuzzy_groups(hashes, offsets, cand, threshold, np.arange(len(old_ids)))
    with store.run(
        "dedup",
        {
            "method": "fuzzy",
            "threshold": threshold,
            "num_perm": params.num_perm,
            "seed": params.seed,
        },
    ) as run:
        run.write_table(
            "minhashes",
            pa.table(
                {
                    "item_id": new.column("item_id"),
                    "signature": pa.FixedSizeListArray.from_arrays(
                        pa.array(new_sig.ravel()), params.num_perm
                    ),
                    "run_id": pa.array(np.full(new.num_rows, run.run_id), pa.int64()),
                }
            ),
        )
        _write(
            run,
            "fuzzy",
            new.column("item_id").to_numpy(),
            ids[res.dup],
            ids[res.kept],
            res.similarity,
        )
    return DedupReport(run.run_id, "fuzzy", new.num_rows, len(res.dup))


def dedup_semantic(
    store: Store, threshold: float = 0.95, model: str | None = None, keep: str = "first"
) -> DedupReport:
    """SemDeDup over the model's rotated vectors (see selection.semantic)."""
    from thresher.flows.embed import IndexConfig, update_index

    model = vstore.pick_model(store, model)
    info = update_index(store, model, IndexConfig())  # adds vectors embedded since
    loaded = vstore.load(store, info)
    new = queries.dedup_candidates(store, "semantic", None)
    old = queries.dedup_kept(store, "semantic")
    wanted = np.concatenate([old.column("item_id").to_numpy(), new.column("item_id").to_numpy()])
    pos = _positions(loaded.ids, wanted)
    has = pos >= 0
    ids, vectors = wanted[has], loaded.vectors[pos[has]]
    protected = np.zeros(len(ids), dtype=bool)
    protected[: int(has[: old.num_rows].sum())] = True
    params = SemanticParams(threshold=threshold, prefix_dim=info.shortlist_dim)
    res = semantic_duplicates(vectors, params, keep=keep, protected=protected)
    checked = ids[~protected]
    with store.run(
        "dedup", {"method": "semantic", "threshold": threshold, "model": model, "keep": keep}
    ) as run:
        _write(run, "semantic", checked, ids[res.dup], ids[res.kept], res.similarity)
    note = (
        f"{int((~has[old.num_rows :]).sum())} new items have no {model!r} vector"
        if (~has[old.num_rows :]).any()
        else ""
    )
    return DedupReport(run.run_id, "semantic", len(checked), len(res.dup), note)


def _fixed(column: pa.ChunkedArray) -> np.ndarray:
    arr = column.combine_chunks()
    return arr.flatten().to_numpy().reshape(len(arr), -1)


def _shingle_lists(texts: list[str]) -> list[np.ndarray]:
    hashes, offsets = shingle_hashes(pa.array(texts, pa.string()))
    return np.split(hashes, offsets[1:-1])


def _positions(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """Index of each needle in haystack, -1 where absent."""
    if not len(haystack):
        return np.full(len(needles), -1)
    order = np.argsort(haystack)
    found = order[np.minimum(np.searchsorted(haystack, needles, sorter=order), len(order) - 1)]
    return np.where(haystack[found] == needles, found, -1)
