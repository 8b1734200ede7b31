"""Selection variants against random, for `benchmarks/selection.py --variants`.

Each variant picks `keep` of a pool (70% of a dataset, per seed) and a fixed
classifier (LogisticRegression) trained on the picked items is scored on the
other 30%. Signals, all computed on the pool only: out-of-fold label issues
(`scoring.confident`, the pool's labels), kNN density (1 - cosine to the 10th
nearest pool item), prototype distance (k-means, k = classes).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from thresher.scoring.confident import fit_out_of_fold, label_issue
from thresher.scoring.prototypes import prototype_scores, spherical_kmeans
from thresher.selection.cleaning import drop_worst
from thresher.selection.pruning import auto_balance, select

KEEP = (0.1, 0.3, 0.5, 0.7)


def knn_distance(x: np.ndarray, k: int = 10, block: int = 2048) -> np.ndarray:
    """(n,) 1 - cosine to the k-th nearest other row of unit vectors x (exact, blocked)."""
    out = np.empty(len(x), np.float32)
    for start in range(0, len(x), block):
        sims = x[start : start + block] @ x.T
        np.fill_diagonal(sims[:, start : start + block], -np.inf)
        out[start : start + block] = 1 - np.partition(sims, -k, axis=1)[:, -k]
    return out


class Signals:
    """What a pool's variants read: labels, label issues, density, prototypes."""

    def __init__(self, x: np.ndarray, y: np.ndarray, seed: int) -> None:
        self.x, self.y, self.seed = x, y, seed
        classes = int(y.max()) + 1
        self.issue = label_issue(fit_out_of_fold(x, y, classes, seed=seed)[0], y)
        self.density = knn_distance(x)
        cluster, distance, _ = prototype_scores(x, spherical_kmeans(x, classes, seed=seed))
        self.cluster, self.distance = cluster, distance


def _random_from(stays: np.ndarray, budget: int, seed: int) -> np.ndarray:
    pos = np.flatnonzero(stays)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pos, min(budget, len(pos)), replace=False))


def drop_then_random(fraction: float) -> Callable[[Signals, int], np.ndarray]:
    def pick(s: Signals, budget: int) -> np.ndarray:
        return _random_from(drop_worst(s.issue, fraction), budget, s.seed)

    return pick


def dense_then_random(fraction: float) -> Callable[[Signals, int], np.ndarray]:
    """SemDeDup-style: leave out the `fraction` with the nearest neighbours, then random."""

    def pick(s: Signals, budget: int) -> np.ndarray:
        n = len(s.density)
        stays = np.ones(n, bool)
        stays[np.argsort(s.density, kind="stable")[: round(fraction * n)]] = False
        return _random_from(stays, budget, s.seed)

    return pick


def clean_dense_random(issues: float, dense: float) -> Callable[[Signals, int], np.ndarray]:
    def pick(s: Signals, budget: int) -> np.ndarray:
        stays = drop_worst(s.issue, issues)
        order = np.argsort(np.where(stays, s.density, np.inf), kind="stable")
        stays[order[: round(dense * len(stays))]] = False
        return _random_from(stays, budget, s.seed)

    return pick


def policy(name: str, balance: str) -> Callable[[Signals, int], np.ndarray]:
    def pick(s: Signals, budget: int) -> np.ndarray:
        groups = {"cluster": s.cluster, "label": s.y, "none": None}[balance]
        return select(len(s.y), budget, name, scores=s.distance, groups=groups, seed=s.seed)

    return pick


def fine_clusters(k: int) -> Callable[[Signals, int], np.ndarray]:
    """Random, stratified over k fine k-means clusters (proportional quotas): coverage
    of every neighbourhood without dropping any."""

    def pick(s: Signals, budget: int) -> np.ndarray:
        cluster, _, _ = prototype_scores(s.x, spherical_kmeans(s.x, k, seed=s.seed))
        return select(len(s.y), budget, "random", groups=cluster, seed=s.seed)

    return pick


def label_fine_clusters(k: int) -> Callable[[Signals, int], np.ndarray]:
    """Random, stratified over (label, fine cluster) cells of k k-means clusters
    (proportional quotas): each class's share, spread over its neighbourhoods."""

    def pick(s: Signals, budget: int) -> np.ndarray:
        cluster, _, _ = prototype_scores(s.x, spherical_kmeans(s.x, k, seed=s.seed))
        cells = s.y.astype(np.int64) * k + cluster
        return select(len(s.y), budget, "random", groups=cells, seed=s.seed)

    return pick


