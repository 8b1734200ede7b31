"""Decontamination n-grams: normalized as exact dedup, counted against a reference."""

from __future__ import annotations

import numpy as np
import pytest

from thresher.selection.decontam import DecontamStage, ngram_hashes, overlaps

EVAL = "the quick brown fox jumps over the lazy dog near the river bank"


def test_ngrams_follow_exact_dedups_normalization() -> None:
    a, b, short, none = ngram_hashes([EVAL, "  THE quick\nbrown  fox jumps", "two words", None], 3)
    assert len(a) == 11  # 13 words -> 11 trigrams; "the" repeats but no trigram does
    assert set(b) <= set(a) and len(b) == 3  # case and whitespace do not matter
    assert len(short) == 0 and len(none) == 0
    assert list(a) == sorted(a)


def test_overlaps_count_shared_distinct_ngrams_against_a_reference() -> None:
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(30)]
    texts = [" ".join(rng.choice(vocab, 12)) for _ in range(40)]
    evals = texts[:5]
    eval_grams = np.unique(np.concatenate(ngram_hashes(evals, 4)))
    got = overlaps(ngram_hashes(texts, 4), eval_grams)

    def grams(t: str) -> set[tuple[str, ...]]:
        w = t.split()
        return {tuple(w[i : i + 4]) for i in range(len(w) - 3)}

    ref_eval = set().union(*map(grams, evals))
    assert got.tolist() == [len(grams(t) & ref_eval) for t in texts]
    assert overlaps(ngram_hashes(texts, 4), np.empty(0, np.int64)).tolist() == [0] * 40


def test_stage_and_bad_n() -> None:
    import pyarrow as pa

    grams = np.unique(np.concatenate(ngram_hashes([EVAL], 5)))
    batch = pa.table({"item_id": [1, 2], "batch_id": [0, 0], "text": [EVAL.upper(), "hello"]})
    out = DecontamStage(grams, 5).process(batch)
    assert out.column("overlap").to_pylist() == [9, 0]  # 13 words: 9 5-grams
    with pytest.raises(ValueError, match="n-gram size"):
        ngram_hashes(["x"], 0)
