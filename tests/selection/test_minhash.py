from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thresher.selection.minhash import (
    LSHParams,
    fuzzy_duplicates,
    jaccard,
    minhash_signatures,
    shingle_hashes,
)


def shingle_set(text: str) -> set[str]:
    t = " ".join(text.lower().split())
    return {t[i : i + 5] for i in range(max(len(t) - 4, 1))}


@given(st.lists(st.text(alphabet="ab c", max_size=12), min_size=2, max_size=6))
@settings(max_examples=50, deadline=None)
def test_shingle_jaccard_matches_a_python_reference(texts) -> None:
    hashes, offsets = shingle_hashes(pa.array(texts))
    pairs = np.array([(0, i) for i in range(1, len(texts))])
    got = jaccard(hashes, offsets, pairs)
    for (i, j), g in zip(pairs.tolist(), got, strict=True):
        a, b = shingle_set(texts[i]), shingle_set(texts[j])
        assert g == pytest.approx(len(a & b) / len(a | b))  # 32-bit hashes: no collisions here


def test_minhash_estimates_jaccard() -> None:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(400)]
    base = " ".join(rng.choice(words) for _ in range(200))
    edited = base[:700] + " something else entirely " + base[700:]
    hashes, offsets = shingle_hashes(pa.array([base, edited]))
    sig = minhash_signatures(hashes, offsets, LSHParams(num_perm=256))
    true = jaccard(hashes, offsets, np.array([[0, 1]]))[0]
    estimate = (sig[0] == sig[1]).mean()
    assert abs(estimate - true) < 0.08  # std of the estimate is ~0.025 at 256 permutations


def test_bands_follow_the_threshold() -> None:
    b8, r8 = LSHParams(threshold=0.8).bands()
    b5, r5 = LSHParams(threshold=0.5).bands()
    assert b8 * r8 <= 128 and b5 * r5 <= 128
    assert r8 > r5  # a higher threshold needs more rows per band


def test_fuzzy_duplicates_find_edits_and_keep_the_first() -> None:
    a = "The quick brown fox jumps over the lazy dog near the river bank today"
    texts = [
        a,
        "A completely different sentence about data curation and pruning",
        a.replace("quick", "quack"),
        a.upper(),
        a + " again",
    ]
    hashes, offsets = shingle_hashes(pa.array(texts))
    params = LSHParams(threshold=0.7)
    sig = minhash_signatures(hashes, offsets, params)
    res = fuzzy_duplicates(hashes, offsets, sig, params)
    assert dict(zip(res.dup.tolist(), res.kept.tolist(), strict=True)) == {2: 0, 3: 0, 4: 0}
    assert res.similarity[res.dup.tolist().index(3)] == pytest.approx(1.0)
    assert (res.similarity >= 0.7).all()  # each duplicate is close to its own kept item
    again = fuzzy_duplicates(hashes, offsets, sig, params, protected=[2])
    assert 2 not in again.dup.tolist()


def test_bad_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        LSHParams(threshold=1.5)


def test_hashes_and_signatures_are_the_ones_earlier_runs_saved() -> None:
    """Stores keep signatures for later runs: a faster hash must give the same values
    (pinned from the first implementation, which gathered each shingle's bytes)."""
    texts = pa.array(["Hello,  World!", "", "abc", "naïve café"])
    hashes, offsets = shingle_hashes(texts)
    assert offsets.tolist() == [0, 9, 10, 11, 19]
    assert hashes[:4].tolist() == [3755374058, 2450018647, 448811107, 3025797580]
    assert hashes[8:11].tolist() == [1635157828, 2197221819, 3108151139]  # "", "abc"
    sig = minhash_signatures(hashes, offsets, LSHParams(num_perm=4))
    assert sig.tolist() == [
        [533334080, 721192528, 414632736, 514742985],
        [1646472581, 4064750266, 3865558576, 158222762],
        [4006557615, 2256013906, 3806113300, 3590355167],
        [373317347, 150455614, 70084984, 320104727],
    ]
    # a text longer than a chunk, and one thread or several: the same signatures
    long = shingle_hashes(pa.array(["x" * 3000, "y" * 20, "z"]))
    one = minhash_signatures(*long, LSHParams(num_perm=8), chunk=64, threads=1)
    np.testing.assert_array_equal(
        one, minhash_signatures(*long, LSHParams(num_perm=8), chunk=64, threads=3)
    )
