"""Wiring of the semantic dedup pass, partitioned by cluster (the SemDeDup / NeMo Curator
shape; the algorithm is `selection.semantic`).

1. Locate: the kept items (earlier runs) then the new ones, in keep order, are
   found in the model's index; a row's position is its keep order.
2. Fit: spherical k-means on the shortlist prefix, over every row when they fit
   in `FIT_FULL_BYTES` (exactly the single-process pass), else over a seeded
   sample of 256 rows per centroid.
3. Assign: one task per piece of positions finds each row's `probes` nearest
   centroids and writes (cluster, position) rows into G group files.
4. Within clusters: one task per group reads its clusters' vectors (memory-
   mapped index parts, only those rows), pairs rows whose prefix cosine is
   within the margin of the threshold and keeps those whose full cosine reaches it.
5. Grouping: one task over the verified pairs keeps the first of each group in
   the keep order (`--keep`); kept items of earlier runs stay kept.

Memory per process is bounded by a piece or a cluster group plus the n-sized
keep order of step 5 (a few bytes per item), never by all the vectors.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.flows.runtime import Staged
from thresher.scoring.matryoshka import prefix
from thresher.selection.groups import resolve
from thresher.selection.semantic import SemanticParams, cluster_pairs, keep_order
from thresher.storage import vectors as vstore
from thresher.storage.ray_adapter import map_tasks, run_task
from thresher.storage.store import Run, Store, build_table

FIT_FULL_BYTES = 512 * 2**20  # prefixes k-means may hold at once
PIECE_ROWS = 131_072  # rows per assignment task
GROUP_ROWS = 250_000  # (cluster, row) assignments per within-cluster task


def semantic_pass(
    run: Run,
    info: vstore.IndexInfo,
    kept: Staged,
    todo: Staged,
    params: SemanticParams,
    keep: str,
    groups: int | None = None,
) -> tuple[int, int, int]:
    """Semantic duplicates of the new items; (checked, duplicates, new items with no vector).
    Writes `duplicates` and `dedup_checked` files of `run`."""
    store, rows = run.store, kept.rows + todo.rows
    folder = run.scratch("semantic")
    folder.mkdir(exist_ok=True)
    checked_path, dup_path = run.reserve("dedup_checked"), run.reserve("duplicates")
    n, n_kept, missing = run_task(
        _locate_step, store, info, kept.paths, todo.paths, str(folder), run.run_id,
        str(checked_path), rows=rows,
    )  # fmt: skip
    run.adopt("dedup_checked", checked_path)
    if n - n_kept:
        m = min(params.prefix_dim or 10**9, info.dims[-1])
        k = min(params.clusters or max(1, int(np.sqrt(n / 4))), n)
        centroids = run_task(_fit_step, store, info, str(folder), n, m, k, params.seed, rows=n)
        g = groups or min(k, max(1, math.ceil(n * params.probes / GROUP_ROWS)))
        spans = [(s, min(s + PIECE_ROWS, n)) for s in range(0, n, PIECE_ROWS)]
        calls = [(store, info, str(folder), a, b, centroids, params.probes, g) for a, b in spans]
        map_tasks(_assign_step, calls, rows=n)
        calls = [(store, info, str(folder), i, m, params) for i in range(g)]
        map_tasks(_group_step, calls, rows=n)
        run_task(
            _resolve_step, str(folder), n, n_kept, keep, params.seed, run.run_id, str(dup_path),
            rows=n,
        )  # fmt: skip
    dups = run.adopt("duplicates", dup_path)
    return n - n_kept, dups, missing


def _ids(paths: list[str]) -> np.ndarray:
    parts = [pq.read_table(p, columns=["item_id"]).column(0).to_numpy() for p in paths]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _locate_step(
    store: Store,
    info: vstore.IndexInfo,
    kept: list[str],
    todo: list[str],
    folder: str,
    run_id: int,
    checked_path: str,
) -> tuple[int, int, int]:
    """wanted.parquet: (item_id, row in the index) by position; dedup_checked rows of the new
    items found. (found, found among kept, new items not in the index)."""
    index_ids = vstore.VectorParts(store, info).ids(store, info)
    old, new = _ids(kept), _ids(todo)
    wanted = np.concatenate([old, new])
    order = np.argsort(index_ids, kind="stable")
    at = np.minimum(np.searchsorted(index_ids, wanted, sorter=order), max(len(order) - 1, 0))
    rows = order[at] if len(order) else np.zeros(len(wanted), np.int64)
    has = (index_ids[rows] == wanted) if len(order) else np.zeros(len(wanted), bool)
    pq.write_table(pa.table({"item_id": wanted[has], "row": rows[has]}), f"{folder}/wanted.parquet")
    checked = wanted[has][int(has[: len(old)].sum()) :]
    columns = {"item_id": checked, "method": "semantic", "key": None}
    pq.write_table(build_table("dedup_checked", run_id, columns), checked_path)
    return int(has.sum()), int(has[: len(old)].sum()), int((~has[len(old) :]).sum())


def _index_rows(folder: str, start: int = 0, stop: int | None = None) -> np.ndarray:
    rows = pq.read_table(f"{folder}/wanted.parquet", columns=["row"]).column(0).to_numpy()
    return rows[start:stop]


def _fit_step(
    store: Store, info: vstore.IndexInfo, folder: str, n: int, m: int, k: int, seed: int
) -> np.ndarray:
    import faiss

    rows = _index_rows(folder)
    if n * m * 4 > FIT_FULL_BYTES:  # a seeded sample, in position order
        pick = np.random.default_rng(seed).choice(n, min(n, 256 * k), replace=False)
        rows = rows[np.sort(pick)]
    short = prefix(vstore.VectorParts(store, info).take(rows), m)
    km = faiss.Kmeans(
        m, k, niter=20, seed=seed, spherical=True, verbose=False, max_points_per_centroid=256
    )
    km.train(short)
    return np.asarray(km.centroids, np.float32)


def _assign_step(
    store: Store,
    info: vstore.IndexInfo,
    folder: str,
    start: int,
    stop: int,
    centroids: np.ndarray,
    probes: int,
    groups: int,
) -> int:
    import faiss

    m = centroids.shape[1]
    short = prefix(vstore.VectorParts(store, info).take(_index_rows(folder, start, stop)), m)
    index = faiss.IndexFlatIP(m)
    index.add(centroids)
    sims, assign = index.search(short, min(probes, len(centroids)))
    pos = np.arange(start, stop, dtype=np.int64)
    pq.write_table(pa.table({"pos": pos, "sim": sims[:, 0]}), f"{folder}/top-{start:012d}.parquet")
    cluster, owner = assign.ravel(), np.repeat(pos, assign.shape[1])
    group = cluster % groups
    for g in np.unique(group).tolist():
        mine = group == g
        part = pa.table({"cluster": cluster[mine], "pos": owner[mine]})
        pq.write_table(part, f"{folder}/assign-g{g:05d}-{start:012d}.parquet")
    return stop - start


def _group_step(
    store: Store, info: vstore.IndexInfo, folder: str, group: int, m: int, params: SemanticParams
) -> int:
    files = sorted(Path(folder).glob(f"assign-g{group:05d}-*.parquet"))
    if not files:
        return 0
    table = pa.concat_tables([pq.read_table(f) for f in files])
    cluster, pos = table.column("cluster").to_numpy(), table.column("pos").to_numpy()
    index_rows = _index_rows(folder)
    parts = vstore.VectorParts(store, info)
    cut = params.threshold - params.margin
    found = []
    for c in np.unique(cluster).tolist():
        members = np.sort(pos[cluster == c])
        full = parts.take(index_rows[members])
        pairs = cluster_pairs(prefix(full, m), members, cut, params.block)
        local = np.searchsorted(members, pairs)
        sims = np.einsum("ij,ij->i", full[local[:, 0]], full[local[:, 1]])
        ok = sims >= params.threshold
        found.append(pa.table({"a": pairs[ok, 0], "b": pairs[ok, 1], "similarity": sims[ok]}))
    out = pa.concat_tables(found)
    pq.write_table(out, f"{folder}/verified-g{group:05d}.parquet")
    return out.num_rows


def _resolve_step(
    folder: str, n: int, n_kept: int, keep: str, seed: int, run_id: int, out_path: str
) -> int:
    files = sorted(Path(folder).glob("verified-*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    pairs = np.stack([table.column("a").to_numpy(), table.column("b").to_numpy()], axis=1)
    pairs, first = np.unique(pairs, axis=0, return_index=True)  # a pair met in two clusters
    sims = table.column("similarity").to_numpy()[first]
    tops = pa.concat_tables([pq.read_table(f) for f in sorted(Path(folder).glob("top-*.parquet"))])
    centroid_sim = tops.column("sim").to_numpy()
    order = keep_order(keep, centroid_sim, seed)
    protected = np.arange(n) < n_kept
    order = np.concatenate([order[protected[order]], order[~protected[order]]])
    dup, kept, sim = resolve(n, pairs, sims, order, protected)
    ids = pq.read_table(f"{folder}/wanted.parquet", columns=["item_id"]).column(0).to_numpy()
    columns = {"item_id": ids[dup], "kept_id": ids[kept], "method": "semantic", "similarity": sim}
    pq.write_table(build_table("duplicates", run_id, columns), out_path)
    return len(dup)
