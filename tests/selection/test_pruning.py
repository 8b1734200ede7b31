from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thresher.selection.pruning import ccs, kcenter, quotas, select

from tests.helpers import clustered


@given(st.lists(st.integers(0, 50), min_size=1, max_size=8), st.integers(0, 200))
def test_quotas_are_exact_capped_and_cover_groups(sizes, budget) -> None:
    q = quotas(np.array(sizes), budget)
    assert q.sum() == min(budget, sum(sizes))
    assert (q <= np.array(sizes)).all()
    if budget >= len(sizes):
        assert all(qq >= 1 for qq, s in zip(q, sizes, strict=True) if s > 0)


@settings(deadline=None, max_examples=30)
@given(
    policy=st.sampled_from(["auto", "hard", "easy", "random", "ccs", "kcenter"]),
    keep=st.floats(0.01, 1.0),
    balanced=st.booleans(),
    seed=st.integers(0, 5),
)
def test_budgets_are_exact_and_seeded(policy, keep, balanced, seed) -> None:
    x = clustered(300, 8, seed=1)
    scores = 1 - x @ x[:5].mean(axis=0)
    groups = np.arange(300) % 7 if balanced else None
    budget = round(keep * 300)
    a = select(300, budget, policy, scores=scores, vectors=x, groups=groups, seed=seed)
    b = select(300, budget, policy, scores=scores, vectors=x, groups=groups, seed=seed)
    assert len(a) == budget == len(np.unique(a)) and np.array_equal(a, b)


def test_hard_and_easy_take_the_ends() -> None:
    scores = np.array([0.5, 0.1, 0.9, 0.3])
    assert select(4, 2, "hard", scores=scores).tolist() == [0, 2]
    assert select(4, 2, "easy", scores=scores).tolist() == [1, 3]


def test_balance_keeps_every_cluster() -> None:
    scores = np.r_[np.zeros(90), np.ones(10)]  # cluster 1 is all "hard"
    groups = np.r_[np.zeros(90, int), np.ones(10, int)]
    picked = select(100, 10, "easy", scores=scores, groups=groups)
    assert set(groups[picked]) == {0, 1}


def test_ccs_drops_the_hardest_tail_and_covers_the_range() -> None:
    scores = np.linspace(0, 1, 1000)
    picked = ccs(scores, 100, np.random.default_rng(0), bins=10, tail=0.1)
    assert len(picked) == 100 and scores[picked].max() < 0.9  # the top 10% are gone
    assert len(np.unique(np.floor(scores[picked] * 10))) == 9  # every remaining stratum


def test_kcenter_spreads_out() -> None:
    x = clustered(500, 8, seed=2, centres=5)
    labels = np.argmax(x @ x[np.array([0, 100, 200, 300, 400])].T, axis=1)
    chosen = kcenter(x, 20, np.random.default_rng(0))
    assert len(set(labels[chosen])) >= 4


def test_score_policies_need_scores() -> None:
    with pytest.raises(ValueError, match="needs prototype_distance"):
        select(10, 3, "hard")
    with pytest.raises(ValueError, match="allowed"):
        select(10, 3, "best")


def test_auto_follows_the_measured_data_regimes() -> None:
    from thresher.selection.pruning import auto_policy

    groups = np.repeat(np.arange(10), 100)  # 10 clusters of 100
    assert auto_policy(1000, 29, groups) == "easy"  # < 3 kept per cluster: scarce
    assert auto_policy(1000, 30, groups) == "random"
    assert auto_policy(1000, 699, groups) == "random"
    assert auto_policy(1000, 700, groups) == "hard"  # keep >= 70%: abundant
    assert auto_policy(1000, 2, None) == "easy"
    rng = np.random.default_rng(0)
    scores = rng.random(1000)
    for budget in (20, 300, 800):
        resolved = auto_policy(1000, budget, groups)
        assert np.array_equal(
            select(1000, budget, "auto", scores=scores, groups=groups, seed=1),
            select(1000, budget, resolved, scores=scores, groups=groups, seed=1),
        )


def test_auto_balance_stratifies_random_picks_by_label_and_hard_ones_by_cluster() -> None:
    from thresher.selection.pruning import auto_balance

    assert auto_balance("auto", 0.3, False, labelled=True) == "label"
    assert auto_balance("auto", 0.7, False, labelled=True) == "cluster"  # hard runs there
    assert auto_balance("auto", 0.9, True, labelled=True) == "label"  # a token budget
    assert auto_balance("random", 0.9, False, labelled=True) == "label"
    assert auto_balance("hard", 0.3, False, labelled=True) == "cluster"
    assert auto_balance("auto", 0.3, False, labelled=False) == "cluster"
