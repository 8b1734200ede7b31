"""Wiring of `thresher dedup`: exact, then fuzzy, then semantic; each writes `duplicates`.

Each pass looks only at items it has not checked before (the `dedup_checked`
table) that are not already duplicates, against the items it kept in earlier
runs: saved hashes for exact, saved MinHash signatures for fuzzy, the model's
stored vectors for semantic. Items kept earlier are never turned into
duplicates later. Keep order is (batch_id, item_id): earlier batches win.

Per-item work (content hashes, MinHash signatures) runs on Ray workers that
read the staged candidates themselves; the global step of each pass (the
hash grouping, the LSH join, SemDeDup) runs as one Ray task over files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.flows import runtime
from thresher.flows.runtime import Progress
from thresher.selection.exact import ContentHash
from thresher.selection.minhash import LSHParams, MinHashStage, fuzzy_groups, lsh_candidates
from thresher.selection.minhash import shingle_hashes as _shingle_hashes
from thresher.selection.semantic import SemanticParams, semantic_duplicates
from thresher.storage import queries
from thresher.storage import vectors as vstore
from thresher.storage.ray_adapter import run_task
from thresher.storage.store import Run, StageCounts, Store, build_table


@dataclass(frozen=True)
class DedupReport:
    run_id: int
    method: str
    checked: int
    duplicates: int
    note: str = ""


def _account(run: Run, method: str, checked: int, dups: int) -> None:
    run.record(StageCounts(f"dedup_{method}", "", checked, checked - dups, dups, 0))
    run.message = f"{dups} {method} duplicates among {checked} new items"


def dedup_exact(store: Store, on_progress: Progress = None) -> DedupReport:
    """Exact duplicates of normalized text among new items and against kept ones."""
    text = store.text_column()
    with store.run("dedup", {"method": "exact", "text_column": text}) as run:
        todo = runtime.stage(run, "exact-todo", queries.dedup_todo("exact", text))
        # content hashes on Ray workers, streamed into dedup_checked (key = the hash)
        checked = run.writer("dedup_checked")
        for out in runtime.stream(
            ContentHash("text"), todo, columns=["item_id", "text"], on_progress=on_progress
        ):
            checked.append(
                item_id=out.column("item_id"), method="exact", key=out.column("content_hash")
            )
        checked.close()
        # equal hashes: the first in keep order stays (one DuckDB query, in a Ray task)
        dups = (
            runtime.write_query(
                run,
                "duplicates",
                queries.exact_duplicates(todo.paths, checked.paths, run.run_id),
            )
            if todo.rows
            else 0
        )
        _account(run, "exact", todo.rows, dups)
    return DedupReport(run.run_id, "exact", todo.rows, dups)


def dedup_fuzzy(store: Store, threshold: float = 0.8, on_progress: Progress = None) -> DedupReport:
    """MinHash-LSH near duplicates (Jaccard of character 5-gram sets >= threshold)."""
    params = LSHParams(threshold=threshold)
    text = store.text_column()
    config = {"method": "fuzzy", "threshold": threshold, "num_perm": params.num_perm}
    with store.run("dedup", {**config, "seed": params.seed}) as run:
        todo = runtime.stage(run, "fuzzy-todo", queries.dedup_todo("fuzzy", text))
        kept = runtime.stage(run, "fuzzy-kept", queries.fuzzy_kept_signatures())
        # signatures on Ray workers, streamed into minhashes (saved for later runs)
        sigs, checked = run.writer("minhashes"), run.writer("dedup_checked")
        for out in runtime.stream(
            MinHashStage("text", params), todo, columns=["item_id", "text"], on_progress=on_progress
        ):
            sigs.append(item_id=out.column("item_id"), signature=out.column("signature"))
            checked.append(item_id=out.column("item_id"), method="fuzzy", key=None)
        sigs.close()
        checked.close()
        # LSH join, Jaccard verification and grouping: one Ray task over the files
        out_path = run.reserve("duplicates")
        if todo.rows:
            run_task(
                _fuzzy_step,
                store,
                text,
                params,
                kept.paths,
                todo.paths,
                sigs.paths,
                run.run_id,
                str(out_path),
                rows=kept.rows + todo.rows,
            )
        dups = run.adopt("duplicates", out_path)
        _account(run, "fuzzy", todo.rows, dups)
    return DedupReport(run.run_id, "fuzzy", todo.rows, dups)


def _fuzzy_step(
    store: Store,
    text_column: str,
    params: LSHParams,
    kept_paths: list[str],
    todo_paths: list[str],
    sig_paths: list[str],
    run_id: int,
    out_path: str,
) -> int:
    """Kept items' signatures first, then the new ones' (in keep order): candidates,
    verification on shingles (kept items' texts read only where they are candidates)."""
    kept = _read(kept_paths, ["item_id", "signature"])
    todo = _read(todo_paths, ["item_id", "text"])
    new_sig = _read(sig_paths, ["item_id", "signature"])
    assert new_sig.column("item_id").equals(todo.column("item_id")), "signatures out of order"
    old_ids = kept.column("item_id").to_numpy()
    ids = np.concatenate([old_ids, todo.column("item_id").to_numpy()])
    sig = np.concatenate([_fixed(kept, params.num_perm), _fixed(new_sig, params.num_perm)])
    cand = lsh_candidates(sig, *params.bands())
    del sig
    # shingles only of candidates: kept items' texts from the store, new ones' from the file
    needed = np.unique(cand)
    lists: list[np.ndarray] = [np.zeros(0, np.uint32)] * len(ids)
    old_pos, new_pos = needed[needed < len(old_ids)], needed[needed >= len(old_ids)]
    texts = pa.concat_arrays(
        [
            pa.array(queries.texts(store, old_ids[old_pos], text_column), pa.string()),
            todo.column("text").combine_chunks().take(new_pos - len(old_ids)).cast(pa.string()),
        ]
    )
    for pos, sh in zip(needed.tolist(), _shingle_lists(texts), strict=True):
        lists[pos] = sh
    offsets = np.zeros(len(lists) + 1, np.int64)
    np.cumsum([len(x) for x in lists], out=offsets[1:])
    hashes = np.concatenate(lists) if lists else np.zeros(0, np.uint32)
    res = fuzzy_groups(hashes, offsets, cand, params.threshold, np.arange(len(old_ids)))
    _write_duplicates(out_path, run_id, "fuzzy", ids[res.dup], ids[res.kept], res.similarity)
    return len(res.dup)


def dedup_semantic(
    store: Store, threshold: float = 0.95, model: str | None = None, keep: str = "first"
) -> DedupReport:
    """SemDeDup over the model's rotated vectors (see selection.semantic)."""
    from thresher.flows.embed import IndexConfig, update_index

    model = vstore.pick_model(store, model)
    info = update_index(store, model, IndexConfig())  # adds vectors embedded since
    config = {"method": "semantic", "threshold": threshold, "model": model, "keep": keep}
    with store.run("dedup", config) as run:
        todo = runtime.stage(run, "semantic-todo", queries.dedup_todo("semantic", None))
        kept = runtime.stage(run, "semantic-kept", queries.dedup_kept_ids("semantic"))
        dup_path, checked_path = run.reserve("duplicates"), run.reserve("dedup_checked")
        checked, missing = (
            run_task(
                _semantic_step,
                store,
                info,
                kept.paths,
                todo.paths,
                SemanticParams(threshold=threshold, prefix_dim=info.shortlist_dim),
                keep,
                run.run_id,
                str(dup_path),
                str(checked_path),
                rows=kept.rows + todo.rows,
            )
            if todo.rows
            else (0, 0)
        )
        dups = run.adopt("duplicates", dup_path)
        run.adopt("dedup_checked", checked_path)
        _account(run, "semantic", checked, dups)
    note = f"{missing} new items have no {model!r} vector" if missing else ""
    return DedupReport(run.run_id, "semantic", checked, dups, note)


def _semantic_step(
    store: Store,
    info: vstore.IndexInfo,
    kept_paths: list[str],
    todo_paths: list[str],
    params: SemanticParams,
    keep: str,
    run_id: int,
    dup_path: str,
    checked_path: str,
) -> tuple[int, int]:
    """SemDeDup of the new items against each other and the kept ones; (checked, missing)."""
    loaded = vstore.load(store, info)
    old = _read(kept_paths, ["item_id"]).column("item_id").to_numpy()
    new = _read(todo_paths, ["item_id"]).column("item_id").to_numpy()
    pos = _positions(loaded.ids, np.concatenate([old, new]))
    has = pos >= 0
    ids = np.concatenate([old, new])[has]
    vectors = loaded.vectors[pos[has]]
    del loaded
    protected = np.zeros(len(ids), dtype=bool)
    protected[: int(has[: len(old)].sum())] = True
    res = semantic_duplicates(vectors, params, keep=keep, protected=protected)
    _write_duplicates(dup_path, run_id, "semantic", ids[res.dup], ids[res.kept], res.similarity)
    checked = ids[~protected]
    pq.write_table(
        build_table(
            "dedup_checked", run_id, {"item_id": checked, "method": "semantic", "key": None}
        ),
        checked_path,
    )
    return len(checked), int((~has[len(old) :]).sum())


def _write_duplicates(
    path: str, run_id: int, method: str, dup: np.ndarray, kept: np.ndarray, sims: np.ndarray
) -> None:
    columns = {"item_id": dup, "kept_id": kept, "method": method, "similarity": sims}
    pq.write_table(build_table("duplicates", run_id, columns), path, compression="zstd")


def _read(paths: list[str], columns: list[str]) -> pa.Table:
    tables = [pq.read_table(p, columns=columns) for p in paths]
    if not tables:
        return pa.table({c: pa.array([], pa.int64()) for c in columns})
    return pa.concat_tables(tables)


def _fixed(table: pa.Table, width: int) -> np.ndarray:
    if not table.num_rows:
        return np.zeros((0, width), np.uint32)
    column = table.column("signature").combine_chunks()
    return column.flatten().to_numpy().astype(np.uint32, copy=False).reshape(len(column), width)


def _shingle_lists(texts: pa.Array | pa.ChunkedArray) -> list[np.ndarray]:
    hashes, offsets = _shingle_hashes(texts)
    return np.split(hashes, offsets[1:-1])


def _positions(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """Index of each needle in haystack, -1 where absent."""
    if not len(haystack):
        return np.full(len(needles), -1)
    order = np.argsort(haystack)
    found = order[np.minimum(np.searchsorted(haystack, needles, sorter=order), len(order) - 1)]
    return np.where(haystack[found] == needles, found, -1)
