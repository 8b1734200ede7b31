"""The partitioned LSH join gives exactly the single-process join's candidate pairs."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from thresher.selection.lsh import (
    band_keys,
    bucket_pairs,
    key_hash,
    keys_from_arrow,
    keys_to_arrow,
    shard_of,
)
from thresher.selection.minhash import LSHParams, lsh_candidates, minhash_signatures, shingle_hashes


def _corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 30))) for _ in range(n)]
    for _ in range(n // 4):  # near copies: one word changed
        t = texts[rng.randrange(n)].split()
        t[rng.randrange(len(t))] = rng.choice(words)
        texts.append(" ".join(t))
    return texts


@pytest.mark.parametrize("shards", [1, 3, 7])
@pytest.mark.parametrize("pieces", [1, 4])
def test_sharded_bucket_join_equals_the_single_process_join(shards: int, pieces: int) -> None:
    params = LSHParams(threshold=0.7)
    bands, rows = params.bands()
    sig = minhash_signatures(*shingle_hashes(pa.array(_corpus(400, seed=shards))), params)
    expected = lsh_candidates(sig, bands, rows)
    assert len(expected) > 50  # the corpus has buckets to join
    # each piece of signatures cut into keys on its own, keys routed to shards
    by_shard: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for chunk in np.array_split(np.arange(len(sig)), pieces):
        keys = band_keys(sig[chunk], bands, rows)
        pos = np.repeat(chunk, bands)
        keys = keys_from_arrow(keys_to_arrow(keys))  # through Arrow, as between processes
        where = shard_of(keys, shards)
        for s in range(shards):
            by_shard.setdefault(s, []).append((keys[where == s], pos[where == s]))
    got = [
        bucket_pairs(np.concatenate([k for k, _ in parts]), np.concatenate([p for _, p in parts]))
        for parts in by_shard.values()
    ]
    union = np.unique(np.concatenate(got), axis=0)
    np.testing.assert_array_equal(union, expected)


def test_keys_are_band_slices_and_shards_cover_every_key() -> None:
    sig = np.arange(2 * 12, dtype=np.uint32).reshape(2, 12)
    keys = band_keys(sig, bands=3, rows=4)
    assert keys.shape == (6, 2 + 16)
    assert keys[4, :2].tolist() == [0, 1]  # item 1, band 1: band number big-endian
    assert keys[4, 2:].view("<u4").tolist() == sig[1, 4:8].tolist()
    where = shard_of(keys, 5)
    assert where.min() >= 0 and where.max() < 5
    np.testing.assert_array_equal(where, shard_of(keys.copy(), 5))  # deterministic


def _mix_after_first_word(w0: int) -> int:
    """key_hash's state after the first 8 bytes of a key (its loop, one step)."""
    m = (1 << 64) - 1
    h = ((0x9E3779B97F4A7C15 ^ w0) * 0xBF58476D1CE4E5B9) & m
    return h ^ (h >> 31)


def test_keys_with_the_same_hash_are_told_apart_by_their_bytes() -> None:
    # two different 16-byte keys with the same 64-bit hash, built from the mix's steps
    a0, a1, b0 = 1, 2, 3
    b1 = _mix_after_first_word(a0) ^ _mix_after_first_word(b0) ^ a1
    a = np.array([a0, a1], "<u8").view(np.uint8)
    b = np.array([b0, b1], "<u8").view(np.uint8)
    assert key_hash(np.stack([a, b]))[0] == key_hash(np.stack([a, b]))[1]
    keys = np.stack([a, b, a, b, b])  # positions 0..4: a bucket {0, 2} and a bucket {1, 3, 4}
    pairs = bucket_pairs(keys, np.arange(5))
    assert pairs.tolist() == [[0, 2], [1, 3], [1, 4], [3, 4]]
    shuffled = bucket_pairs(keys[::-1], np.arange(5)[::-1])  # positions out of order
    assert shuffled.tolist() == pairs.tolist()
