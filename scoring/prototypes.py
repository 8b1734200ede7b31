"""Self-supervised prototype scores (Sorscher et al. 2022, "Beyond neural scaling laws").

Spherical k-means (FAISS) on unit embeddings; an item's score is its cosine
distance to the nearest centroid (`prototype_distance` = 1 - cosine): small
for typical, easy items, large for atypical, hard ones. k should be near the
number of classes and the result is robust to it; without labels thresher
takes k = round(sqrt(n / 4)), clamped to [2, 1000]. k-means trains on at most
256 points per centroid (a seeded sample), so its cost does not grow with n;
assigning every item then goes through the fused nearest-centroid kernel
(`thresher.kernels.dispatch`).

`knn_distance` (density): cosine distance to the k-th nearest other item;
large in sparse regions.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from thresher.kernels.dispatch import nearest_centroid
from thresher.storage.errors import ThresherError
from thresher.storage.stage import Resources, Stage, arrow_to_vectors

MAX_POINTS_PER_CENTROID = 256


def default_k(n: int, n_labels: int = 0) -> int:
    """k for n items: the label count when there are labels, else round(sqrt(n / 4))."""
    if n_labels >= 2:
        return min(n_labels, n)
    return int(min(max(2, round(np.sqrt(n / 4))), 1000, max(n, 1)))


def spherical_kmeans(
    vectors: np.ndarray,
    k: int,
    seed: int = 0,
    niter: int = 20,
    points_per_centroid: int = MAX_POINTS_PER_CENTROID,
) -> np.ndarray:
    """(k, d) unit centroids of (n, d) unit vectors; deterministic for a seed."""
    if not 1 <= k <= len(vectors):
        raise ThresherError(
            f"clusters must be in [1, {len(vectors)}] for {len(vectors)} items, got {k}"
        )
    # Only the sample is copied, never the whole array.
    key = sample_key(vectors, seed)
    size = min(len(vectors), k * points_per_centroid)
    pick = np.argpartition(key, size - 1)[:size] if size < len(vectors) else np.arange(size)
    pick = pick[np.argsort(key[pick], kind="stable")]
    sample = np.ascontiguousarray(vectors[pick], dtype=np.float32)
    return fit_sample(sample, k, seed, niter, points_per_centroid)


def sample_key(vectors: np.ndarray, seed: int) -> np.ndarray:
    """Each row's rank key for the k-means training sample: a seeded random projection
    hashed to [0, 1). It depends on the row's content only, never on its position, so the
    same rows in any order (or read piece by piece) give the same sample, in the same
    order, and the same centroids; the sample is the rows with the smallest keys."""
    direction = np.asarray(
        np.random.default_rng(seed).standard_normal(vectors.shape[1]), dtype=np.float32
    )
    proj = np.asarray(np.asarray(vectors, dtype=np.float32) @ direction, dtype=np.float64)
    return np.modf(np.abs(proj) * 1e4)[0]


def fit_sample(
    sample: np.ndarray,
    k: int,
    seed: int = 0,
    niter: int = 20,
    points_per_centroid: int = MAX_POINTS_PER_CENTROID,
) -> np.ndarray:
    """(k, d) unit centroids from a training sample (rows in `sample_key` order); on a GPU
    torch k-means with the fused kernel (`scoring.kmeans`), else FAISS."""
    import torch

    if torch.cuda.is_available():
        from thresher.scoring.kmeans import spherical_kmeans_torch

        x = torch.as_tensor(np.ascontiguousarray(sample, dtype=np.float32), device="cuda")
        return spherical_kmeans_torch(x, k, seed, niter).cpu().numpy()
    import faiss

    km = faiss.Kmeans(
        sample.shape[1],
        k,
        niter=niter,
        seed=seed,
        spherical=True,
        verbose=False,
        max_points_per_centroid=points_per_centroid,
    )
    km.train(sample)
    return np.asarray(km.centroids, dtype=np.float32)


def prototype_scores(
    vectors: np.ndarray, centroids: np.ndarray, m: int | None = None, backend: str = "auto"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cluster, prototype_distance, margin) per row; distance = 1 - cosine to the nearest."""
    idx, cos, margin = nearest_centroid(
        np.ascontiguousarray(vectors, dtype=np.float32),
        np.ascontiguousarray(centroids, dtype=np.float32),
        m,
        backend,
    )
    return idx, (1.0 - cos).astype(np.float32), margin


