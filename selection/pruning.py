"""Pruning policies: which `budget` of n candidates to keep.

- ``hard`` keeps the largest scores (farthest from their prototype), ``easy``
  the smallest (Sorscher et al. 2022: hard when data is abundant, easy when
  it is scarce); ``random`` is the baseline every policy is judged against;
  ``auto`` picks one of the three by data regime (`auto_policy`).
- ``ccs``: coverage-centric selection (Zheng et al. ICLR 2023): drop the
  hardest `tail` fraction first (likely noise), cut the remaining score range
  into `bins` equal-width strata, and fill the budget from the smallest
  stratum up, each taking an equal share of what is left, sampled at random
  inside the stratum. Keeps easy, medium and hard examples at high prune rates.
- ``kcenter``: greedy k-center on the vectors (each step adds the candidate
  farthest from everything chosen): diversity.
- Balance (`groups`): the budget is split over groups (clusters or labels) in
  proportion to their size (largest remainder, every group at least one
  item when the budget allows), and the policy runs inside each group, so no
  cluster or class vanishes.

All are deterministic for a seed. Positions are returned sorted.
"""

from __future__ import annotations

import typing
from typing import Literal

import numpy as np

from thresher.storage.errors import ThresherError

Policy = Literal["hard", "easy", "random", "ccs", "kcenter"]
PolicyChoice = Literal["auto", "hard", "easy", "random", "ccs", "kcenter"]
POLICIES: tuple[str, ...] = typing.get_args(PolicyChoice)
# how a budget is split: over clusters, over labels, or not at all; auto: see auto_balance
Balance = Literal["auto", "cluster", "label", "none"]
BALANCE: tuple[str, ...] = typing.get_args(Balance)
# `auto` follows Sorscher et al.'s data regimes, with thresholds measured by
# `python benchmarks/selection.py --regime` (digits and 10k labelled PyPI summaries,
# pool sizes 1/8 to all of the pool x keep 10-70%, 5 seeds; table in the README):
# - scarce: fewer than SCARCE_PER_GROUP kept items per cluster (or class) -> easy.
#   Easy beat random only at 2 per cluster (+0.10); at 3 and more it lost in every cell.
# - abundant: keeping at least ABUNDANT_KEEP of the candidates -> hard (prune the
#   easiest). Hard >= random at keep 70% for all 8 pool sizes of both datasets; at
#   50% it lost on the summaries at every pool size (up to 500 kept per cluster), so
#   the regime is set by the kept fraction, not by kept items per cluster.
# - in between -> random, which no score-based policy beat there.
SCARCE_PER_GROUP = 3
ABUNDANT_KEEP = 0.7


def auto_policy(n: int, budget: int, groups: np.ndarray | None = None) -> str:
    """The policy `auto` runs for keeping `budget` of `n` candidates (see above)."""
    k = len(np.unique(groups)) if groups is not None and len(groups) else 1
    if budget < SCARCE_PER_GROUP * k:
        return "easy"
    if budget >= round(ABUNDANT_KEEP * n):  # the rounding callers use for keep * n
        return "hard"
    return "random"


def auto_balance(policy: str, keep: float, by_tokens: bool, labelled: bool) -> str:
    """What `--balance auto` splits the budget over: labels for a random pick when the
    items have labels (auto below ABUNDANT_KEEP, random, or a token budget), else
    clusters. Measured by `benchmarks/selection.py --variants` (5 seeds; tuned on digits
    and half of the PyPI families, README "Selection variants"): a random pick
    stratified by label beat one stratified by cluster at keep 10% (+2.96 vs +2.67 pt
    over random on digits, +0.87 vs +0.36 on the tuning half) and tied from 30% up,
    while `hard` at keep 70% did better balanced by cluster (+1.00 vs +0.63 on digits,
    +0.05 vs -0.16)."""
    random_pick = policy == "random" or (policy == "auto" and (by_tokens or keep < ABUNDANT_KEEP))
    return "label" if labelled and random_pick else "cluster"


