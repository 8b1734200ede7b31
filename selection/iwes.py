"""Batch active learning by importance sampling: IWeS (Citovsky et al. ICLR 2023).

Each round trains the proxy (a linear probe) on the labelled set with its
importance weights, gives every pool item a sampling score, turns the scores
into inclusion probabilities q and draws the round's batch; each drawn item
gets weight min(1/q, cap), so the weighted loss estimates the pool's loss.

Strategies (`IwesDesign` holds each one's settings):

- ``iwes`` (the default): score (1 - margin)^4 of the probe;
- ``iwes-entropy``: the paper's entropy score (normalized prediction entropy);
- ``iwes-dis``: the disagreement of a bootstrap ensemble (4 probes, each on a
  weighted resample of the labelled set): the mean total-variation distance
  of the members' predictions to the ensemble's mean (as the selection-quality issue asks);
- baselines ``margin`` and ``entropy`` (top-k most uncertain, weight 1) and
  ``random`` (uniform, weight 1).

Sampling: q = clip(s p, floor, 1) with s chosen so that sum(q) is the batch;
the floor is min(0.05, 0.1 batch / n), so that at most a tenth of the batch
goes to the floor (every item keeps a positive probability: unbiasedness).
Each item is drawn independently with probability q (Poisson sampling; the
budget is a hard limit: a draw over the batch keeps a uniform subset) and
gets weight min(1/q, 5). Horvitz-Thompson: without the cap, sum(w f) over
the drawn items is an unbiased estimate of sum(f) over the pool (tested);
the cap trades a little bias for bounded variance. The proxy is trained to
its optimum (L-BFGS; `IwesDesign.solver`).

`IwesDesign(diverse=True)` draws instead by systematic sampling along the
pool ordered by k-means cluster (k about the batch size, random order within
a cluster): each item is still drawn with probability exactly q, and each
cluster gets floor or ceil of its share of q (the diversity step of
Cluster-Margin, Citovsky et al. 2021, with the 1/q weights kept).

Measured (`benchmarks/selection.py --learn-only` / `--learn-variants`, 5
seeds, README "Active learning benchmark"; the design chosen on digits and
the tuning half of the PyPI families): `iwes` is +0.9 to +2.6 pt over random
after every round on digits, +1.9 to +3.8 on the tuning half and +1.8 to
+4.0 on the held-out half, and reaches random's final accuracy with 67%,
50% and 50% of the labels. Against margin: +0.2 to +1.2 on the tuning half,
-0.9 to +0.1 on digits, -0.5 to +0.1 on the held-out half (within one
per-seed std). The first version (entropy, floor up to half the batch, cap
20, 200 Adam steps) lost to margin by 2.2 to 4.4 pt on digits; the diversity
step measured no better than independent draws.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from thresher.scoring.uncertainty import entropy_margin, predict_proba, train_probe
from thresher.storage.errors import ThresherError

Strategy = Literal["iwes", "iwes-entropy", "iwes-dis", "entropy", "margin", "random"]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)
Q_MIN = 0.05
FAISS_MIN_POINTS = 40  # per centroid: FAISS warns (to stderr) below 39


@dataclass(frozen=True)
class IwesDesign:
    """How an IWeS strategy scores and samples (defaults: the measured winners)."""

    score: Literal["margin", "entropy", "disagreement"] = "margin"
    sharpness: float = 4.0  # scores are raised to this power
    floor_share: float = 0.1  # at most this share of the batch goes to the floor
    w_max: float = 5.0  # the weight cap
    diverse: bool = False  # True: systematic sampling by cluster; False: independent draws
    ensemble: int = 4  # probes in the bootstrap ensemble (score "disagreement")
    solver: Literal["adam", "lbfgs"] = "lbfgs"  # the proxy, trained to its optimum


DESIGNS = {
    "iwes": IwesDesign(),  # the default of `learn`
    "iwes-entropy": IwesDesign(score="entropy", sharpness=1.0),
    "iwes-dis": IwesDesign(score="disagreement", sharpness=1.0),
}
W_MAX = max(d.w_max for d in DESIGNS.values())


def inclusion_probabilities(scores: np.ndarray, batch: int, floor_share: float = 0.1) -> np.ndarray:
    """q in [floor, 1] proportional to scores (see the module docstring), summing to ~batch."""
    p = np.maximum(np.asarray(scores, np.float64), 1e-12)
    if batch >= len(p):
        return np.ones(len(p))
    floor = min(Q_MIN, floor_share * batch / len(p))
    lo, hi = 0.0, batch / p.min() + 1.0
    for _ in range(100):  # bisection on the scale s: sum(clip(s p)) is monotone in s
        mid = (lo + hi) / 2
        if np.clip(mid * p, floor, 1.0).sum() > batch:
            hi = mid
        else:
            lo = mid
    return np.clip(lo * p, floor, 1.0)


def poisson_sample(q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions drawn independently, each with probability q."""
    return np.flatnonzero(rng.random(len(q)) < q)


