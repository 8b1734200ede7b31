"""Batch active learning by importance sampling: IWeS (Citovsky et al. ICLR 2023).

Each round trains the proxy model(s) on the labelled set with its importance
weights, gives every pool item a sampling score, and samples the round's
batch:

- ``iwes``: one model's normalized prediction entropy;
- ``iwes-dis``: |H1 - H2| of two models trained with different seeds
  (their disagreement);
- baselines ``entropy`` and ``margin`` (top-k most uncertain, weight 1) and
  ``random`` (uniform, weight 1).

Sampling (IWeS variants): scores p are scaled to inclusion probabilities
q = clip(s p, floor, 1) with s chosen so that sum(q) equals the batch size;
the floor is min(Q_MIN, batch / (2 n)), so that the floor alone never takes
more than half of the batch. Each item is drawn independently with
probability q (Poisson sampling) and gets weight min(1/q, W_MAX = 20): the
documented cap. Horvitz-Thompson: without the cap, sum(w f) over the drawn
items is an unbiased estimate of sum(f) over the pool, so the weighted loss
is unbiased; the cap trades a little bias for bounded variance when the
floor is low. The realized batch size varies around its target; the budget
is a hard limit.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from thresher.scoring.uncertainty import entropy_margin, predict_proba, train_probe
from thresher.storage.errors import ThresherError

Strategy = Literal["iwes", "iwes-dis", "entropy", "margin", "random"]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)
Q_MIN = 0.05
W_MAX = 20.0


def inclusion_probabilities(scores: np.ndarray, batch: int) -> np.ndarray:
    """q in [floor, 1] proportional to scores (see the module docstring), summing to ~batch."""
    p = np.maximum(np.asarray(scores, np.float64), 1e-12)
    if batch >= len(p):
        return np.ones(len(p))
    floor = min(Q_MIN, batch / (2 * len(p)))
    lo, hi = 0.0, batch / p.min() + 1.0
    for _ in range(100):  # bisection on the scale s: sum(clip(s p)) is monotone in s
        mid = (lo + hi) / 2
        if np.clip(mid * p, floor, 1.0).sum() > batch:
            hi = mid
        else:
            lo = mid
    return np.clip(lo * p, floor, 1.0)


def poisson_sample(q: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions drawn independently with probability q, and their weights min(1/q, W_MAX)."""
    drawn = np.flatnonzero(rng.random(len(q)) < q)
    return drawn, np.minimum(1.0 / q[drawn], W_MAX)


@dataclass
class ActiveResult:
    selected: np.ndarray  # positions in the pool, in the order they were labelled
    weights: np.ndarray
    curve: list[tuple[int, float]] = field(default_factory=list)  # (labels used, accuracy)


def active_learn(
    vectors: np.ndarray,
    oracle: Callable[[np.ndarray], np.ndarray],
    classes: int,
    budget: int,
    rounds: int,
    strategy: str,
    seed: int = 0,
    evaluate: Callable[[object], float] | None = None,
) -> ActiveResult:
    """Run `rounds` rounds until `budget` labels; `oracle(positions)` returns their labels."""
    if strategy not in STRATEGIES:
        raise ThresherError(f"strategy {strategy!r}: allowed {', '.join(STRATEGIES)}")
    if not 1 <= rounds <= budget <= len(vectors):
        raise ThresherError(
            f"need 1 <= rounds ({rounds}) <= budget ({budget}) <= pool ({len(vectors)})"
        )
    rng = np.random.default_rng(seed)
    batch = max(1, budget // (rounds + 1))
    selected = list(rng.choice(len(vectors), batch, replace=False))  # seed batch: uniform
    weights = [1.0] * batch
    labels = list(oracle(np.asarray(selected)))
    result = ActiveResult(np.zeros(0, np.int64), np.zeros(0))
    for r in range(rounds + 1):  # train and evaluate after every batch, the last included
        model = train_probe(
            vectors[selected],
            np.asarray(labels),
            classes,
            weights=np.asarray(weights, np.float32),
            seed=seed,
        )
        if evaluate:
            result.curve.append((len(selected), evaluate(model)))
        room = budget - len(selected)
        if r == rounds or room <= 0:
            break
        pool = np.setdiff1d(np.arange(len(vectors)), selected)
        take = min(room, batch if r < rounds - 1 else room)
        new, w = pick_batch(
            strategy,
            model,
            vectors,
            pool,
            np.asarray(selected),
            labels,
            classes,
            weights,
            take,
            rng,
            seed,
        )
        selected.extend(new.tolist())
        weights.extend(w.tolist())
        labels.extend(oracle(new).tolist())
    result.selected, result.weights = np.asarray(selected), np.asarray(weights)
    return result


def pick_batch(strategy, model, vectors, pool, selected, labels, classes, weights, take, rng, seed):
    """The next `take` pool positions for `strategy` and their weights (see the module)."""
    if strategy == "random":
        return rng.choice(pool, take, replace=False), np.ones(take)
    ent, mar = entropy_margin(predict_proba(model, vectors[pool]))
    if strategy == "entropy":
        return pool[np.argsort(-ent, kind="stable")[:take]], np.ones(take)
    if strategy == "margin":
        return pool[np.argsort(mar, kind="stable")[:take]], np.ones(take)
    if strategy == "iwes-dis":
        other = train_probe(
            vectors[selected],
            np.asarray(labels),
            classes,
            weights=np.asarray(weights, np.float32),
            seed=seed + 1000,
            lr=0.02,
        )
        ent = np.abs(ent - entropy_margin(predict_proba(other, vectors[pool]))[0])
    drawn, w = poisson_sample(inclusion_probabilities(ent, take), rng)
    if len(drawn) > take:  # the budget is a hard limit: keep a uniform subset
        keep = np.sort(rng.choice(len(drawn), take, replace=False))
        drawn, w = drawn[keep], w[keep]
    return pool[drawn], w
