"""Funnel retrieval over Matryoshka prefixes (Kusupati et al. 2022, section 4.3).

Shortlist on a short prefix with a FAISS index, then rerank the shortlist on
longer and longer prefixes, halving it at each step, and finally on the full
vector. Most of the work happens at the cheapest width; the final order is
by full-dimension cosine, so the top of the funnel is exact whenever the true
neighbours survive the shortlist.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from thresher.scoring.matryoshka import prefix


def funnel_search(
    queries: np.ndarray,
    vectors: np.ndarray,
    shortlist_index: faiss.Index,
    dims: Sequence[int],
    k: int,
    shortlist: int = 200,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (cosine, position) per query; both (nq, k), position -1 where fewer exist.

    queries: (nq, d) rotated unit vectors. vectors: (n, d) rotated unit vectors.
    shortlist_index: a FAISS inner-product index over `prefix(vectors, dims[0])`
    whose ids are positions 0..n-1. dims: increasing prefix widths, the last
    one d.
    """
    if queries.ndim != 2 or queries.shape[1] != vectors.shape[1]:
        raise ValueError(f"queries have shape {queries.shape}; vectors are {vectors.shape[1]}-d")
    if not np.isfinite(queries).all():
        raise ValueError("query vector contains NaN or inf")
    dims = list(dims)
    if dims[-1] != vectors.shape[1]:
        dims.append(vectors.shape[1])
    n = len(vectors)
    k_eff = min(k, n)
    width = min(max(shortlist, k_eff), n)
    scores_out = np.full((len(queries), k), -np.inf, np.float32)
    pos_out = np.full((len(queries), k), -1, np.int64)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        _, cand = shortlist_index.search(prefix(q, dims[0]), width)
        for step, m in enumerate(dims[1:], start=1):
            keep = k_eff if step == len(dims) - 1 else max(k_eff, cand.shape[1] // 2)
            sims = _prefix_scores(q, vectors, cand, m)
            order = np.argsort(-sims, axis=1, kind="stable")[:, :keep]
            cand = np.take_along_axis(cand, order, axis=1)
            best = np.take_along_axis(sims, order, axis=1)
        if len(dims) == 1:
            best = _prefix_scores(q, vectors, cand, dims[0])[:, :k_eff]
            cand = cand[:, :k_eff]
        scores_out[start : start + len(q), :k_eff] = best
        pos_out[start : start + len(q), :k_eff] = cand
    return scores_out, pos_out


def _prefix_scores(q: np.ndarray, vectors: np.ndarray, cand: np.ndarray, m: int) -> np.ndarray:
    """Cosine of renormalized m-prefixes between each query and its candidates; -inf for -1."""
    valid = cand >= 0
    gathered = vectors[np.where(valid, cand, 0)][:, :, :m]  # (nq, c, m)
    norms = np.linalg.norm(gathered, axis=2)
    qm = prefix(q, m)
    sims = np.einsum("qcm,qm->qc", gathered, qm) / np.maximum(norms, 1e-12)
    return np.where(valid, sims, -np.inf).astype(np.float32)