def class_hard(s: Signals, budget: int) -> np.ndarray:
    """Class-conditional prototypes: k-means inside each label, hard within the class."""
    distance = np.empty(len(s.y), np.float32)
    for c in np.unique(s.y):
        idx = np.flatnonzero(s.y == c)
        k = max(1, min(4, len(idx) // 50))
        _, d, _ = prototype_scores(s.x[idx], spherical_kmeans(s.x[idx], k, seed=s.seed))
        distance[idx] = d
    return select(len(s.y), budget, "hard", scores=distance, groups=s.y, seed=s.seed)


def ccs_strata(bins: int, tail: float) -> Callable[[Signals, int], np.ndarray]:
    """CCS, label-balanced, with `bins` strata after dropping the hardest `tail`."""

    def pick(s: Signals, budget: int) -> np.ndarray:
        n = len(s.y)
        return select(
            n, budget, "ccs", scores=s.distance, groups=s.y, seed=s.seed, bins=bins, tail=tail
        )

    return pick


def hard_random_mix(share: float) -> Callable[[Signals, int], np.ndarray]:
    """`share` of the budget hard (farthest from its prototype), the rest at random among
    the others; both label-balanced."""

    def pick(s: Signals, budget: int) -> np.ndarray:
        n = len(s.y)
        hard = select(n, round(share * budget), "hard", scores=s.distance, groups=s.y, seed=s.seed)
        others = np.setdiff1d(np.arange(n), hard)
        rest = select(len(others), budget - len(hard), "random", groups=s.y[others], seed=s.seed)
        return np.sort(np.concatenate([hard, others[rest]]))

    return pick


def auto(balance: str) -> Callable[[Signals, int], np.ndarray]:
    """`auto` as `select` runs it (hard at keep >= 70%, else random here), balanced;
    balance "auto" as `select` resolves it (`pruning.auto_balance`)."""

    def pick(s: Signals, budget: int) -> np.ndarray:
        chosen = balance
        if balance == "auto":
            keep = round(budget / len(s.y), 2)  # the keep fraction the budget came from
            chosen = auto_balance("auto", keep, False, labelled=True)
        groups = s.y if chosen == "label" else s.cluster
        return select(len(s.y), budget, "auto", scores=s.distance, groups=groups, seed=s.seed)

    return pick


# names as `select --report` finds them: "POLICY, BALANCE-balanced" for a policy and
# balance of the command line ("random" alone: no balance), "drop F% label issues, random"
# for --drop-label-issues F with random and no balance
VARIANTS: dict[str, Callable[[Signals, int], np.ndarray]] = {
    "random": policy("random", "none"),
    "auto, balance auto (the default now)": auto("auto"),
    "auto, cluster-balanced (the default before)": auto("cluster"),
    "auto, label-balanced": auto("label"),
    "random, cluster-balanced": policy("random", "cluster"),
    "random, label-balanced": policy("random", "label"),
    "hard, cluster-balanced": policy("hard", "cluster"),
    "hard, label-balanced": policy("hard", "label"),
    "ccs, label-balanced": policy("ccs", "label"),
    "random over 100 fine clusters": fine_clusters(100),
    "drop 5% label issues, random": drop_then_random(0.05),
    "drop 10% label issues, random": drop_then_random(0.1),
    "drop 20% label issues, random": drop_then_random(0.2),
    "drop 10% densest, random": dense_then_random(0.1),
    "drop 20% densest, random": dense_then_random(0.2),
    "drop 10% issues + 10% densest, random": clean_dense_random(0.1, 0.1),
    "class-conditional hard": class_hard,
    "ccs, 10 strata, no tail, label-balanced": ccs_strata(10, 0.0),
    "ccs, 10 strata, 10% tail, label-balanced": ccs_strata(10, 0.1),
    "ccs, 50 strata, no tail, label-balanced": ccs_strata(50, 0.0),
    "ccs, 50 strata, 20% tail, label-balanced": ccs_strata(50, 0.2),
    "20% hard + 80% random, label-balanced": hard_random_mix(0.2),
    "50% hard + 50% random, label-balanced": hard_random_mix(0.5),
    "random over label x 30 fine clusters": label_fine_clusters(30),
    "random over label x 100 fine clusters": label_fine_clusters(100),
}


def evaluate(
    x: np.ndarray,
    y: np.ndarray,
    seeds: int,
    accuracy: Callable[..., float],
    only: list[str] | None = None,
) -> dict[tuple[str, float], list[float]]:
    """{(variant, keep): per-seed accuracies}; `only`: these variants (and random)."""
    chosen_variants = {
        name: pick for name, pick in VARIANTS.items() if not only or name in {"random", *only}
    }
    results: dict[tuple[str, float], list[float]] = {}
    for seed in range(seeds):
        perm = np.random.default_rng(seed).permutation(len(x))
        cut = int(0.7 * len(x))
        pool, test = perm[:cut], perm[cut:]
        signals = Signals(x[pool], y[pool], seed)
        for keep in KEEP:
            budget = round(keep * len(pool))
            for name, pick in chosen_variants.items():
                chosen = pick(signals, budget)
                acc = accuracy(x[pool][chosen], y[pool][chosen], x[test], y[test])
                results.setdefault((name, keep), []).append(acc)
    return results


def table(title: str, results: dict[tuple[str, float], list[float]]) -> list[str]:
    """Each variant's mean accuracy minus random's (points), +- the std of the paired
    per-seed differences."""
    rows = [
        f"{title}\n",
        "| variant | " + " | ".join(f"keep {int(k * 100)}%" for k in KEEP) + " |",
        "|---" * (len(KEEP) + 1) + "|",
    ]
    for name in [v for v in VARIANTS if (v, KEEP[0]) in results]:
        cells = []
        for keep in KEEP:
            acc = np.array(results[(name, keep)])
            if name == "random":
                cells.append(f"{acc.mean():.3f} +- {acc.std():.3f}")
                continue
            diff = 100 * (acc - np.array(results[("random", keep)]))
            cells.append(f"{diff.mean():+.2f} +- {diff.std():.2f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows
