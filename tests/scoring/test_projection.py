from __future__ import annotations

import numpy as np

from thresher.scoring.projection import pca_2d


def test_pca_2d_matches_the_covariance_eigenvectors() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8)) * np.array([5, 3, 1, 1, 1, 1, 1, 1])
    xy = pca_2d(x)
    assert xy.shape == (500, 2)
    # variance along the two components: the two largest eigenvalues (float32 tolerance)
    eig = np.sort(np.linalg.eigvalsh(np.cov(x.T)))[::-1][:2]
    np.testing.assert_allclose(xy.var(axis=0, ddof=1), eig, rtol=1e-4)
