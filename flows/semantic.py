"""Wiring of the semantic dedup pass, partitioned by cluster (the SemDeDup / NeMo Curator
shape; the algorithm is `selection.semantic`, the partition `flows.partition`).

The kept items (earlier runs) then the new ones, in keep order, are clustered
on the shortlist prefix; each row joins its `probes` nearest clusters. One
task per cluster group pairs rows whose prefix cosine is within the margin of
the threshold and keeps the pairs whose full cosine reaches it; one task over
the verified pairs keeps the first of each group in the keep order (`--keep`);
kept items of earlier runs stay kept. With every prefix fitting in memory the
clusters are exactly the single-process pass's, and so are the duplicates
(tested).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.flows import partition
from thresher.flows.runtime import Staged
from thresher.scoring.matryoshka import prefix
from thresher.selection.groups import resolve_pairs
from thresher.selection.semantic import SemanticParams, keep_order, split_cluster_pairs
from thresher.storage import vectors as vstore
from thresher.storage.ray_adapter import map_tasks, run_task
from thresher.storage.store import Run, Store, write_rows


def semantic_pass(
    run: Run,
    info: vstore.IndexInfo,
    kept: Staged,
    todo: Staged,
    params: SemanticParams,
    keep: str,
    groups: int | None = None,
    fit_bytes: int = partition.FIT_FULL_BYTES,
) -> tuple[int, int, int]:
    """Semantic duplicates of the new items; (checked, duplicates, new items with no vector).
    Writes `duplicates` and `dedup_checked` files of `run`."""
    store = run.store
    part = partition.build(
        store,
        info,
        [kept.paths, todo.paths],
        run.scratch("semantic"),
        clusters=params.clusters,
        probes=params.probes,
        seed=params.seed,
        prefix_dim=params.prefix_dim,
        rows=kept.rows + todo.rows,
        groups=groups,
        fit_bytes=fit_bytes,
    )
    n_kept, n_new = part.found
    checked_path, dup_path = run.reserve("dedup_checked"), run.reserve("duplicates")
    if n_new:
        calls = [(store, info, part.folder, g, part.m, params) for g in range(part.groups)]
        map_tasks(_group_step, calls, rows=part.n)
        run_task(
            _resolve_step, part.folder, part.n, n_kept, keep, params.seed, run.run_id,
            str(dup_path), str(checked_path), rows=part.n,
        )  # fmt: skip
    run.adopt("dedup_checked", checked_path)
    dups = run.adopt("duplicates", dup_path)
    return n_new, dups, todo.rows - n_new


def _group_step(
    store: Store, info: vstore.IndexInfo, folder: str, group: int, m: int, params: SemanticParams
) -> int:
    parts = vstore.VectorParts(store, info)
    cut = params.threshold - params.margin
    device = partition.gpu_device()
    found = [pa.table({"a": pa.array([], pa.int64()), "b": pa.array([], pa.int64()),
                       "similarity": pa.array([], pa.float32())})]  # fmt: skip
    for c, members in partition.clusters(folder, group):
        full = parts.take(members.row)
        pos = members.pos
        pairs = split_cluster_pairs(prefix(full, m), pos, cut, params, params.seed + c, device)
        local = np.searchsorted(pos, pairs)
        sims = np.einsum("ij,ij->i", full[local[:, 0]], full[local[:, 1]])
        ok = sims >= params.threshold
        found.append(pa.table({"a": pairs[ok, 0], "b": pairs[ok, 1], "similarity": sims[ok]}))
    out = pa.concat_tables(found)
    pq.write_table(out, f"{folder}/verified-g{group:05d}.parquet")
    return out.num_rows


def _resolve_step(
    folder: str,
    n: int,
    n_kept: int,
    keep: str,
    seed: int,
    run_id: int,
    dup_path: str,
    checked_path: str,
) -> int:
    tables = [pq.read_table(f) for f in sorted(Path(folder).glob("verified-*.parquet"))]
    table = pa.concat_tables(tables)
    pairs = np.stack([table.column("a").to_numpy(), table.column("b").to_numpy()], axis=1)

    def order(involved: np.ndarray) -> np.ndarray:
        if keep == "random":  # the rank in the seeded permutation of all n rows
            rank = np.empty(n, np.int64)
            rank[keep_order("random", np.zeros(n), seed)] = np.arange(n)
            return np.argsort(rank[involved], kind="stable")
        return keep_order(keep, partition.nearest_sims(folder, involved), seed)

    dup, kept, sim = resolve_pairs(pairs, table.column("similarity").to_numpy(), n_kept, order)
    ids = partition.wanted_ids(folder)
    write_rows(
        dup_path,
        "duplicates",
        run_id,
        item_id=ids[dup],
        kept_id=ids[kept],
        method="semantic",
        similarity=sim,
    )
    write_rows(
        checked_path, "dedup_checked", run_id, item_id=ids[n_kept:], method="semantic", key=None
    )
    return len(dup)
