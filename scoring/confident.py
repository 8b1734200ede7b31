"""Confident learning (Northcutt, Jiang & Chuang, JAIR 2021): which given labels are likely wrong.

A linear probe is trained on k - 1 folds of the labelled items and predicts
the held-out fold, so every item gets class probabilities from a probe that
never saw it (`fit_out_of_fold`, (n, classes)). From those:

- `self_confidence` is p(given label) per item, cleanlab's default label
  quality score; `label_issue` = 1 - self-confidence, so larger is worse.
- `confident_issues` flags the items of the off-diagonal of the confident
  joint: an item labelled i is counted as truly j when p_j >= t_j, the mean
  p_j of the items labelled j (the per-class threshold), for the j of largest
  p_j among those above their threshold; it is an issue when that j is not i.
  Its count is the method's estimate of how many labels are wrong.

`LabelIssueStage` scores items no fold probe trained on (a store with more
labelled items than a probe trains on) with the mean of the fold probes'
probabilities and the thresholds of the out-of-fold pass.

Written here rather than taken from cleanlab: with the probabilities in hand
both rules are a few lines of NumPy, and cleanlab would bring scikit-learn
and pandas into the required dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from thresher.scoring.uncertainty import predict_proba, train_probe
from thresher.storage.errors import ThresherError
from thresher.storage.stage import Resources, Stage, arrow_to_vectors

FOLDS = 5


def fold_of(n: int, folds: int, seed: int) -> np.ndarray:
    """(n,) fold number of each row: a seeded permutation cut into `folds` near-equal parts."""
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, np.int64)
    out[order] = np.arange(n) % folds
    return out


@dataclass(frozen=True)
class FoldProbes:
    """The k fold probes as arrays: weight (folds, classes, d), bias (folds, classes)."""

    weight: np.ndarray
    bias: np.ndarray

    def proba(self, vectors: np.ndarray) -> np.ndarray:
        """(n, classes) mean of the fold probes' softmax over unit vectors (n, d)."""
        logits = np.einsum("nd,fcd->fnc", vectors, self.weight) + self.bias[:, None, :]
        logits -= logits.max(axis=2, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=2, keepdims=True)
        return p.mean(axis=0).astype(np.float32)


def fit_out_of_fold(
    vectors: np.ndarray,
    labels: np.ndarray,
    classes: int,
    *,
    folds: int = FOLDS,
    seed: int = 0,
    epochs: int = 200,
) -> tuple[np.ndarray, FoldProbes]:
    """((n, classes) probabilities of each row from the probe trained on the other folds,
    the fold probes).

    vectors: (n, d) float32, unit length; labels: (n,) ints in [0, classes)."""
    n = len(labels)
    if n < folds:
        raise ThresherError(f"need at least {folds} labelled items for {folds} folds (got {n})")
    fold = fold_of(n, folds, seed)
    probs = np.zeros((n, classes), np.float32)
    weights, biases = [], []
    for f in range(folds):
        held = fold == f
        probe = train_probe(vectors[~held], labels[~held], classes, epochs=epochs, seed=seed + f)
        probs[held] = predict_proba(probe, vectors[held])
        weights.append(probe.weight.detach().numpy())
        biases.append(probe.bias.detach().numpy())
    return probs, FoldProbes(np.stack(weights), np.stack(biases))


def self_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) p(given label): probs (n, classes), labels (n,)."""
    return probs[np.arange(len(labels)), labels].astype(np.float32)


def label_issue(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) 1 - self-confidence: 0 = the probe agrees with the label, 1 = it rules it out."""
    return (1.0 - self_confidence(probs, labels)).astype(np.float32)


def class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(classes,) t_j: the mean p_j of the items labelled j (1 for a class with none)."""
    return np.array(
        [
            probs[labels == j, j].mean() if (labels == j).any() else 1.0
            for j in range(probs.shape[1])
        ],
        np.float32,
    )


def confident_issues(
    probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None = None
) -> np.ndarray:
    """(n,) bool: the off-diagonal of the confident joint (see the module docstring);
    `thresholds` from `class_thresholds` of these probabilities unless given."""
    if thresholds is None:
        thresholds = class_thresholds(probs, labels)
    above = probs >= thresholds[None, :]
    masked = np.where(above, probs, -1.0)
    guess = masked.argmax(axis=1)
    return above.any(axis=1) & (guess != labels)


class LabelIssueStage(Stage):
    """(item_id, vector, label) -> (item_id, label_issue, label_issue_flag) from the mean of
    fitted fold probes; rows in `skip` (scored out of fold already) and rows whose label
    no probe knows are left out."""

    name = "label-issues"
    resources = Resources(cpus=1)
    required_columns = ("item_id", "vector", "label")

    def __init__(
        self, probes: FoldProbes, classes: list[str], thresholds: np.ndarray, skip: np.ndarray
    ) -> None:
        self.probes, self.classes, self.thresholds = probes, classes, thresholds
        self.skip = np.sort(np.asarray(skip, np.int64))

    def process(self, batch: pa.Table) -> pa.Table:
        self.check_columns(batch)
        ids = batch.column("item_id").to_numpy()
        code = {c: i for i, c in enumerate(self.classes)}
        y = np.array([code.get(v, -1) for v in batch.column("label").to_pylist()], np.int64)
        keep = (y >= 0) & ~np.isin(ids, self.skip, assume_unique=False)
        x = arrow_to_vectors(batch.column("vector").filter(pa.array(keep)))
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        probs = self.probes.proba(x) if len(x) else np.zeros((0, len(self.classes)), np.float32)
        flag = confident_issues(probs, y[keep], self.thresholds)
        return pa.table(
            {
                "item_id": pa.array(ids[keep], pa.int64()),
                "label_issue": pa.array(label_issue(probs, y[keep]).astype(np.float64)),
                "label_issue_flag": pa.array(flag.astype(np.float64)),
            }
        )
