"""Confident learning on seeded blobs with labels flipped at a known rate."""

import numpy as np
import pytest

from thresher.scoring.confident import (
    confident_issues,
    fit_out_of_fold,
    fold_of,
    label_issue,
    self_confidence,
)
from thresher.storage.errors import ThresherError


def blobs(n=600, classes=3, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d)) * 3
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), y


def test_folds_are_balanced_and_seeded():
    f = fold_of(103, 5, seed=1)
    assert sorted(np.bincount(f)) == [20, 20, 21, 21, 21]
    assert (f == fold_of(103, 5, seed=1)).all()
    assert not (f == fold_of(103, 5, seed=2)).all()


def test_flipped_labels_rank_first():
    x, y = blobs()
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(y), 30, replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + 1) % 3
    probs, _ = fit_out_of_fold(x, noisy, 3, seed=0)
    assert probs.shape == (600, 3)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    worst = np.argsort(-label_issue(probs, noisy))[:30]
    precision = len(set(worst) & set(flipped)) / 30
    assert precision >= 0.9  # observed 1.0 on these blobs
    flags = confident_issues(probs, noisy)
    assert flags[flipped].mean() >= 0.9  # observed 0.97 (29 of the 30 flipped)
    assert flags.sum() <= 45  # 30 wrong labels; observed 29 flags


def test_self_confidence_is_probability_of_given_label():
    probs = np.array([[0.7, 0.3], [0.2, 0.8]], np.float32)
    assert self_confidence(probs, np.array([0, 0])).tolist() == pytest.approx([0.7, 0.2])
    assert label_issue(probs, np.array([1, 1])).tolist() == pytest.approx([0.7, 0.2])


def test_too_few_labelled_items_is_a_user_error():
    x, y = blobs(n=4)
    with pytest.raises(ThresherError, match="at least 5 labelled"):
        fit_out_of_fold(x, y, 3)
