"""Funnel retrieval over Matryoshka prefixes (Kusupati et al. 2022, section 4.3).

Shortlist on a short prefix with a FAISS index, then rerank the shortlist on
longer and longer prefixes, halving it at each step, and finally on the full
vector. Most of the work happens at the cheapest width; the final order is
by full-dimension cosine, so the top of the funnel is exact whenever the true
neighbours survive the shortlist.

Reranking is incremental: the vectors are kept as contiguous column blocks
(one per prefix step) with each item's prefix norms precomputed, so a step
from width m to m' reads only the m' - m new columns of the candidates that
are still in the funnel and adds them to the running dot products.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from thresher.scoring.matryoshka import prefix
from thresher.storage.errors import ThresherError


@dataclass(frozen=True)
class Funnel:
    """Rotated unit vectors split for funnel search, and a shortlist index."""

    dims: tuple[int, ...]  # increasing prefix widths, the last one the full width d
    blocks: tuple[np.ndarray, ...]  # (n, dims[i] - dims[i-1]) column blocks, contiguous
    prefix_norms: np.ndarray  # (n, len(dims)) norm of each item's prefix at each width
    shortlist_index: faiss.Index  # inner product over prefix(vectors, dims[0]); ids = positions

    @classmethod
    def build(
        cls, vectors: np.ndarray, dims: Sequence[int], shortlist_index: faiss.Index
    ) -> Funnel:
        """vectors: (n, d) rotated unit vectors; dims: prefix widths (d is appended)."""
        d = vectors.shape[1]
        widths = sorted(set(dims) | {d})
        edges = [0, *widths]
        blocks = tuple(
            np.ascontiguousarray(vectors[:, a:b], dtype=np.float32)
            for a, b in itertools.pairwise(edges)
        )
        sq = np.cumsum(np.stack([(b * b).sum(axis=1) for b in blocks], axis=1), axis=1)
        return cls(tuple(widths), blocks, np.sqrt(sq).astype(np.float32), shortlist_index)

    @property
    def n(self) -> int:
        return len(self.prefix_norms)


def funnel_search(
    queries: np.ndarray,
    funnel: Funnel,
    k: int,
    shortlist: int = 200,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (cosine, position) per query; both (nq, k), position -1 where fewer exist.

    queries: (nq, d) rotated unit vectors.
    """
    d = funnel.dims[-1]
    if queries.ndim != 2 or queries.shape[1] != d:
        raise ThresherError(f"queries have shape {queries.shape}; vectors are {d}-d")
    if not np.isfinite(queries).all():
        raise ThresherError("query vector contains NaN or inf")
    k_eff = min(k, funnel.n)
    width = min(max(shortlist, k_eff), funnel.n)
    scores_out = np.full((len(queries), k), -np.inf, np.float32)
    pos_out = np.full((len(queries), k), -1, np.int64)
    edges = [0, *funnel.dims]
    for start in range(0, len(queries), chunk):
        q = np.ascontiguousarray(queries[start : start + chunk], dtype=np.float32)
        _, cand = funnel.shortlist_index.search(prefix(q, funnel.dims[0]), width)
        valid = cand >= 0
        cand = np.where(valid, cand, 0)
        q_norms = np.sqrt(
            np.cumsum(
                np.stack(
                    [(q[:, a:b] ** 2).sum(axis=1) for a, b in itertools.pairwise(edges)],
                    axis=1,
                ),
                axis=1,
            )
        )
        dots = np.zeros(cand.shape, np.float32)
        for step, block in enumerate(funnel.blocks):
            a, b = edges[step], edges[step + 1]
            dots += np.einsum("qcw,qw->qc", block[cand], q[:, a:b])
            sims = dots / np.maximum(
                funnel.prefix_norms[cand, step] * q_norms[:, step : step + 1], 1e-12
            )
            sims = np.where(valid, sims, -np.inf)
            if step == 0 and len(funnel.blocks) > 1:
                continue  # the shortlist is already ranked at this width
            last = step == len(funnel.blocks) - 1
            keep = k_eff if last else max(k_eff, cand.shape[1] // 2)
            order = np.argsort(-sims, axis=1, kind="stable")[:, :keep]
            cand, dots, valid = (np.take_along_axis(x, order, axis=1) for x in (cand, dots, valid))
            best = np.take_along_axis(sims, order, axis=1)
        if len(funnel.blocks) == 1:
            order = np.argsort(-sims, axis=1, kind="stable")[:, :k_eff]
            cand, valid = (np.take_along_axis(x, order, axis=1) for x in (cand, valid))
            best = np.take_along_axis(sims, order, axis=1)
        scores_out[start : start + len(q), :k_eff] = best
        pos_out[start : start + len(q), :k_eff] = np.where(valid, cand, -1)
    return scores_out, pos_out
