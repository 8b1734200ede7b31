from __future__ import annotations

import numpy as np
import pytest

from thresher.selection.iwes import (
    Q_MIN,
    W_MAX,
    active_learn,
    inclusion_probabilities,
    poisson_sample,
)

from tests.helpers import clustered


def test_inclusion_probabilities_sum_to_the_batch_and_respect_the_cap() -> None:
    scores = np.random.default_rng(0).random(1000) ** 3
    q = inclusion_probabilities(scores, 100)
    assert q.sum() == pytest.approx(100, rel=1e-3)
    assert q.min() >= min(Q_MIN, 100 / 2000) and q.max() <= 1.0


def test_weighted_mean_is_unbiased() -> None:
    """Horvitz-Thompson: E[sum(w f)] / N = pool mean, for a skewed f correlated with q."""
    rng = np.random.default_rng(1)
    scores = rng.random(2000) ** 2
    f = 3.0 * scores + rng.normal(0, 0.5, 2000)
    q = inclusion_probabilities(scores, 200)
    estimates = []
    for _ in range(3000):
        drawn, w = poisson_sample(q, rng)
        estimates.append((w * f[drawn]).sum() / len(f))
    # std of the mean of 3000 estimates is ~0.002 here; the tolerance is 3x that
    assert np.mean(estimates) == pytest.approx(f.mean(), abs=0.006)
    unweighted = np.mean([f[poisson_sample(q, rng)[0]].mean() for _ in range(200)])
    assert abs(unweighted - f.mean()) > 0.1  # without weights the estimate is biased


@pytest.mark.parametrize("strategy", ["iwes", "iwes-dis", "entropy", "margin", "random"])
def test_budget_exact_and_seeded(strategy) -> None:
    x = clustered(400, 8, seed=2, centres=4)
    y = np.argmax(x[:, :4], axis=1)
    a = active_learn(x, lambda p: y[p], 4, budget=60, rounds=3, strategy=strategy, seed=5)
    b = active_learn(x, lambda p: y[p], 4, budget=60, rounds=3, strategy=strategy, seed=5)
    assert len(a.selected) <= 60 and len(np.unique(a.selected)) == len(a.selected)
    assert np.array_equal(a.selected, b.selected) and np.allclose(a.weights, b.weights)
    assert (a.weights >= 1).all() and (a.weights <= W_MAX).all()
    if strategy in ("entropy", "margin", "random"):
        assert len(a.selected) == 60


def test_bad_arguments_are_refused() -> None:
    x = clustered(50, 4)
    with pytest.raises(ValueError, match="allowed"):
        active_learn(x, lambda p: p % 2, 2, 10, 2, "best")
    with pytest.raises(ValueError, match="rounds"):
        active_learn(x, lambda p: p % 2, 2, 100, 2, "random")
