"""Dropping the worst-labelled fraction: exact counts, unscored items kept, ties stable."""

import numpy as np
import pytest

from thresher.selection.cleaning import drop_worst
from thresher.storage.errors import ThresherError


def test_drops_the_largest_scores_of_the_scored_items_only():
    values = np.array([0.1, np.nan, 0.9, 0.5, np.nan, 0.8, 0.2, 0.3, 0.0, 0.7, 0.4, 0.6])
    keep = drop_worst(values, 0.2)  # 10 scored -> 2 dropped
    assert np.flatnonzero(~keep).tolist() == [2, 5]
    assert keep[[1, 4]].all()
    assert drop_worst(values, 0.0).all()


def test_ties_break_by_position_and_bad_fractions_are_user_errors():
    assert np.flatnonzero(~drop_worst(np.array([1.0, 1.0, 1.0, 0.0]), 0.5)).tolist() == [0, 1]
    for bad in (-0.1, 1.0):
        with pytest.raises(ThresherError, match=r"--drop-label-issues must be in \[0, 1\)"):
            drop_worst(np.zeros(3), bad)
