from __future__ import annotations

import numpy as np
import pytest

from thresher.flows.demo_data import make_records
from thresher.scoring.embedders import EmbedderConfig, TextEmbedder
from thresher.scoring.matryoshka import (
    check_dims,
    fit_adaptor_rotation,
    fit_pca_rotation,
    normalize,
    prefix,
)


@pytest.fixture(scope="module")
def minilm_vectors() -> np.ndarray:
    """1,200 real MiniLM (not Matryoshka-trained) vectors of varied demo texts."""
    texts = list(dict.fromkeys(r["text"] for r in make_records(1500, seed=3)))[:1200]
    return TextEmbedder(EmbedderConfig(max_seq_length=64)).encode(texts)


def recall_at(vectors: np.ndarray, rotated: np.ndarray, m: int, k: int = 10) -> float:
    truth = np.argsort(-(vectors @ vectors.T), axis=1)[:, 1 : k + 1]
    p = prefix(rotated, m)
    got = np.argsort(-(p @ p.T), axis=1)[:, 1 : k + 1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, got, strict=True)]))


def test_pca_rotation_is_orthogonal_and_keeps_full_cosines(minilm_vectors) -> None:
    q = fit_pca_rotation(minilm_vectors)
    assert np.allclose(q.T @ q, np.eye(q.shape[0]), atol=1e-4)
    rotated = minilm_vectors @ q
    sims, rsims = minilm_vectors @ minilm_vectors.T, rotated @ rotated.T
    assert np.abs(sims - rsims).max() < 1e-4  # observed ~2e-6


def test_pca_prefixes_beat_truncation_at_64_dims(minilm_vectors) -> None:
    q = fit_pca_rotation(minilm_vectors)
    plain = recall_at(minilm_vectors, minilm_vectors, 64)
    pca = recall_at(minilm_vectors, minilm_vectors @ q, 64)
    assert pca > plain + 0.05, (pca, plain)  # observed: pca 0.92, plain 0.75


def test_adaptor_stays_orthogonal_and_beats_pca_at_32_dims(minilm_vectors) -> None:
    dims = [32, 64, 128, 384]
    q = fit_adaptor_rotation(minilm_vectors, dims, steps=60, batch=512)
    assert np.allclose(q.T @ q, np.eye(q.shape[0]), atol=1e-3)
    pca = recall_at(minilm_vectors, minilm_vectors @ fit_pca_rotation(minilm_vectors), 32)
    adaptor = recall_at(minilm_vectors, minilm_vectors @ q, 32)
    assert adaptor > pca, (adaptor, pca)  # observed: adaptor 0.87, pca 0.77


def test_prefix_is_renormalized_and_dims_are_checked() -> None:
    x = normalize(np.random.default_rng(0).standard_normal((5, 16)))
    assert np.allclose(np.linalg.norm(prefix(x, 4), axis=1), 1.0, atol=1e-6)
    assert check_dims([8, 4], 16) == [4, 8, 16]
    with pytest.raises(ValueError, match="out of range"):
        check_dims([32], 16)
    with pytest.raises(ValueError, match="zero vector"):
        normalize(np.zeros((1, 4)))