def systematic_sample(q: np.ndarray, order: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions drawn by systematic sampling along `order`: one random start u in
    [0, 1), then the items whose stretch of the cumulative q holds u, u + 1, u + 2, ...
    Each item is drawn with probability exactly q (all q <= 1), at most once, and a run of
    `order` with total q = m gets floor(m) or ceil(m) of the draws."""
    if not len(order):
        return np.zeros(0, np.int64)
    cum = np.cumsum(q[order])
    points = rng.random() + np.arange(int(np.ceil(cum[-1])))
    return np.sort(order[np.searchsorted(cum, points[points < cum[-1]], side="right")])


def diversity_clusters(
    strategy: str, vectors: np.ndarray, batch: int, seed: int, design: IwesDesign | None = None
) -> np.ndarray | None:
    """Each vector's k-means cluster (k = the batch size, at most n / 40) where the
    strategy's design samples by cluster; else None."""
    from thresher.scoring.prototypes import prototype_scores, spherical_kmeans

    design = design or DESIGNS.get(strategy)
    if design is None or not design.diverse:
        return None
    k = max(1, min(batch, len(vectors) // FAISS_MIN_POINTS))
    if k == 1:
        return np.zeros(len(vectors), np.int64)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return prototype_scores(x, spherical_kmeans(x, k, seed=seed))[0].astype(np.int64)


@dataclass
class Labelled:
    """The labelled set so far: pool positions, class indices and importance weights."""

    positions: list[int]
    labels: list[int]
    weights: list[float]
    classes: int
    solver: Literal["adam", "lbfgs"] = "lbfgs"

    def train(self, vectors: np.ndarray, seed: int, rows: np.ndarray | None = None) -> Any:
        """The probe on these items (or on `rows` of them, a resample), with their weights."""
        rows = np.arange(len(self.positions)) if rows is None else rows
        return train_probe(
            vectors[np.asarray(self.positions)[rows]],
            np.asarray(self.labels)[rows],
            self.classes,
            weights=np.asarray(self.weights, np.float32)[rows],
            seed=seed,
            solver=self.solver,
        )


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
    design: IwesDesign | None = None,
) -> ActiveResult:
    """Run `rounds` rounds until `budget` labels; `oracle(positions)` returns their labels.
    `design` replaces an IWeS strategy's settings (the benchmark's variants)."""
    if strategy not in STRATEGIES:
        raise ThresherError(f"strategy {strategy!r}: allowed {', '.join(STRATEGIES)}")
    if not 1 <= rounds <= budget <= len(vectors):
        raise ThresherError(
            f"need 1 <= rounds ({rounds}) <= budget ({budget}) <= pool ({len(vectors)})"
        )
    rng = np.random.default_rng(seed)
    batch = max(1, budget // (rounds + 1))
    first = rng.choice(len(vectors), batch, replace=False)  # seed batch: uniform
    solver = design.solver if design else IwesDesign().solver  # baselines: the same probe
    done = Labelled(first.tolist(), oracle(first).tolist(), [1.0] * batch, classes, solver)
    clusters = diversity_clusters(strategy, vectors, batch, seed, design)
    result = ActiveResult(np.zeros(0, np.int64), np.zeros(0))
    for r in range(rounds + 1):  # train and evaluate after every batch, the last included
        model = done.train(vectors, seed)
        if evaluate:
            result.curve.append((len(done.positions), evaluate(model)))
        room = budget - len(done.positions)
        if r == rounds or room <= 0:
            break
        pool = np.setdiff1d(np.arange(len(vectors)), done.positions)
        take = min(room, batch if r < rounds - 1 else room)
        new, w = pick_batch(
            strategy, model, vectors, pool, done, take, rng, seed + r, clusters, design
        )
        done.positions.extend(new.tolist())
        done.weights.extend(w.tolist())
        done.labels.extend(oracle(new).tolist())
    result.selected, result.weights = np.asarray(done.positions), np.asarray(done.weights)
    return result


def pick_batch(
    strategy: str,
    model: object,
    vectors: np.ndarray,
    pool: np.ndarray,
    done: Labelled,
    take: int,
    rng: np.random.Generator,
    seed: int,
    clusters: np.ndarray | None = None,
    design: IwesDesign | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The next `take` pool positions for `strategy` and their weights (see the module);
    `clusters` (a cluster per vector) for the IWeS strategies' diversity step."""
    if strategy == "random":
        return rng.choice(pool, take, replace=False), np.ones(take)
    probs = predict_proba(model, vectors[pool])
    ent, mar = entropy_margin(probs)
    if strategy == "entropy":
        return pool[np.argsort(-ent, kind="stable")[:take]], np.ones(take)
    if strategy == "margin":
        return pool[np.argsort(mar, kind="stable")[:take]], np.ones(take)
    design = design or DESIGNS[strategy]
    if design.score == "margin":
        scores = 1.0 - mar
    elif design.score == "entropy":
        scores = ent
    else:
        scores = _disagreement(probs, vectors, pool, done, design.ensemble, seed)
    q = inclusion_probabilities(
        np.asarray(scores, np.float64) ** design.sharpness, take, design.floor_share
    )
    if design.diverse and clusters is not None:
        order = np.lexsort((rng.random(len(pool)), clusters[pool]))
        drawn = systematic_sample(q, order, rng)
    else:
        drawn = poisson_sample(q, rng)
        if len(drawn) > take:  # the budget is a hard limit: keep a uniform subset
            drawn = np.sort(rng.choice(drawn, take, replace=False))
    return pool[drawn], np.minimum(1.0 / q[drawn], design.w_max)


def _disagreement(
    probs: np.ndarray,
    vectors: np.ndarray,
    pool: np.ndarray,
    done: Labelled,
    members: int,
    seed: int,
) -> np.ndarray:
    """Mean total-variation distance of a bootstrap ensemble's predictions (the fitted
    probe and `members - 1` probes on weighted resamples) to the ensemble's mean."""
    rng = np.random.default_rng([seed, 7])
    n = len(done.positions)
    stack = [probs]
    for m in range(members - 1):
        model = done.train(vectors, seed + 100 + m, rng.choice(n, n, replace=True))
        stack.append(predict_proba(model, vectors[pool]))
    p = np.stack(stack)
    return 0.5 * np.abs(p - p.mean(axis=0)).sum(axis=-1).mean(axis=0) + 1e-3
