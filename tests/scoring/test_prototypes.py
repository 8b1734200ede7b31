from __future__ import annotations

import numpy as np
import pytest

from thresher.scoring.prototypes import (
    default_k,
    knn_distance,
    kth_distance_split,
    prototype_scores,
    spherical_kmeans,
    split_cluster,
)
from thresher.scoring.uncertainty import entropy_margin, predict_proba, train_probe

from tests.helpers import clustered


def test_prototype_distance_matches_a_hand_computed_fixture() -> None:
    s = 2**-0.5
    vectors = np.array([[1, 0], [s, s], [0, 1], [-1, 0]], np.float32)
    centroids = np.array([[1, 0], [0, 1]], np.float32)
    cluster, distance, margin = prototype_scores(vectors, centroids)
    assert cluster.tolist()[:3] == [0, 0, 1] or cluster.tolist()[:3] == [0, 1, 1]  # (s, s) ties
    assert distance.tolist() == pytest.approx([0.0, 1 - s, 0.0, 1.0], abs=1e-6)
    assert margin.tolist() == pytest.approx([1.0, 0.0, 1.0, 1.0], abs=1e-6)  # (-1, 0): 0 vs -1


def test_prototype_scores_do_not_depend_on_row_order() -> None:
    x = clustered(2000, 16, seed=1)
    perm = np.random.default_rng(0).permutation(len(x))
    d1 = prototype_scores(x, spherical_kmeans(x, 8, seed=3))[1]
    d2 = prototype_scores(x[perm], spherical_kmeans(x[perm], 8, seed=3))[1]
    assert np.allclose(d1[perm], d2, atol=1e-5)


def test_kmeans_finds_planted_clusters() -> None:
    x = clustered(3000, 32, seed=2, centres=5)
    _, distance, _ = prototype_scores(x, spherical_kmeans(x, 5))
    assert distance.mean() < 0.2  # points sit near their centre (observed ~0.05)


def test_knn_distance_matches_brute_force() -> None:
    x = clustered(500, 8, seed=4)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    expected = 1 - np.sort(sims, axis=1)[:, -10]
    assert np.allclose(knn_distance(x, k=10, block=77), expected, atol=1e-5)


def test_default_k() -> None:
    assert default_k(10_000) == 50 and default_k(10_000, n_labels=7) == 7 and default_k(3) == 2


def test_entropy_and_margin_fixture() -> None:
    probs = np.array([[1.0, 0.0], [0.5, 0.5], [0.7, 0.3]])
    entropy, margin = entropy_margin(probs)
    assert entropy.tolist() == pytest.approx([0.0, 1.0, 0.8813], abs=1e-3)
    assert margin.tolist() == pytest.approx([1.0, 0.0, 0.4])


def test_probe_learns_separable_labels() -> None:
    x = clustered(600, 16, seed=5, centres=3)
    labels = np.argmax(x @ spherical_kmeans(x, 3).T, axis=1)
    probs = predict_proba(train_probe(x, labels, 3), x)
    assert (probs.argmax(axis=1) == labels).mean() > 0.95


def test_split_cluster_leaves_a_small_cluster_whole() -> None:
    x = clustered(300, 16, seed=1, centres=3)
    subs, nearest = split_cluster(x, 300, 100)
    assert len(subs) == 1 and subs[0].tolist() == list(range(300))
    assert (nearest == 0).all()


def test_split_cluster_puts_each_member_in_probes_parts_its_nearest_among_them() -> None:
    x = clustered(2000, 16, seed=2, centres=6)
    subs, nearest = split_cluster(x, 1000, 500, probes=2, seed=0)
    assert len(subs) == 8  # ceil(2 * 2000 / 500)
    counts = np.zeros(2000, int)
    for s, members in enumerate(subs):
        assert (np.diff(members) > 0).all()  # sorted, each member once
        counts[members] += 1
        assert np.isin(np.flatnonzero(nearest == s), members).all()  # its nearest is one
    assert (counts == 2).all()
    again, _ = split_cluster(x, 1000, 500, probes=2, seed=0)  # seeded
    assert all((a == b).all() for a, b in zip(subs, again, strict=True))


@pytest.mark.parametrize("most", [10_000, 400, 3])
def test_kth_distance_split_ranks_like_the_whole_cluster(most) -> None:
    from thresher.scoring.matryoshka import normalize

    x = clustered(3000, 32, seed=3, centres=4)
    asked = np.random.default_rng(0).random(3000) < 0.7
    exact = knn_distance(x)[asked]
    local, got = kth_distance_split(x, normalize(x[:, :16]), asked, 10, most, seed=1)
    assert local.tolist() == np.flatnonzero(asked).tolist()
    # fewer candidates: never nearer than the truth (parts of under 11 rows: a row there
    # is searched among the whole cluster, never scored against itself alone)
    assert (got >= exact - 1e-5).all()
    if most >= 3000:
        np.testing.assert_allclose(got, exact, atol=1e-5)
    elif most == 400:  # 15 parts of ~400 rows: a row searches ~400 of the 3,000

        def ranks(v: np.ndarray) -> np.ndarray:
            return np.argsort(np.argsort(v)).astype(float)

        spearman = np.corrcoef(ranks(exact), ranks(got))[0, 1]
        assert spearman >= 0.95, spearman  # observed 0.981
