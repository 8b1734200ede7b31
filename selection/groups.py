"""Turning verified duplicate pairs into keep/drop decisions, shared by fuzzy and semantic dedup."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def resolve(
    n: int,
    pairs: np.ndarray,
    sims: np.ndarray,
    order: np.ndarray,
    protected: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy in `order`: a duplicate of the most similar earlier kept neighbour.

    `protected` (a boolean mask) items stay kept whatever their neighbours.
    """
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    neighbours: dict[int, list[tuple[int, float]]] = {}
    for (i, j), s in zip(pairs.tolist(), sims.tolist(), strict=True):
        later, earlier = (i, j) if rank[i] > rank[j] else (j, i)
        neighbours.setdefault(later, []).append((earlier, s))
    kept_mask = np.ones(n, dtype=bool)
    dup, kept, sim = [], [], []
    for item in sorted(neighbours, key=lambda x: rank[x]):
        if protected is not None and protected[item]:
            continue
        best = max(((s, e) for e, s in neighbours[item] if kept_mask[e]), default=None)
        if best is not None:
            kept_mask[item] = False
            dup.append(item)
            kept.append(best[1])
            sim.append(best[0])
    return (np.array(dup, np.int64), np.array(kept, np.int64), np.array(sim, np.float64))


def resolve_pairs(
    pairs: np.ndarray,
    sims: np.ndarray,
    n_protected: int,
    order: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`resolve` over only the rows that appear in a pair, so memory follows the pairs,
    not the data. `pairs` (m, 2) hold global positions; positions below `n_protected`
    are items kept earlier (never duplicates, first in the order); `order(involved)`
    gives the keep order among the involved positions (default: position order). A pair
    listed twice counts once. Returns global (dup, kept, similarity)."""
    if not len(pairs):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    pairs, first = np.unique(pairs, axis=0, return_index=True)
    sims = np.asarray(sims)[first]
    involved, local = np.unique(pairs, return_inverse=True)
    rank = order(involved) if order is not None else np.arange(len(involved))
    protected = involved < n_protected
    rank = np.concatenate([rank[protected[rank]], rank[~protected[rank]]])
    dup, kept, sim = resolve(len(involved), local.reshape(pairs.shape), sims, rank, protected)
    return involved[dup], involved[kept], sim
