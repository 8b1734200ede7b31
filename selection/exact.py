"""Exact deduplication by a hash of normalized text.

Normalization, in order: Unicode NFKC, lower case, every run of whitespace
to one space, leading and trailing whitespace removed. So "Hello  World\\n"
and "hello world" are exact duplicates; "Hello, World" is not (punctuation is
content). Near-duplicates are the fuzzy pass's job.

Within a group of equal hashes the first item in ingest order is kept and
every other item points at it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.storage.stage import Resources, Stage


def normalize_text(texts: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    out = pc.utf8_normalize(texts, "NFKC")
    out = pc.utf8_lower(out)
    out = pc.replace_substring_regex(out, r"\s+", " ")
    return pc.utf8_trim_whitespace(out)


def content_hash(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit BLAKE2b of each normalized text, as int64 (n,). Nulls hash as ""."""
    normalized = pc.fill_null(normalize_text(texts), "").to_pylist()
    return np.fromiter(
        (
            int.from_bytes(
                hashlib.blake2b(t.encode(), digest_size=8).digest(), "little", signed=True
            )
            for t in normalized
        ),
        dtype=np.int64,
        count=len(normalized),
    )


def exact_duplicates(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Duplicate positions and the position kept for each, for hashes (n,) in ingest order.

    Returns (dup, kept): int64 arrays of equal length; `kept[j]` is the first
    position whose hash equals that of `dup[j]`.
    """
    order = np.argsort(hashes, kind="stable")
    sorted_h = hashes[order]
    new_group = np.ones(len(order), dtype=bool)
    new_group[1:] = sorted_h[1:] != sorted_h[:-1]
    first = order[np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))]
    dup_mask = ~new_group
    return order[dup_mask].astype(np.int64), first[dup_mask].astype(np.int64)


class ContentHash(Stage):
    """Appends `content_hash` (int64) computed from `text_column`."""

    name = "content_hash"
    resources = Resources(cpus=1)

    def __init__(self, text_column: str) -> None:
        self.text_column = text_column
        self.required_columns = (text_column,)

    def process(self, batch: pa.Table) -> pa.Table:
        hashes = content_hash(batch.column(self.text_column))
        return batch.append_column("content_hash", pa.array(hashes, pa.int64()))
