"""A 2-D view of embeddings for the report's map."""

from __future__ import annotations

import numpy as np


def pca_2d(x: np.ndarray) -> np.ndarray:
    """(n, d) vectors -> (n, 2): their first two principal components (centered SVD)."""
    x = np.asarray(x, dtype=np.float32)
    centered = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    return centered @ vt[:2].T
