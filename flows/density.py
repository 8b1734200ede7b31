"""Wiring of kNN density (`knn_distance`) without all pairs: search within clusters.

The kept items are partitioned by cluster (`flows.partition`, each row in its
`PROBES` nearest clusters, like an IVF index probed `PROBES` times). One task
per cluster group takes each cluster's rows whose *nearest* cluster it is as
queries and every row assigned to it as candidates, and computes each
query's cosine distance to its k-th nearest other candidate on the full
vectors, exactly. So each item is scored once, against the rows that share
one of their clusters with it. A cluster with more than `MOST` rows is split
again (2 probes) and a query searches its nearest sub-cluster. Cost
O(n min(probes n / clusters, MOST)), not O(n^2); its agreement with the
exact all-pairs score is measured by `benchmarks/density.py` (Spearman, see
the README) and tested.
"""

from __future__ import annotations

import numpy as np

from thresher.flows import partition
from thresher.flows.runtime import Staged
from thresher.scoring.matryoshka import prefix
from thresher.scoring.prototypes import kth_distance_split
from thresher.storage import vectors as vstore
from thresher.storage.ray_adapter import map_tasks
from thresher.storage.store import Run, Store, write_rows

PROBES = 5  # 3 gave Spearman 0.959 against the exact search on 100k items, 5 gave 0.970
BLOCK = 4096  # queries per matrix product
# rows of a cluster searched together; a larger one is split again (2 probes). Measured on
# 10k random items of 1M (benchmarks/density.py --sample): 16,384 Spearman 0.960, 149.6 s;
# 8,192 0.955, 87.5 s; 4,096 0.945, 63.1 s. Reached by most clusters from ~1M items on, it
# keeps each row's candidates, and so the work per row, about constant as n grows.
MOST = 8_192


def density_pass(
    run: Run, info: vstore.IndexInfo, kept: Staged, todo: Staged, k: int = 10, seed: int = 0
) -> int:
    """`knn_distance` scores of the `todo` items among the `kept` ones; rows written."""
    store = run.store
    part = partition.build(
        store,
        info,
        [kept.paths],
        run.scratch("density"),
        clusters=max(1, min(int(np.sqrt(kept.rows / 4)), kept.rows // (20 * (k + 1)))),
        probes=PROBES,
        seed=seed,
        prefix_dim=info.shortlist_dim,
        rows=kept.rows,
        todo_paths=todo.paths,
    )
    paths = [run.reserve("scores") for _ in range(part.groups)]
    calls = [
        (store, info, part.folder, part.m, g, k, MOST, seed, run.run_id, str(path))
        for g, path in enumerate(paths)
    ]
    map_tasks(_knn_step, calls, rows=part.n)
    return sum(run.adopt("scores", path) for path in paths)


def _knn_step(
    store: Store,
    info: vstore.IndexInfo,
    folder: str,
    m: int,
    group: int,
    k: int,
    most: int,
    seed: int,
    run_id: int,
    out_path: str,
) -> int:
    parts = vstore.VectorParts(store, info)
    out_ids, out_val = [], []
    for c, members in partition.clusters(folder, group):
        asked = (members.home == c) & members.todo  # each row scored in its nearest cluster
        if asked.any():
            full = parts.take(members.row)
            local, values = kth_distance_split(
                full, prefix(full, m), asked, k, most, seed + c, BLOCK
            )
            out_ids.append(members.item_id[local])
            out_val.append(values)
    ids = np.concatenate(out_ids) if out_ids else np.zeros(0, np.int64)
    values = np.concatenate(out_val) if out_val else np.zeros(0)
    return write_rows(out_path, "scores", run_id, item_id=ids, metric="knn_distance", value=values)
