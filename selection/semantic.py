"""Semantic deduplication (SemDeDup, Abbas et al. 2023) on Matryoshka prefixes.

1. Spherical k-means (FAISS) on a short prefix of the rotated unit vectors;
   each item joins its `probes` nearest clusters, so a pair split by a
   cluster border still meets in one of them.
2. Within each cluster, pairwise cosine on the prefix in blocks of `block`
   rows (never an n x n matrix): pairs above `threshold - margin` are
   candidates. Cost O(n^2 / k) instead of O(n^2).
3. Candidates are verified on the full vectors (cosine >= threshold).
4. Items are visited in keep order (the caller's `order`: hard, easy,
   random or by a score); an item with a verified neighbour that was kept
   before it is a duplicate of the most similar such neighbour, else it is
   kept. `all_pairs_reference` applies the same rule to every pair; the
   benchmark checks that both give the same duplicate set.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from thresher.scoring.matryoshka import prefix


@dataclass(frozen=True)
class SemanticParams:
    threshold: float = 0.95
    clusters: int | None = None  # None: about sqrt(n / 4), at least 1
    prefix_dim: int | None = 128
    probes: int = 2
    margin: float = 0.05
    block: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"cosine threshold must be in (0, 1], got {self.threshold}")
        if self.probes < 1 or self.block < 1 or self.margin < 0:
            raise ValueError("probes and block must be >= 1 and margin >= 0")


@dataclass(frozen=True)
class SemanticResult:
    dup: np.ndarray  # positions of duplicates
    kept: np.ndarray  # position kept in place of each
    similarity: np.ndarray  # full-vector cosine between the two
    candidates: int  # pairs checked on the full vectors


def candidate_pairs(vectors: np.ndarray, params: SemanticParams) -> np.ndarray:
    """(m, 2) pairs i < j whose prefix cosine is >= threshold - margin within a cluster."""
    n, d = vectors.shape
    m = min(params.prefix_dim or d, d)
    short = prefix(vectors, m)
    k = params.clusters or max(1, int(np.sqrt(n / 4)))
    k = min(k, n)
    km = faiss.Kmeans(
        m, k, niter=20, seed=params.seed, spherical=True, verbose=False, max_points_per_centroid=256
    )
    km.train(short)
    _, assign = km.index.search(short, min(params.probes, k))
    cut = params.threshold - params.margin
    pairs = []
    owners = np.argsort(assign.ravel(), kind="stable")
    sorted_c = assign.ravel()[owners]
    bounds = np.searchsorted(sorted_c, np.arange(k + 1))
    for c in range(k):
        members = np.sort(owners[bounds[c] : bounds[c + 1]] // assign.shape[1])
        for start in range(0, len(members), params.block):
            rows = members[start : start + params.block]
            cols = members[start:]
            sims = short[rows] @ short[cols].T
            i, j = np.nonzero(sims >= cut)
            keep = cols[j] > rows[i]
            pairs.append(np.stack([rows[i[keep]], cols[j[keep]]], axis=1))
    if not pairs:
        return np.zeros((0, 2), np.int64)
    return np.unique(np.concatenate(pairs), axis=0)


def resolve(
    n: int, pairs: np.ndarray, sims: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy in `order`: a duplicate of the most similar earlier kept neighbour."""
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    neighbours: dict[int, list[tuple[int, float]]] = {}
    for (i, j), s in zip(pairs.tolist(), sims.tolist(), strict=True):
        later, earlier = (i, j) if rank[i] > rank[j] else (j, i)
        neighbours.setdefault(later, []).append((earlier, s))
    kept_mask = np.ones(n, dtype=bool)
    dup, kept, sim = [], [], []
    for item in sorted(neighbours, key=lambda x: rank[x]):
        best = max(((s, e) for e, s in neighbours[item] if kept_mask[e]), default=None)
        if best is not None:
            kept_mask[item] = False
            dup.append(item)
            kept.append(best[1])
            sim.append(best[0])
    return (np.array(dup, np.int64), np.array(kept, np.int64), np.array(sim, np.float64))


def semantic_duplicates(
    vectors: np.ndarray, params: SemanticParams, order: np.ndarray | None = None
) -> SemanticResult:
    """SemDeDup over (n, d) rotated unit vectors; `order` is the keep order (default 0..n-1)."""
    n = len(vectors)
    order = np.arange(n) if order is None else np.asarray(order)
    cand = candidate_pairs(vectors, params)
    full = (
        np.einsum("ij,ij->i", vectors[cand[:, 0]], vectors[cand[:, 1]])
        if len(cand)
        else (np.zeros(0))
    )
    ok = full >= params.threshold
    dup, kept, sim = resolve(n, cand[ok], full[ok], order)
    return SemanticResult(dup, kept, sim, len(cand))


def all_pairs_reference(
    vectors: np.ndarray, threshold: float, order: np.ndarray | None = None, block: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same rule over every pair, by brute force in blocks (for tests and benchmarks)."""
    n = len(vectors)
    order = np.arange(n) if order is None else np.asarray(order)
    pairs, sims = [], []
    for start in range(0, n, block):
        s = vectors[start : start + block] @ vectors.T
        i, j = np.nonzero(s >= threshold)
        i = i + start
        keep = j > i
        pairs.append(np.stack([i[keep], j[keep]], axis=1))
        sims.append(s[i[keep] - start, j[keep]])
    return resolve(n, np.concatenate(pairs), np.concatenate(sims), order)
