"""Wiring of the fuzzy dedup pass as a partitioned join (see selection.lsh).

1. Signatures: MinHash on Ray workers over the staged new items, streamed into
   `minhashes`; the kept items' saved signatures are staged beside them.
2. Band keys: one task per piece of signatures (kept first, then new, so a
   row's position is its keep order) writes its keys into P shard files.
3. Bucket join: one task per shard emits candidate pairs, routed to P
   verification parts by their first position.
4. Verification: the texts of the pairs' items are staged once, a folder per
   part (one scan of the store for all parts: at 10M items, 29 parts each
   scanning the store's texts took 181 s; unsorted, since DuckDB's sort of
   them failed at 1 GB); one task per part reads its own folder and keeps the
   pairs whose true Jaccard reaches the threshold.
5. Grouping: one task over the verified pairs only (not the items) keeps the
   first of each group in keep order; kept items of earlier runs stay kept.

Memory per process is bounded by a piece, a shard or a part. P grows with
the data (`shard_count`); the result does not depend on it (tested).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from thresher.flows import runtime
from thresher.flows.runtime import Progress
from thresher.selection.groups import resolve_pairs
from thresher.selection.lsh import band_keys, bucket_pairs, keys_from_arrow, keys_to_arrow, shard_of
from thresher.selection.minhash import LSHParams, MinHashStage, jaccard, shingle_hashes
from thresher.storage import queries
from thresher.storage.ray_adapter import map_tasks, row_group_runs, run_task
from thresher.storage.store import StageCounts, Store, write_rows

VERIFIED = ("a", "b", "id_a", "id_b", "similarity")  # a verification part's columns
SHARD_BYTES = 256 * 2**20  # band keys per shard
PIECE_ROWS = 131_072  # signatures per band-key task


def shard_count(n: int, bands: int, rows: int) -> int:
    """Shards so that one shard's keys (key bytes + position + id) fit in SHARD_BYTES."""
    return max(1, math.ceil(n * bands * (2 + 4 * rows + 16) / SHARD_BYTES))


def fuzzy_pass(
    store: Store, threshold: float, on_progress: Progress = None, shards: int | None = None
) -> tuple[int, int, int]:
    """The fuzzy pass over the items it has not checked; (run_id, checked, duplicates)."""
    params = LSHParams(threshold=threshold)
    bands, rows = params.bands()
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
        out_path = run.reserve("duplicates")
        if todo.rows:
            n = kept.rows + todo.rows
            p = shards or shard_count(n, bands, rows)
            folder = str(run.scratch("lsh"))
            Path(folder).mkdir(exist_ok=True)
            # band keys, one task per piece of signatures, routed to P shards
            pieces = row_group_runs([*kept.paths, *sigs.paths], PIECE_ROWS)
            calls = [(*piece, bands, rows, p, folder) for piece in pieces]
            map_tasks(_band_step, calls, rows=n)
            # the bucket join, one task per shard; pairs routed to P verification parts
            map_tasks(_join_step, [(folder, s, p) for s in range(p)], rows=n)
            # the texts of the pairs' items, by part: one scan of the store for all parts
            pair_files = sorted(str(f) for f in Path(folder).glob("pairs-*.parquet"))
            texts = run.scratch("fuzzy-texts")  # no candidate pair: stays empty
            if pair_files:
                query = queries.candidate_texts(pair_files, text)
                texts = runtime.stage_parts(run, "fuzzy-texts", query, "part")
            # true Jaccard of each candidate pair, one task per part
            calls = [(str(texts), folder, v, threshold) for v in range(p)]
            map_tasks(_verify_step, calls, rows=n)
            # grouping in keep order, over the verified pairs only
            run_task(_group_step, folder, kept.rows, run.run_id, str(out_path), rows=n)
        dups = run.adopt("duplicates", out_path)
        run.record(StageCounts("dedup_fuzzy", "", todo.rows, todo.rows - dups, dups, 0))
        run.message = f"{dups} fuzzy duplicates among {todo.rows} new items"
    return run.run_id, todo.rows, dups


def _band_step(
    path: str, groups: tuple[int, ...], start: int, bands: int, rows: int, shards: int, folder: str
) -> int:
    table = pq.ParquetFile(path).read_row_groups(list(groups), columns=["item_id", "signature"])
    column = table.column("signature").combine_chunks()
    sig = column.flatten().to_numpy().astype(np.uint32, copy=False).reshape(len(column), -1)
    keys = band_keys(sig, bands, rows)
    pos = np.repeat(np.arange(start, start + len(sig), dtype=np.int64), bands)
    ids = np.repeat(table.column("item_id").to_numpy(), bands)
    where = shard_of(keys, shards)
    order = np.argsort(where, kind="stable")
    bounds = np.searchsorted(where[order], np.arange(shards + 1))
    for s in range(shards):
        take = order[bounds[s] : bounds[s + 1]]
        if len(take):
            part = pa.table({"key": keys_to_arrow(keys[take]), "pos": pos[take], "id": ids[take]})
            pq.write_table(part, f"{folder}/keys-s{s:05d}-at{start:012d}.parquet")
    return len(sig)


