from __future__ import annotations

import numpy as np
import pytest

from thresher.scoring.matryoshka import normalize
from thresher.storage.index import add, build_index, load_index, save_index, search

from tests.helpers import clustered


def unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    return normalize(np.random.default_rng(seed).standard_normal((n, d)))


def exact(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q @ x.T), axis=1)[:, :k]


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(got, truth, strict=True)])
    )


@pytest.mark.parametrize(
    "kind, codes, min_recall",
    [
        ("flat", "none", 1.0),
        ("flat", "sq8", 0.9),
        ("ivf", "none", 0.9),
        ("ivf", "sq8", 0.85),
        ("ivf", "pq", 0.3),  # observed 0.45: 8-bit PQ codes of 32-d data are coarse
        ("hnsw", "none", 0.9),
        ("hnsw", "sq8", 0.85),
    ],
)
def test_index_kinds_find_the_exact_neighbours(kind, codes, min_recall) -> None:
    data = clustered(4050, 32)
    x, q = data[:4000], data[4000:]
    ids = np.arange(4000) * 7 + 3  # ids are item_ids, not positions
    index = build_index(x, ids, kind, codes)
    _, got = search(index, q, 10)
    truth = ids[exact(x, q, 10)]
    assert recall(got, truth) >= min_recall


def test_index_round_trips_through_a_file_and_grows(tmp_path) -> None:
    x = unit(1000, 16)
    index = build_index(x, np.arange(1000), "hnsw")
    save_index(index, tmp_path / "a.faiss")
    loaded = load_index(tmp_path / "a.faiss")
    q = unit(20, 16, seed=2)
    assert np.array_equal(search(index, q, 5)[1], search(loaded, q, 5)[1])
    extra = unit(10, 16, seed=3)
    add(loaded, extra, np.arange(1000, 1010))
    _, got = search(loaded, extra, 1)
    assert got[:, 0].tolist() == list(range(1000, 1010))


def test_bad_vectors_are_refused() -> None:
    index = build_index(unit(10, 8), np.arange(10), "flat")
    with pytest.raises(ValueError, match=r"expects \(n, 8\)"):
        search(index, unit(1, 4), 3)
    bad = unit(1, 8)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        search(index, bad, 3)
    with pytest.raises(ValueError, match="NaN or inf"):
        build_index(bad, np.arange(1))
    with pytest.raises(ValueError, match="allowed kinds"):
        build_index(unit(4, 8), np.arange(4), "lsh")  # type: ignore[arg-type]
