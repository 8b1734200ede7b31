"""Partition a model's vectors by cluster, for the global steps that compare vectors
(SemDeDup, kNN density) without holding them all: the NeMo Curator / IVF shape.

1. Locate: the wanted items (id files, in order) are found in the model's index;
   a row's position is its order there (`wanted.parquet`: item_id, index row,
   and `todo`: whether the item is in the step's todo files, if it has them).
2. Fit: spherical k-means on the shortlist prefix, over every row when they fit
   in `FIT_FULL_BYTES`, else over a seeded sample of 256 rows per centroid.
3. Assign: one task per piece of positions finds each row's `probes` nearest
   centroids, writes one row per (cluster, member) into G group files, with
   what a group task needs of the member (index row, item_id, nearest
   cluster, todo), and each row's nearest centroid and its cosine
   (`top-*.parquet`).

A group task then reads only its own group's files, a cluster at a time
(`clusters`), gathering only their rows from the memory-mapped index parts
(`vectors.VectorParts`): nothing it reads grows with n but its group, so
n / GROUP_ROWS tasks read O(n) in all, not O(n^2 / GROUP_ROWS).
k grows as sqrt(n), so clusters do too; a cluster larger than the step's
bound is split again inside its task (`scoring.prototypes.split_cluster`),
so the work within clusters grows as n, not n^1.5.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.storage import vectors as vstore
from thresher.storage.ray_adapter import map_tasks, run_task
from thresher.storage.store import Store

FIT_FULL_BYTES = 512 * 2**20  # prefixes k-means may hold at once
PIECE_ROWS = 131_072  # rows per assignment task
GROUP_ROWS = 250_000  # (cluster, row) assignments per group task


@dataclass(frozen=True)
class Partition:
    folder: str
    n: int  # rows found in the index, positions 0..n-1
    found: tuple[int, ...]  # of them, how many came from each id file
    groups: int
    m: int  # prefix width the clusters were fitted on


def build(
    store: Store,
    info: vstore.IndexInfo,
    id_paths: list[list[str]],
    folder: Path,
    *,
    clusters: int | None,
    probes: int,
    seed: int,
    prefix_dim: int | None,
    rows: int,
    groups: int | None = None,
    fit_bytes: int = FIT_FULL_BYTES,
    todo_paths: list[str] | None = None,
    piece_rows: int = PIECE_ROWS,
) -> Partition:
    """Locate, fit and assign (see the module docstring); `id_paths` are lists of staged
    files with an item_id column, whose items take positions in that order; a member is
    `todo` when its item is in the `todo_paths` files (every member without them)."""
    folder.mkdir(parents=True, exist_ok=True)
    found = run_task(
        _locate_step, store, info, id_paths, todo_paths, str(folder), piece_rows, rows=rows
    )
    n = sum(found)
    m = min(prefix_dim or info.dims[-1], info.dims[-1])
    if not n:
        return Partition(str(folder), 0, tuple(found), 0, m)
    k = min(clusters or max(1, int(np.sqrt(n / 4))), n)
    centroids = run_task(_fit_step, store, info, str(folder), n, m, k, seed, fit_bytes, rows=n)
    g = groups or min(k, max(1, math.ceil(n * probes / GROUP_ROWS)))
    starts = range(0, n, piece_rows)  # piece i: row group i of wanted.parquet
    calls = [
        (store, info, str(folder), i, s, min(s + piece_rows, n), centroids, probes, g)
        for i, s in enumerate(starts)
    ]
    map_tasks(_assign_step, calls, rows=n)
    return Partition(str(folder), n, tuple(found), g, m)


def wanted_ids(folder: str) -> np.ndarray:
    return pq.read_table(f"{folder}/wanted.parquet", columns=["item_id"]).column(0).to_numpy()


def index_rows(folder: str) -> np.ndarray:
    return pq.read_table(f"{folder}/wanted.parquet", columns=["row"]).column(0).to_numpy()


def nearest_sims(folder: str, positions: np.ndarray) -> np.ndarray:
    """The nearest-centroid cosine of each of the (sorted) `positions`, read piece by piece."""
    out = np.empty(len(positions), np.float32)
    for f in sorted(Path(folder).glob("top-*.parquet")):
        start = int(f.stem.split("-")[1])
        sims = pq.read_table(f, columns=["sim"]).column(0).to_numpy()
        lo, hi = np.searchsorted(positions, [start, start + len(sims)])
        out[lo:hi] = sims[positions[lo:hi] - start]
    return out


@dataclass(frozen=True)
class Members:
    """The members of one cluster, by position (sorted): their index rows, item_ids,
    nearest clusters and todo flags."""

    pos: np.ndarray
    row: np.ndarray
    item_id: np.ndarray
    home: np.ndarray
    todo: np.ndarray


def clusters(folder: str, group: int) -> Iterator[tuple[int, Members]]:
    """(cluster, its members) for each cluster of a group, from the group's files only."""
    files = sorted(Path(folder).glob(f"assign-g{group:05d}-*.parquet"))
    if not files:
        return
    table = pa.concat_tables([pq.read_table(f) for f in files])
    cols = {name: table.column(name).to_numpy() for name in table.column_names}
    order = np.lexsort((cols["pos"], cols["cluster"]))
    cols = {name: values[order] for name, values in cols.items()}
    bounds = np.flatnonzero(np.diff(cols["cluster"])) + 1
    for start, stop in zip([0, *bounds.tolist()], [*bounds.tolist(), len(order)], strict=True):
        mine = {name: values[start:stop] for name, values in cols.items()}
        yield int(mine.pop("cluster")[0]), Members(**mine)


