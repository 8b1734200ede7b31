"""Quality as likeness to a reference set: a linear probe, reference vs the store.

"What good looks like" is given as texts (curated documents, a trusted
source); a linear probe on the embeddings learns to tell them (class 1) from
a seeded random sample of the store (class 0, as many), and `quality` is its
probability of the reference class. This is the classifier-based filter of
GPT-3 (Brown et al. 2020: a logistic regression, curated WebText/books vs
Common Crawl) and of datatrove/Dolma's quality scores, on the vectors thresher
already has instead of hashed n-grams.

Both sides are capped at `REFERENCE_ROWS` (a linear probe on 384 dimensions
gains little past that); the sample of the store may hold reference-like
items, which only lowers the probabilities evenly.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from thresher.scoring.uncertainty import train_probe
from thresher.storage.errors import ThresherError
from thresher.storage.stage import Resources, Stage, arrow_to_vectors

REFERENCE_ROWS = 20_000


def fit_quality_probe(
    reference: np.ndarray, background: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(weight (2, d), bias (2,)) of a probe telling reference (m, d) from background
    (b, d) unit vectors, trained on equal numbers of each (the larger side sampled)."""
    if not len(reference):
        raise ThresherError("the reference set has no texts")
    if not len(background):
        raise ThresherError("the store has no kept items to compare the reference set with")
    rng = np.random.default_rng(seed)
    n = min(len(reference), len(background), REFERENCE_ROWS)
    ref = reference[np.sort(rng.choice(len(reference), n, replace=False))]
    bg = background[np.sort(rng.choice(len(background), n, replace=False))]
    x = np.concatenate([bg, ref]).astype(np.float32)
    y = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)])
    probe = train_probe(x, y, 2, seed=seed)
    return probe.weight.detach().numpy(), probe.bias.detach().numpy()


def reference_probability(weight: np.ndarray, bias: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(n,) p(reference class) of (n, d) vectors (normalized here)."""
    x = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    logits = x @ weight.T + bias
    return (1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1]))).astype(np.float32)


class QualityStage(Stage):
    """(item_id, vector) -> (item_id, quality) of a fitted reference probe."""

    name = "quality"
    resources = Resources(cpus=1)
    required_columns = ("item_id", "vector")

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight, self.bias = np.asarray(weight, np.float32), np.asarray(bias, np.float32)

    def process(self, batch: pa.Table) -> pa.Table:
        self.check_columns(batch)
        x = arrow_to_vectors(batch.column("vector"))
        p = reference_probability(self.weight, self.bias, x)
        return pa.table({"item_id": batch.column("item_id"), "quality": p.astype(np.float64)})
