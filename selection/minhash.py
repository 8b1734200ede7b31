"""Near-duplicate text by MinHash-LSH, vectorized with NumPy.

1. Shingles: character 5-grams of the normalized text (the exact pass's
   normalization: NFKC, lower case, whitespace runs to one space), hashed to
   32 bits with a polynomial rolling hash over the bytes. Character shingles
   survive typos and small edits that break word shingles; a text shorter
   than one shingle is one shingle.
2. MinHash: `num_perm` universal hashes h(x) = (a x + b) mod (2^61 - 1),
   the minimum per text, computed for many texts at once.
3. LSH: `bands` x `rows` = `num_perm`, chosen from the Jaccard threshold to
   minimize false positives plus false negatives (as datasketch does); texts
   sharing any band's bucket are candidates.
4. Verification: every candidate pair is checked by the true Jaccard of the
   shingle sets, and verified pairs are joined into connected components;
   each component keeps its first item (ingest order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from thresher.selection.exact import normalize_text
from thresher.storage.stage import Resources, Stage

MERSENNE = np.uint64((1 << 61) - 1)
SHINGLE = 5


@dataclass(frozen=True)
class LSHParams:
    threshold: float = 0.8
    num_perm: int = 128
    seed: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"Jaccard threshold must be in (0, 1), got {self.threshold}")
        if self.num_perm < 2:
            raise ValueError(f"num_perm must be >= 2, got {self.num_perm}")

    def bands(self) -> tuple[int, int]:
        """(bands, rows) minimizing the false positive + false negative areas."""
        grid = np.linspace(0, 1, 1001)
        best, best_err = (1, self.num_perm), float("inf")
        for b in range(1, self.num_perm + 1):
            r = self.num_perm // b
            p = 1 - (1 - grid**r) ** b
            fp = float(np.trapezoid(p[grid < self.threshold], grid[grid < self.threshold]))
            fn = float(np.trapezoid(1 - p[grid >= self.threshold], grid[grid >= self.threshold]))
            if fp + fn < best_err:
                best, best_err = (b, r), fp + fn
        return best


def shingle_hashes(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Unique 32-bit shingle hashes of each text, concatenated, and (n + 1) offsets."""
    norm = normalize_text(texts).fill_null("")
    if isinstance(norm, pa.ChunkedArray):
        norm = norm.combine_chunks()
    data = (
        np.frombuffer(norm.buffers()[2] or b"", dtype=np.uint8)
        if len(norm)
        else np.zeros(0, np.uint8)
    )
    offsets = np.frombuffer(norm.buffers()[1], dtype=np.int32)[
        norm.offset : norm.offset + len(norm) + 1
    ].astype(np.int64)
    lengths = np.diff(offsets)
    counts = np.maximum(lengths - SHINGLE + 1, 1)
    starts = np.repeat(offsets[:-1], counts) + _ranges(counts)
    # polynomial hash of up to SHINGLE bytes from each start, not crossing the text's end
    ends = np.repeat(offsets[1:], counts)
    h = np.zeros(len(starts), dtype=np.uint64)
    padded = np.concatenate([data, np.zeros(SHINGLE, np.uint8)]).astype(np.uint64)
    for j in range(SHINGLE):
        byte = np.where(starts + j < ends, padded[starts + j], np.uint64(0))
        h = h * np.uint64(1_000_003) + byte + np.uint64(1)
    h32 = (h ^ (h >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    doc = np.repeat(np.arange(len(lengths)), counts)
    order = np.lexsort((h32, doc))
    doc, h32 = doc[order], h32[order]
    keep = np.ones(len(h32), dtype=bool)
    keep[1:] = (doc[1:] != doc[:-1]) | (h32[1:] != h32[:-1])
    doc, h32 = doc[keep], h32[keep]
    out_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.bincount(doc, minlength=len(lengths)), out=out_offsets[1:])
    return h32.astype(np.uint32), out_offsets


def _ranges(counts: np.ndarray) -> np.ndarray:
    """[0..c0-1, 0..c1-1, ...] for counts c."""
    total = int(counts.sum())
    idx = np.arange(total, dtype=np.int64)
    return idx - np.repeat(np.cumsum(counts) - counts, counts)


def minhash_signatures(
    hashes: np.ndarray, offsets: np.ndarray, params: LSHParams, chunk: int = 200_000
) -> np.ndarray:
    """(n, num_perm) uint32 MinHash signatures from `shingle_hashes` output."""
    rng = np.random.default_rng(params.seed)
    a = rng.integers(1, 1 << 31, size=params.num_perm, dtype=np.uint64)
    b = rng.integers(0, 1 << 31, size=params.num_perm, dtype=np.uint64)
    n = len(offsets) - 1
    sig = np.empty((n, params.num_perm), dtype=np.uint32)
    doc = 0
    while doc < n:
        end = int(np.searchsorted(offsets, offsets[doc] + chunk, side="right")) - 1
        end = max(end, doc + 1)
        lo, hi = offsets[doc], offsets[end]
        x = hashes[lo:hi].astype(np.uint64)[:, None]
        perm = ((x * a + b) % MERSENNE).astype(np.uint32)
        sig[doc:end] = np.minimum.reduceat(perm, offsets[doc:end] - lo, axis=0)
        doc = end
    return sig


def lsh_candidates(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(m, 2) pairs (i < j) of rows that share a bucket in some band."""
    pairs = []
    n = len(signatures)
    for band in range(bands):
        block = signatures[:, band * rows : (band + 1) * rows]
        key = np.ascontiguousarray(block).view(np.dtype((np.void, block.dtype.itemsize * rows)))
        key = key.ravel()
        order = np.argsort(key, kind="stable")
        sk = key[order]
        same = np.flatnonzero(sk[1:] == sk[:-1])
        if not len(same):
            continue
        # link each member of a bucket to the bucket's first member and to its predecessor
        run_start = np.ones(n, dtype=bool)
        run_start[1:] = sk[1:] != sk[:-1]
        first = np.maximum.accumulate(np.where(run_start, np.arange(n), 0))
        members = same + 1
        pairs.append(np.stack([order[first[members]], order[members]], axis=1))
        pairs.append(np.stack([order[same], order[members]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    allp = np.concatenate(pairs)
    allp = np.sort(allp, axis=1)
    allp = allp[allp[:, 0] != allp[:, 1]]
    return np.unique(allp, axis=0)


def jaccard(hashes: np.ndarray, offsets: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """True Jaccard similarity of the shingle sets of each pair."""
    out = np.empty(len(pairs), dtype=np.float64)
    for k, (i, j) in enumerate(pairs.tolist()):
        a = hashes[offsets[i] : offsets[i + 1]]
        b = hashes[offsets[j] : offsets[j + 1]]
        inter = len(np.intersect1d(a, b, assume_unique=True))
        out[k] = inter / (len(a) + len(b) - inter)
    return out


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """The smallest member of each node's connected component (union-find, path halving)."""
    parent = np.arange(n)
    for i, j in edges.tolist():
        ri, rj = _find(parent, i), _find(parent, j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([_find(parent, i) for i in range(n)], dtype=np.int64)


def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return int(i)


@dataclass(frozen=True)
class FuzzyResult:
    dup: np.ndarray  # positions of duplicates
    kept: np.ndarray  # position kept in place of each
    similarity: np.ndarray  # Jaccard of each duplicate with its kept item


def fuzzy_duplicates(
    hashes: np.ndarray,
    offsets: np.ndarray,
    signatures: np.ndarray,
    params: LSHParams,
    protected: Sequence[int] | np.ndarray = (),
) -> FuzzyResult:
    """Near-duplicate groups over texts in ingest order; the first of each group is kept.

    `protected` positions (items already kept by an earlier run) are never
    marked as duplicates.
    """
    n = len(offsets) - 1
    bands, rows = params.bands()
    cand = lsh_candidates(signatures, bands, rows)
    sims = jaccard(hashes, offsets, cand)
    edges = cand[sims >= params.threshold]
    root = components(n, edges)
    protected_mask = np.zeros(n, dtype=bool)
    protected_mask[np.asarray(protected, dtype=np.int64)] = True
    dup = np.flatnonzero((root != np.arange(n)) & ~protected_mask)
    kept = root[dup]
    sim = jaccard(hashes, offsets, np.stack([kept, dup], axis=1)) if len(dup) else np.zeros(0)
    return FuzzyResult(dup, kept, sim)


class MinHashStage(Stage):
    """(item_id, text) -> (item_id, signature, shingles): MinHash signature and shingle set."""

    name = "minhash"
    resources = Resources(cpus=1)

    def __init__(self, text_column: str, params: LSHParams) -> None:
        self.text_column, self.params = text_column, params
        self.required_columns = ("item_id", text_column)

    def process(self, batch: pa.Table) -> pa.Table:
        hashes, offsets = shingle_hashes(batch.column(self.text_column))
        sig = minhash_signatures(hashes, offsets, self.params)
        shingles = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(hashes, pa.uint32()))
        return pa.table(
            {
                "item_id": batch.column("item_id"),
                "signature": pa.FixedSizeListArray.from_arrays(pa.array(sig.ravel()), sig.shape[1]),
                "shingles": shingles,
            }
        )
