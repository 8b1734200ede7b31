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

import typing
from dataclasses import dataclass
from typing import Literal

import numpy as np

from thresher.scoring.matryoshka import prefix
from thresher.selection.groups import resolve
from thresher.storage.errors import ThresherError


@dataclass(frozen=True)
class SemanticParams:
    threshold: float = 0.95
    clusters: int | None = None  # None: about sqrt(n / 4), at least 1
    prefix_dim: int | None = 128
    probes: int = 2
    margin: float = 0.05
    block: int = 2048
    seed: int = 0
    most: int = 8192  # members of a cluster compared pairwise; a larger one is split

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ThresherError(f"cosine threshold must be in (0, 1], got {self.threshold}")
        if self.probes < 1 or self.block < 1 or self.margin < 0 or self.most < 1:
            raise ThresherError("probes, block and most must be >= 1 and margin >= 0")


@dataclass(frozen=True)
class SemanticResult:
    dup: np.ndarray  # positions of duplicates
    kept: np.ndarray  # position kept in place of each
    similarity: np.ndarray  # full-vector cosine between the two
    candidates: int  # pairs checked on the full vectors


def candidate_pairs(vectors: np.ndarray, params: SemanticParams) -> tuple[np.ndarray, np.ndarray]:
    """(m, 2) pairs i < j whose prefix cosine is >= threshold - margin within a cluster,
    and each item's prefix cosine to its nearest centroid (n,)."""
    import faiss

    n, d = vectors.shape
    m = min(params.prefix_dim or d, d)
    short = prefix(vectors, m)
    k = params.clusters or max(1, int(np.sqrt(n / 4)))
    k = min(k, n)
    km = faiss.Kmeans(
        m, k, niter=20, seed=params.seed, spherical=True, verbose=False, max_points_per_centroid=256
    )
    km.train(short)
    centroid_sim, assign = km.index.search(short, min(params.probes, k))
    cut = params.threshold - params.margin
    pairs = []
    owners = np.argsort(assign.ravel(), kind="stable")
    sorted_c = assign.ravel()[owners]
    bounds = np.searchsorted(sorted_c, np.arange(k + 1))
    for c in range(k):
        members = np.sort(owners[bounds[c] : bounds[c + 1]] // assign.shape[1])
        pairs.append(cluster_pairs(short[members], members, cut, params.block))
    found = np.unique(np.concatenate(pairs), axis=0) if pairs else np.zeros((0, 2), np.int64)
    return found, centroid_sim[:, 0]


def cluster_pairs(
    short: np.ndarray, members: np.ndarray, cut: float, block: int, device: str | None = None
) -> np.ndarray:
    """(m, 2) pairs of one cluster's `members` (sorted positions) whose prefix cosine is
    >= cut, each i < j; `short` (len(members), m) holds their unit prefixes, in order.
    Blocks of `block` rows against the rest of the cluster: never a full matrix. With a
    torch `device` ("cuda") the block products run there (only the pairs come back)."""
    if device is not None:
        return _cluster_pairs_torch(short, members, cut, block, device)
    out = []
    for start in range(0, len(members), block):
        rows = members[start : start + block]
        cols = members[start:]
        sims = short[start : start + block] @ short[start:].T
        i, j = np.nonzero(sims >= cut)
        keep = cols[j] > rows[i]
        out.append(np.stack([rows[i[keep]], cols[j[keep]]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def split_cluster_pairs(
    short: np.ndarray,
    members: np.ndarray,
    cut: float,
    params: SemanticParams,
    seed: int,
    device: str | None = None,
) -> np.ndarray:
    """`cluster_pairs` of one cluster. With more than `params.most` members it is split
    first (`scoring.prototypes.split_cluster`, each member in its `params.probes` nearest
    parts of about most / probes members, so the pairs compared per member stay about
    most / 2 as in an unsplit cluster of `most`): pairs whose rows share a part, once."""
    from thresher.scoring.prototypes import split_cluster

    size = max(1, params.most // params.probes)
    subs, _ = split_cluster(short, params.most, size, params.probes, seed)
    if len(subs) == 1:
        return cluster_pairs(short, members, cut, params.block, device)
    found = [cluster_pairs(short[s], members[s], cut, params.block, device) for s in subs]
    return np.unique(np.concatenate(found), axis=0)


def _cluster_pairs_torch(
    short: np.ndarray, members: np.ndarray, cut: float, block: int, device: str
) -> np.ndarray:
    import torch

    s = torch.as_tensor(short, device=device)
    out = []
    for start in range(0, len(members), block):
        sims = s[start : start + block] @ s[start:].T
        ti, tj = torch.nonzero(sims >= cut, as_tuple=True)
        i, j = ti.cpu().numpy() + start, tj.cpu().numpy() + start
        keep = j > i
        out.append(np.stack([members[i[keep]], members[j[keep]]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


KeepPolicy = Literal["first", "hard", "easy", "random"]
KEEP: tuple[str, ...] = typing.get_args(KeepPolicy)


def keep_order(policy: str, centroid_sim: np.ndarray, seed: int = 0) -> np.ndarray:
    """Positions in the order they claim to be kept.

    first: input order; hard: least typical first (lowest cosine to its
    centroid); easy: most typical first; random: seeded permutation.
    """
    n = len(centroid_sim)
    if policy == "first":
        return np.arange(n)
    if policy == "hard":
        return np.argsort(centroid_sim, kind="stable")
    if policy == "easy":
        return np.argsort(-centroid_sim, kind="stable")
    if policy == "random":
        return np.random.default_rng(seed).permutation(n)
    raise ThresherError(f"keep policy {policy!r}: allowed {', '.join(KEEP)}")


def semantic_duplicates(
    vectors: np.ndarray,
    params: SemanticParams,
    order: np.ndarray | None = None,
    keep: str = "first",
    protected: np.ndarray | None = None,
) -> SemanticResult:
    """SemDeDup over (n, d) rotated unit vectors.

    The keep order is `order` if given, else the `keep` policy; `protected`
    (a boolean mask: items kept by an earlier run) are never duplicates.
    """
    n = len(vectors)
    cand, centroid_sim = candidate_pairs(vectors, params)
    if order is None:
        order = keep_order(keep, centroid_sim, params.seed)
    order = np.asarray(order)
    full = (
        np.einsum("ij,ij->i", vectors[cand[:, 0]], vectors[cand[:, 1]])
        if len(cand)
        else (np.zeros(0))
    )
    ok = full >= params.threshold
    if protected is not None:
        order = np.concatenate([order[protected[order]], order[~protected[order]]])
    dup, kept, sim = resolve(n, cand[ok], full[ok], order, protected)
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
