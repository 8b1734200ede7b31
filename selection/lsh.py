"""The MinHash-LSH bucket join, partitioned: band keys -> shards -> candidate pairs.

The single-process join (`minhash.lsh_candidates`) sorts every band of every
signature in one array. Here each piece of signatures is cut into band keys
on its own (`band_keys`), each key goes to shard `hash(key) % P`
(`shard_of`), and each shard is joined on its own (`bucket_pairs`): equal
(band, key) rows are one bucket, and in position order every member is linked
to the bucket's first member and to its predecessor, exactly as
`lsh_candidates` links them. So the union of all shards' pairs is the same
candidate set, whatever P is (tested), and memory per process is bounded by
one piece or one shard (datatrove and NeMo Curator split the same way: keys
written per bucket, then one task per bucket file).

A key is the band number (2 bytes, big-endian) followed by the band's rows of
the signature (`rows` x 4 bytes), compared as bytes: equal keys are equal
band slices, never a hash collision.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n * bands, 2 + 4 rows) uint8 keys of (n, num_perm) uint32 signatures, row-major
    (item 0's bands, then item 1's, ...)."""
    n = len(signatures)
    sig = np.ascontiguousarray(signatures[:, : bands * rows], dtype="<u4").reshape(n, bands, rows)
    out = np.empty((n, bands, 2 + 4 * rows), np.uint8)
    out[:, :, :2] = np.arange(bands, dtype=">u2").view(np.uint8).reshape(1, bands, 2)
    out[:, :, 2:] = sig.view(np.uint8).reshape(n, bands, 4 * rows)
    return out.reshape(n * bands, 2 + 4 * rows)


def key_hash(keys: np.ndarray) -> np.ndarray:
    """A 64-bit multiply-xor mix of each key's bytes."""
    width = keys.shape[1]
    pad = (-width) % 8
    words = np.ascontiguousarray(np.pad(keys, ((0, 0), (0, pad)))).view("<u8")
    h = np.full(len(keys), 0x9E3779B97F4A7C15, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            h = (h ^ words[:, j]) * np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
    return h


def shard_of(keys: np.ndarray, shards: int) -> np.ndarray:
    """The shard (0..shards-1) of each key."""
    return (key_hash(keys) % np.uint64(shards)).astype(np.int64)


def keys_to_arrow(keys: np.ndarray) -> pa.FixedSizeBinaryArray:
    """(m, w) uint8 -> a fixed-size binary column, without copying."""
    m, w = keys.shape
    data = pa.py_buffer(np.ascontiguousarray(keys).tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(w), m, [None, data])


def keys_from_arrow(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed-size binary column -> (m, w) uint8."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    w = column.type.byte_width
    data = np.frombuffer(column.buffers()[1], np.uint8)
    return data[column.offset * w : (column.offset + len(column)) * w].reshape(len(column), w)


def bucket_pairs(keys: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """(m, 2) unique pairs (i < j, positions) of rows sharing a key: each member of a
    bucket linked to the bucket's first member and to its predecessor, in position order."""
    if len(keys) < 2:
        return np.zeros((0, 2), np.int64)
    # sorted by a 64-bit hash of the key (3x faster than sorting the keys' bytes), then
    # by position; equal hashes must be equal keys, else the bytes decide (a collision)
    h = key_hash(keys)
    in_order = bool(np.all(pos[1:] >= pos[:-1]))  # a shard's files are in position order
    order = np.argsort(h, kind="stable") if in_order else np.lexsort((pos, h))
    sk, sp = h[order], pos[order]
    same = np.flatnonzero(sk[1:] == sk[:-1])
    if not np.array_equal(keys[order[same]], keys[order[same + 1]]):
        void = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.shape[1]))).ravel()
        by_pos = np.argsort(pos, kind="stable")
        order = by_pos[np.argsort(void[by_pos], kind="stable")]
        sk, sp = void[order], pos[order]
        same = np.flatnonzero(sk[1:] == sk[:-1])
    if not len(same):
        return np.zeros((0, 2), np.int64)
    start = np.ones(len(sk), dtype=bool)
    start[1:] = sk[1:] != sk[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(len(sk)), 0))
    members = same + 1
    pairs = np.concatenate(
        [
            np.stack([sp[first[members]], sp[members]], axis=1),
            np.stack([sp[same], sp[members]], axis=1),
        ]
    )
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0)
