"""Benchmark decontamination: items that share a word n-gram with an evaluation text.

The check of GPT-3 (Brown et al. 2020, appendix C) and datatrove's
`decont` filter: an item is contaminated by an eval set when one of its word
n-grams (13 by default) is also an n-gram of one of the set's texts. Texts are
normalized as exact dedup normalizes them (`thresher.selection.exact`: NFKC,
lower case, whitespace runs to one space), then split on spaces; punctuation
stays part of its word. Each n-gram is hashed to 64 bits: each word by BLAKE2b,
the n words combined as a polynomial modulo 2^64, so a batch's n-grams hash in
one NumPy product. An eval text shorter than n words has no n-gram and is
never matched (`eval_ngrams` counts them). Languages written without spaces
(zh, th, ja) have few "words": their texts rarely reach n of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from numpy.lib.stride_tricks import sliding_window_view

from thresher.selection.exact import normalize_text
from thresher.storage.stage import Resources, Stage

_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying by it is a bijection mod 2^64


def _word_hashes(words: Sequence[str], cache: dict[str, int]) -> np.ndarray:
    out = np.empty(len(words), dtype=np.uint64)
    for i, w in enumerate(words):
        h = cache.get(w)
        if h is None:
            h = cache[w] = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest())
        out[i] = h
    return out


def ngram_hashes(
    texts: pa.Array | pa.ChunkedArray | Sequence[str | None], n: int
) -> list[np.ndarray]:
    """Each text's distinct word n-gram hashes: sorted int64 arrays (empty when the text
    has fewer than `n` words; nulls are empty)."""
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    column = (
        texts if isinstance(texts, pa.Array | pa.ChunkedArray) else pa.array(texts, pa.string())
    )
    powers = _BASE ** np.arange(n - 1, -1, -1, dtype=np.uint64)
    cache: dict[str, int] = {}
    out = []
    for text in normalize_text(column).to_pylist():
        words = text.split(" ") if text else []
        if len(words) < n:
            out.append(np.empty(0, dtype=np.int64))
            continue
        windows = sliding_window_view(_word_hashes(words, cache), n)
        with np.errstate(over="ignore"):
            grams = (windows * powers).sum(axis=1, dtype=np.uint64)
        out.append(np.unique(grams.view(np.int64)))
    return out


def overlaps(items: list[np.ndarray], eval_grams: np.ndarray) -> np.ndarray:
    """How many distinct n-grams of each item (hash arrays as `ngram_hashes` gives) are in
    `eval_grams` (a sorted, distinct int64 array): int64 (len(items),)."""
    if not len(eval_grams):
        return np.zeros(len(items), dtype=np.int64)
    out = np.zeros(len(items), dtype=np.int64)
    for i, grams in enumerate(items):
        if len(grams):
            pos = np.searchsorted(eval_grams, grams).clip(max=len(eval_grams) - 1)
            out[i] = int((eval_grams[pos] == grams).sum())
    return out


class DecontamStage(Stage):
    """(item_id, batch_id, text) -> (item_id, batch_id, overlap): the item's distinct n-grams
    found in one eval set's (0 where clean)."""

    name = "decontaminate"
    resources = Resources(cpus=1)
    required_columns = ("item_id", "batch_id", "text")

    def __init__(self, eval_grams: np.ndarray, n: int) -> None:
        self.eval_grams = eval_grams
        self.n = n

    def process(self, batch: pa.Table) -> pa.Table:
        found = overlaps(ngram_hashes(batch.column("text"), self.n), self.eval_grams)
        return pa.table(
            {
                "item_id": batch.column("item_id"),
                "batch_id": batch.column("batch_id"),
                "overlap": pa.array(found, pa.int64()),
            }
        )
