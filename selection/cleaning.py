"""Leaving likely-mislabelled items out before a selection policy runs.

Confident learning (Northcutt et al. 2021) ranks labelled items by
`label_issue` = 1 - out-of-fold p(given label) (`scoring.confident`);
`drop_worst` removes the worst fraction of them, so the policy draws from
cleaner labels. Items without a score (unlabelled) are never dropped.
"""

from __future__ import annotations

import numpy as np

from thresher.storage.errors import ThresherError


def drop_worst(label_issue: np.ndarray, fraction: float) -> np.ndarray:
    """(n,) bool, True where an item stays: all but the round(fraction * scored) scored
    items with the largest `label_issue` (NaN = unscored, always stays); ties broken by
    position, so the result is deterministic."""
    if not 0 <= fraction < 1:
        raise ThresherError(f"--drop-label-issues must be in [0, 1), got {fraction}")
    values = np.asarray(label_issue, np.float64)
    scored = np.flatnonzero(~np.isnan(values))
    keep = np.ones(len(values), bool)
    n = round(fraction * len(scored))
    if n:
        worst = scored[np.argsort(-values[scored], kind="stable")[:n]]
        keep[worst] = False
    return keep
