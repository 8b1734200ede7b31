"""Selections sized in tokens: the policy's pick whose token total is at most a limit.

A training budget is a token count (e.g. 20 tokens per parameter, Hoffmann et
al. 2022), not an item count. `fit_tokens` finds the largest item budget k
whose pick `choose(k)` holds at most `limit` tokens (binary search: the total
grows with k for every policy, though not strictly for those that are not
nested, so the search is over totals, not over a prefix), then fills the rest
with candidates the pick left out, in a seeded random order, each added only
if it still fits, until the total reaches `FILL` of the limit. The pick stays
the policy's; the fill only closes the gap the last item left.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from thresher.storage.errors import ThresherError

FILL = 0.95  # a selection holds at least this fraction of the limit (when the pool does)


def fit_tokens(
    choose: Callable[[int], np.ndarray], tokens: np.ndarray, limit: int, seed: int
) -> tuple[np.ndarray, int]:
    """(sorted positions of a pick holding between FILL * limit and limit tokens, the item
    budget k the policy ran with before the fill).

    choose(k): positions of the policy's k items; tokens: (n,) counts per candidate.
    With at most `limit` tokens in the pool, every candidate."""
    if limit < 1:
        raise ThresherError(f"--keep-tokens must be at least 1, got {limit}")
    n = len(tokens)
    tokens = np.asarray(tokens, np.int64)
    if tokens.sum() <= limit:
        return np.arange(n), n
    lo, hi = 0, n  # total(choose(lo)) <= limit < total(choose(hi))
    best = np.zeros(0, np.int64)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        picked = np.asarray(choose(mid), np.int64)
        if tokens[picked].sum() <= limit:
            lo, best = mid, picked
        else:
            hi = mid
    return np.sort(_fill(best, tokens, limit, seed)), lo


def _fill(picked: np.ndarray, tokens: np.ndarray, limit: int, seed: int) -> np.ndarray:
    total = int(tokens[picked].sum())
    if total >= FILL * limit:
        return picked
    left = np.setdiff1d(np.arange(len(tokens)), picked)
    extra = []
    for i in np.random.default_rng(seed).permutation(left):
        if total + tokens[i] <= limit:
            extra.append(i)
            total += int(tokens[i])
            if total >= FILL * limit:
                break
    return np.concatenate([picked, np.asarray(extra, np.int64)])