def knn_distance(vectors: np.ndarray, k: int = 10, block: int = 4096) -> np.ndarray:
    """Cosine distance of each unit vector to its k-th nearest other vector (exact, FAISS)."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(x) <= k:
        raise ThresherError(f"knn_distance needs more than k={k} items, got {len(x)}")
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    out = np.empty(len(x), np.float32)
    for start in range(0, len(x), block):
        sims, _ = index.search(x[start : start + block], k + 1)  # the first hit is the item
        out[start : start + block] = 1.0 - sims[:, k]
    return out


def kth_distance(
    queries: np.ndarray, candidates: np.ndarray, k: int, block: int = 4096
) -> np.ndarray:
    """Cosine distance of each unit query (q, d) to its k-th nearest other row among unit
    `candidates` (c, d), which include the queries themselves (the nearest hit is the
    query). Fewer than k + 1 candidates: the distance to the farthest. FAISS's brute-force
    search (one product and a k-heap per block, no index) took 0.27 s for 4,096 x 8,000
    x 384 on one core, against 0.62 s for a numpy product and partition of the same."""
    import faiss

    kth = min(k, len(candidates) - 1)
    out = np.empty(len(queries), np.float32)
    base = np.ascontiguousarray(candidates, np.float32)
    for start in range(0, len(queries), block):
        q = np.ascontiguousarray(queries[start : start + block], np.float32)
        sims, _ = faiss.knn(q, base, kth + 1, metric=faiss.METRIC_INNER_PRODUCT)
        out[start : start + block] = 1.0 - sims[:, kth]
    return out


def split_cluster(
    short: np.ndarray, most: int, size: int, probes: int = 2, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray]:
    """Sub-clusters of one cluster whose members' unit prefixes are `short` (n, m): the
    sorted local indices of each sub-cluster's members (maybe none), and each member's
    nearest sub-cluster (an index into that list). At most `most` members: the cluster
    itself. More: spherical k-means into ceil(probes * n / size) sub-clusters, each
    member joining its `probes` nearest (a close pair split by a border still meets), so
    each holds about `size`. The global steps cluster into k ~ sqrt(n) clusters, whose
    size grows as sqrt(n); split again, work within a cluster stays bounded per row."""
    n = len(short)
    if n <= most:
        return [np.arange(n)], np.zeros(n, np.int64)
    k = min(n, -(-probes * n // size))
    x = np.ascontiguousarray(short, np.float32)
    centroids = spherical_kmeans(x, k, seed, niter=10)
    assign = np.argsort(-(x @ centroids.T), axis=1, kind="stable")[:, : min(probes, k)]
    owner = np.repeat(np.arange(n), assign.shape[1])
    order = np.lexsort((owner, assign.ravel()))
    sub, local = assign.ravel()[order], owner[order]
    bounds = np.searchsorted(sub, np.arange(k + 1))
    return [local[bounds[c] : bounds[c + 1]] for c in range(k)], assign[:, 0].astype(np.int64)


def kth_distance_split(
    full: np.ndarray,
    short: np.ndarray,
    asked: np.ndarray,
    k: int,
    most: int,
    seed: int = 0,
    block: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """`kth_distance` of the `asked` rows (a mask) of one cluster among all its rows (unit
    `full` vectors, `short` prefixes). With more than `most` rows the cluster is split
    (`split_cluster`, parts of about `most`, 2 probes) and an asked row is scored once,
    among the rows of its nearest part (among the whole cluster when that part has no
    k-th other row): per row ~`most` candidates, not the cluster's size. Returns (local
    indices of the asked rows, in order; their distances)."""
    subs, nearest = split_cluster(short, most, most, 2, seed)
    pos, val = [], []
    for s, candidates in enumerate(subs):
        queries = candidates[asked[candidates] & (nearest[candidates] == s)]
        if len(queries):
            pool = candidates if len(candidates) > k or len(subs) == 1 else np.arange(len(full))
            pos.append(queries)
            val.append(kth_distance(full[queries], full[pool], k, block))
    if not pos:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    pos_all, val_all = np.concatenate(pos), np.concatenate(val)
    order = np.argsort(pos_all, kind="stable")
    return pos_all[order], val_all[order]


def streamed_sample(batches: Iterable[np.ndarray], k: int, seed: int = 0) -> np.ndarray:
    """The training sample `spherical_kmeans` takes (the k x 256 rows with the smallest
    `sample_key`s, in key order), from (n_i, d) unit batches seen one at a time: only the
    sample and one batch are ever in memory."""
    size = k * MAX_POINTS_PER_CENTROID
    keys, rows, n = np.zeros(0), None, 0
    for x in batches:
        n += len(x)
        keys = np.concatenate([keys, sample_key(x, seed)])
        rows = x if rows is None else np.concatenate([rows, x])
        if len(keys) > size:
            best = np.argpartition(keys, size - 1)[:size]
            keys, rows = keys[best], rows[best]
    if rows is None or not 1 <= k <= n:
        raise ThresherError(f"clusters must be in [1, {n}] for {n} items, got {k}")
    return np.ascontiguousarray(rows[np.argsort(keys, kind="stable")], dtype=np.float32)


class PrototypeStage(Stage):
    """(item_id, vector) -> (item_id, cluster_id, distance, margin) against fixed centroids."""

    name = "prototype"

    def __init__(self, centroids: np.ndarray, m: int | None = None) -> None:
        import torch

        self.centroids, self.m = centroids, m
        self.required_columns = ("item_id", "vector")
        self.resources = Resources(cpus=1, gpus=1 if torch.cuda.is_available() else 0)

    def process(self, batch: pa.Table) -> pa.Table:
        vectors = arrow_to_vectors(batch.column("vector"))
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        cluster, distance, margin = prototype_scores(
            vectors / np.maximum(norms, 1e-12), self.centroids, self.m
        )
        return pa.table(
            {
                "item_id": batch.column("item_id"),
                "cluster_id": pa.array(cluster.astype(np.int32)),
                "distance": pa.array(distance.astype(np.float64)),
                "margin": pa.array(margin.astype(np.float64)),
            }
        )
