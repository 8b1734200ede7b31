"""Confident learning (Northcutt, Jiang & Chuang, JAIR 2021): which given labels are likely wrong.

A linear probe is trained on k - 1 folds of the labelled items and predicts
the held-out fold, so every item gets class probabilities from a probe that
never saw it (`out_of_fold_proba`, (n, classes)). From those:

- `self_confidence` is p(given label) per item, cleanlab's default label
  quality score; `label_issue` = 1 - self-confidence, so larger is worse.
- `confident_issues` flags the items of the off-diagonal of the confident
  joint: an item labelled i is counted as truly j when p_j >= t_j, the mean
  p_j of the items labelled j (the per-class threshold), for the j of largest
  p_j among those above their threshold; it is an issue when that j is not i.
  Its count is the method's estimate of how many labels are wrong.

Written here rather than taken from cleanlab: with the probabilities in hand
both rules are a few lines of NumPy, and cleanlab would bring scikit-learn
and pandas into the required dependencies.
"""

from __future__ import annotations

import numpy as np

from thresher.scoring.uncertainty import predict_proba, train_probe
from thresher.storage.errors import ThresherError

FOLDS = 5


def fold_of(n: int, folds: int, seed: int) -> np.ndarray:
    """(n,) fold number of each row: a seeded permutation cut into `folds` near-equal parts."""
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, np.int64)
    out[order] = np.arange(n) % folds
    return out


def out_of_fold_proba(
    vectors: np.ndarray,
    labels: np.ndarray,
    classes: int,
    *,
    folds: int = FOLDS,
    seed: int = 0,
    epochs: int = 200,
) -> np.ndarray:
    """(n, classes) probabilities of each row from a probe trained on the other folds.

    vectors: (n, d) float32, unit length; labels: (n,) ints in [0, classes)."""
    n = len(labels)
    if n < folds:
        raise ThresherError(f"need at least {folds} labelled items for {folds} folds (got {n})")
    fold = fold_of(n, folds, seed)
    probs = np.zeros((n, classes), np.float32)
    for f in range(folds):
        held = fold == f
        probe = train_probe(vectors[~held], labels[~held], classes, epochs=epochs, seed=seed + f)
        probs[held] = predict_proba(probe, vectors[held])
    return probs


def self_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) p(given label): probs (n, classes), labels (n,)."""
    return probs[np.arange(len(labels)), labels].astype(np.float32)


def label_issue(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) 1 - self-confidence: 0 = the probe agrees with the label, 1 = it rules it out."""
    return (1.0 - self_confidence(probs, labels)).astype(np.float32)


def confident_issues(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) bool: the off-diagonal of the confident joint (see the module docstring)."""
    classes = probs.shape[1]
    thresholds = np.array(
        [probs[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(classes)]
    )
    above = probs >= thresholds[None, :]
    masked = np.where(above, probs, -1.0)
    guess = masked.argmax(axis=1)
    return above.any(axis=1) & (guess != labels)
