"""Selections sized in tokens: between 0.95 N and N tokens, the policy's pick first."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thresher.selection.budget import FILL, fit_tokens
from thresher.selection.pruning import select
from thresher.storage.errors import ThresherError


def random_pick(n: int, seed: int = 0):
    return lambda k: select(n, k, "random", seed=seed)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 200), min_size=1, max_size=300),
    share=st.floats(0.01, 1.5),
    seed=st.integers(0, 5),
)
def test_total_is_within_the_band_whenever_the_pool_allows(counts, share, seed):
    tokens = np.array(counts)
    limit = max(1, int(share * tokens.sum()))
    picked, k = fit_tokens(random_pick(len(tokens), seed), tokens, limit, seed)
    total = tokens[picked].sum()
    assert total <= limit
    assert len(np.unique(picked)) == len(picked) and (np.diff(picked) > 0).all()
    assert 0 <= k <= len(tokens)
    # the band is reachable unless the largest item that still fits is needed and absent;
    # with items of at most 200 tokens and a limit of >= 4,000 it always is
    if limit >= 4_000 or tokens.sum() <= limit:
        assert total >= FILL * min(limit, tokens.sum())


def test_the_policys_pick_is_kept_and_only_topped_up():
    rng = np.random.default_rng(0)
    tokens = rng.integers(10, 100, 1_000)
    scores = rng.random(1_000)
    hard = lambda k: select(1_000, k, "hard", scores=scores)  # noqa: E731
    picked, k = fit_tokens(hard, tokens, 20_000, seed=0)
    assert set(hard(k)) <= set(picked)
    assert 0.95 * 20_000 <= tokens[picked].sum() <= 20_000
    assert len(picked) - k <= 10  # observed 0: hard's top k alone lands in the band


def test_a_small_pool_is_kept_whole_and_bad_limits_are_user_errors():
    tokens = np.array([5, 6, 7])
    picked, k = fit_tokens(random_pick(3), tokens, 100, seed=0)
    assert picked.tolist() == [0, 1, 2] and k == 3
    picked, _ = fit_tokens(random_pick(3), tokens, 4, seed=0)
    assert picked.tolist() == []
    with pytest.raises(ThresherError, match="at least 1"):
        fit_tokens(random_pick(3), tokens, 0, seed=0)


def test_same_seed_same_pick():
    tokens = np.random.default_rng(3).integers(1, 50, 500)
    a, _ = fit_tokens(random_pick(500, 1), tokens, 3_000, seed=1)
    b, _ = fit_tokens(random_pick(500, 1), tokens, 3_000, seed=1)
    assert a.tolist() == b.tolist()