def _ids(paths: list[str]) -> np.ndarray:
    parts = [pq.read_table(p, columns=["item_id"]).column(0).to_numpy() for p in paths]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _locate_step(
    store: Store,
    info: vstore.IndexInfo,
    id_paths: list[list[str]],
    todo_paths: list[str] | None,
    folder: str,
    piece_rows: int,
) -> list[int]:
    index_ids = vstore.VectorParts(store, info).ids(store, info)
    order = np.argsort(index_ids, kind="stable")
    found, ids_out, rows_out = [], [], []
    for paths in id_paths:
        wanted = _ids(paths)
        if len(order):
            at = np.minimum(np.searchsorted(index_ids, wanted, sorter=order), len(order) - 1)
            rows = order[at]
            has = index_ids[rows] == wanted
        else:
            rows, has = np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
        found.append(int(has.sum()))
        ids_out.append(wanted[has])
        rows_out.append(rows[has])
    ids = np.concatenate(ids_out)
    todo = np.isin(ids, _ids(todo_paths)) if todo_paths is not None else np.ones(len(ids), bool)
    table = pa.table({"item_id": ids, "row": np.concatenate(rows_out), "todo": todo})
    # one row group per assignment piece, so an assignment task reads only its own
    pq.write_table(table, f"{folder}/wanted.parquet", row_group_size=piece_rows)
    return found


def _fit_step(
    store: Store,
    info: vstore.IndexInfo,
    folder: str,
    n: int,
    m: int,
    k: int,
    seed: int,
    fit_bytes: int,
) -> np.ndarray:
    import faiss

    rows = index_rows(folder)
    if n * m * 4 > fit_bytes:  # a seeded sample, in position order
        pick = np.random.default_rng(seed).choice(n, min(n, 256 * k), replace=False)
        rows = rows[np.sort(pick)]
    short = vstore.VectorParts(store, info).take_prefix(rows, m)
    if gpu_device():  # torch k-means with the Triton kernel: no faiss-gpu needed
        import torch

        from thresher.scoring.kmeans import spherical_kmeans_torch

        x = torch.as_tensor(short, device="cuda")
        return spherical_kmeans_torch(x, k, seed).cpu().numpy()
    km = faiss.Kmeans(
        m, k, niter=20, seed=seed, spherical=True, verbose=False, max_points_per_centroid=256
    )
    km.train(short)
    return np.asarray(km.centroids, np.float32)


def gpu_device() -> str | None:
    """The torch device of the global steps' GPU paths: "cuda" when this worker has one."""
    import torch  # here, not at import: torch costs a command ~1.5 s

    return "cuda" if torch.cuda.is_available() else None


def _assign_step(
    store: Store,
    info: vstore.IndexInfo,
    folder: str,
    piece: int,
    start: int,
    stop: int,
    centroids: np.ndarray,
    probes: int,
    groups: int,
) -> int:
    import faiss

    m = centroids.shape[1]
    wanted = pq.ParquetFile(f"{folder}/wanted.parquet").read_row_group(piece)
    assert wanted.num_rows == stop - start, "a piece is one row group of wanted.parquet"
    rows = wanted.column("row").to_numpy()
    short = vstore.VectorParts(store, info).take_prefix(rows, m)
    index = faiss.IndexFlatIP(m)
    index.add(centroids)
    sims, assign = index.search(short, min(probes, len(centroids)))
    pos = np.arange(start, stop, dtype=np.int64)
    top = pa.table({"pos": pos, "cluster": assign[:, 0], "sim": sims[:, 0]})
    pq.write_table(top, f"{folder}/top-{start:012d}.parquet")
    width = assign.shape[1]  # min(probes, k)
    member = {
        "cluster": assign.ravel(),
        "pos": np.repeat(pos, width),
        "row": np.repeat(rows, width),
        "item_id": np.repeat(wanted.column("item_id").to_numpy(), width),
        "home": np.repeat(assign[:, 0], width),
        "todo": np.repeat(wanted.column("todo").to_numpy(zero_copy_only=False), width),
    }
    group = member["cluster"] % groups
    for g in np.unique(group).tolist():
        mine = group == g
        part = pa.table({name: values[mine] for name, values in member.items()})
        pq.write_table(part, f"{folder}/assign-g{g:05d}-{start:012d}.parquet")
    return stop - start