def _join_step(folder: str, shard: int, parts: int) -> int:
    files = sorted(Path(folder).glob(f"keys-s{shard:05d}-*.parquet"))
    if not files:
        return 0
    table = pa.concat_tables([pq.read_table(f) for f in files])
    pos, ids = table.column("pos").to_numpy(), table.column("id").to_numpy()
    pairs = bucket_pairs(keys_from_arrow(table.column("key")), pos)
    order = np.argsort(pos, kind="stable")
    id_of = lambda p: ids[order[np.searchsorted(pos[order], p)]]  # noqa: E731
    part = pairs[:, 0] % parts
    for v in np.unique(part).tolist():
        mine = pairs[part == v]
        out = pa.table({"a": mine[:, 0], "b": mine[:, 1], "id_a": id_of(mine[:, 0])})
        out = out.append_column("id_b", pa.array(id_of(mine[:, 1])))
        out = out.append_column("part", pa.array(np.full(len(mine), v, np.int32)))
        pq.write_table(out, f"{folder}/pairs-v{v:05d}-s{shard:05d}.parquet")
    return len(pairs)


def _verify_step(texts: str, folder: str, part: int, threshold: float) -> int:
    files = sorted(Path(folder).glob(f"pairs-v{part:05d}-*.parquet"))
    if not files:
        return 0
    table = pa.concat_tables([pq.read_table(f) for f in files])
    cols = [table.column(c).to_numpy() for c in ("a", "b", "id_a", "id_b")]
    rows = np.unique(np.stack(cols, axis=1), axis=0)  # a pair found in several bands once
    ids = np.unique(rows[:, 2:])
    hashes, offsets = shingle_hashes(_part_texts(texts, part, ids))
    local = np.searchsorted(ids, rows[:, 2:])
    sims = jaccard(hashes, offsets, local)
    ok = sims >= threshold
    verified = pa.table(
        {
            "a": rows[ok, 0],
            "b": rows[ok, 1],
            "id_a": rows[ok, 2],
            "id_b": rows[ok, 3],
            "similarity": sims[ok],
        }
    )
    pq.write_table(verified, f"{folder}/verified-v{part:05d}.parquet")
    return int(ok.sum())


def _part_texts(folder: str, part: int, ids: np.ndarray) -> pa.Array:
    """The text of each of the sorted `ids` from the staged candidate texts of `part` (its
    own folder `part=N/` of the staged texts, `runtime.stage_parts`); null where the store
    has no text."""
    files = sorted(Path(folder, f"part={part}").glob("*.parquet"))
    tables = [pq.read_table(f, columns=["item_id", "text"]) for f in files]
    if not tables or not sum(t.num_rows for t in tables):
        return pa.nulls(len(ids), pa.string())
    table = pa.concat_tables(tables)
    table = table.take(pc.sort_indices(table.column("item_id")))
    have = table.column("item_id").to_numpy()
    at = np.minimum(np.searchsorted(have, ids), len(have) - 1)
    text = table.column("text").take(pa.array(at)).combine_chunks().cast(pa.string())
    return pc.if_else(pa.array(have[at] == ids), text, pa.scalar(None, pa.string()))


def _group_step(folder: str, n_kept: int, run_id: int, out_path: str) -> int:
    tables = [pq.read_table(f) for f in sorted(Path(folder).glob("verified-*.parquet"))]
    table = pa.concat_tables(tables) if tables else pa.table({c: [] for c in VERIFIED})
    pos = np.stack([table.column("a").to_numpy(), table.column("b").to_numpy()], axis=1)
    ids = np.stack([table.column("id_a").to_numpy(), table.column("id_b").to_numpy()], axis=1)
    # keep order = position order (kept items first): only rows in a verified pair
    dup, kept, sims = resolve_pairs(pos, table.column("similarity").to_numpy(), n_kept)
    id_of = dict(zip(pos.ravel().tolist(), ids.ravel().tolist(), strict=True))
    return write_rows(
        out_path,
        "duplicates",
        run_id,
        item_id=np.array([id_of[p] for p in dup.tolist()], np.int64),
        kept_id=np.array([id_of[p] for p in kept.tolist()], np.int64),
        method="fuzzy",
        similarity=sims,
    )