def quotas(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Split `budget` over groups of `sizes` in proportion (largest remainder), capped by size."""
    sizes = np.asarray(sizes, dtype=np.int64)
    budget = min(budget, int(sizes.sum()))
    base = np.zeros(len(sizes), np.int64)
    if budget >= len(sizes):
        base = np.minimum(1, sizes)  # every group is represented
    rest = budget - int(base.sum())
    while rest > 0:
        room = sizes - base
        share = room / max(room.sum(), 1) * rest
        add = np.minimum(np.floor(share).astype(np.int64), room)
        if add.sum() == 0:  # hand out the remainders, largest fraction first
            order = np.argsort(-(share - np.floor(share)), kind="stable")
            add = np.zeros_like(base)
            for g in order[:rest]:
                if room[g] > 0:
                    add[g] = 1
        base += add
        rest = budget - int(base.sum())
    return base


def select_one(
    n: int,
    budget: int,
    policy: str,
    rng: np.random.Generator,
    scores: np.ndarray | None = None,
    vectors: np.ndarray | None = None,
    bins: int = 50,
    tail: float = 0.1,
) -> np.ndarray:
    """Positions (0..n-1) kept by `policy` among the n candidates of one group."""
    budget = min(budget, n)
    if budget <= 0:
        return np.zeros(0, np.int64)
    if policy == "random":
        return np.sort(rng.choice(n, budget, replace=False))
    if policy == "kcenter":
        if vectors is None:
            raise ThresherError("kcenter needs embeddings")
        return np.sort(kcenter(vectors, budget, rng))
    if scores is None:
        raise ThresherError(f"policy {policy!r} needs prototype_distance scores (thresher score)")
    if policy == "hard":
        return np.sort(np.argsort(-scores, kind="stable")[:budget])
    if policy == "easy":
        return np.sort(np.argsort(scores, kind="stable")[:budget])
    if policy == "ccs":
        return np.sort(ccs(scores, budget, rng, bins, tail))
    raise ThresherError(f"policy {policy!r}: allowed {', '.join(POLICIES)}")


def ccs(
    scores: np.ndarray, budget: int, rng: np.random.Generator, bins: int = 50, tail: float = 0.1
) -> np.ndarray:
    """Coverage-centric selection (see the module docstring)."""
    order = np.argsort(-scores, kind="stable")
    drop = min(int(len(scores) * tail), len(scores) - budget)
    pool = order[drop:]
    s = scores[pool]
    edges = np.linspace(s.min(), s.max(), bins + 1)
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    strata = [pool[which == b] for b in range(bins)]
    strata = [st for st in strata if len(st)]
    chosen = []
    left = budget
    for i, st in enumerate(sorted(strata, key=len)):
        take = min(len(st), left // (len(strata) - i))
        chosen.append(rng.choice(st, take, replace=False))
        left -= take
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


def kcenter(vectors: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-center (farthest-point) selection over unit vectors, cosine distance."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    first = int(rng.integers(len(x)))
    chosen = [first]
    dist = 1.0 - x @ x[first]
    for _ in range(budget - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, 1.0 - x @ x[nxt])
    return np.asarray(chosen, dtype=np.int64)


def select(
    n: int,
    budget: int,
    policy: str,
    *,
    scores: np.ndarray | None = None,
    vectors: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    seed: int = 0,
    bins: int = 50,
    tail: float = 0.1,
) -> np.ndarray:
    """Positions of the `budget` of n candidates kept, balanced over `groups` when given;
    `bins` and `tail`: ccs's strata and dropped hardest fraction."""
    if policy not in POLICIES:
        raise ThresherError(f"policy {policy!r}: allowed {', '.join(POLICIES)}")
    if policy == "auto":
        policy = auto_policy(n, budget, groups)
    rng = np.random.default_rng(seed)
    if groups is None:
        return select_one(n, budget, policy, rng, scores, vectors, bins, tail)
    labels, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(labels))]
    out = []
    for idx, q in zip(members, quotas(np.array([len(m) for m in members]), budget), strict=True):
        sub = select_one(
            len(idx),
            int(q),
            policy,
            rng,
            None if scores is None else scores[idx],
            None if vectors is None else vectors[idx],
            bins,
            tail,
        )
        out.append(idx[sub])
    result = np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)
    assert len(result) == min(budget, n), (len(result), budget, n)
    return result
