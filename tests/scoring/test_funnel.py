from __future__ import annotations

import numpy as np
import pytest

from thresher.scoring.funnel import Funnel, funnel_search
from thresher.scoring.matryoshka import fit_pca_rotation, normalize, prefix
from thresher.storage.index import build_index

from tests.helpers import clustered


def test_funnel_with_pca_matches_exact_search() -> None:
    x = clustered(3000, 64)
    q = fit_pca_rotation(x)
    rx = x @ q
    queries = rx[:100]
    index = build_index(prefix(rx, 8), np.arange(len(rx)), "flat")
    scores, pos = funnel_search(queries, Funnel.build(rx, [8, 16, 32], index), k=10, shortlist=300)
    truth = np.argsort(-(queries @ rx.T), axis=1)[:, :10]
    hits = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(pos, truth, strict=True)])
    assert hits >= 0.95  # observed 0.99
    full = np.take_along_axis(queries @ rx.T, pos, axis=1)
    assert np.allclose(scores, full, atol=1e-5)  # final scores are full-dimension cosines
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_fewer_items_than_k_pads_with_minus_one() -> None:
    x = normalize(np.eye(3, 4) + 0.1)
    index = build_index(prefix(x, 2), np.arange(3), "flat")
    scores, pos = funnel_search(x[:1], Funnel.build(x, [2], index), k=5)
    assert pos[0, :3].tolist() == [0, *sorted(pos[0, 1:3].tolist(), key=lambda p: -scores[0, 1])]
    assert pos[0, 3:].tolist() == [-1, -1] and np.isinf(scores[0, 3:]).all()


def test_wrong_query_dimension_is_refused() -> None:
    x = clustered(50, 16)
    index = build_index(prefix(x, 4), np.arange(50), "flat")
    with pytest.raises(ValueError, match="16-d"):
        funnel_search(np.ones((1, 8), np.float32), Funnel.build(x, [4], index), k=3)
