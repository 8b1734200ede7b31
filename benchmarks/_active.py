"""Active-learning curves and IWeS variants, for `benchmarks/selection.py --learn-only`
and `--learn-variants`.

Each dataset is split 70/30 per seed into a pool and a test set; a strategy
labels `budget` pool items in 5 rounds after a uniform seed batch (the same
for every strategy of a seed), and after each round the proxy (the linear
probe `learn` trains, with its importance weights) is scored on the test set.
Cells: test accuracy, or points over random / margin, mean over the seeds.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from thresher.scoring.uncertainty import predict_proba
from thresher.selection.iwes import DESIGNS, STRATEGIES, IwesDesign, active_learn

ROUNDS = 5

# The grid tried for issue #17, roughly in the order tried; the default `iwes` was
# chosen on digits and the tuning half of the families only.
VARIANTS: dict[str, tuple[str, IwesDesign]] = {
    "first iwes (entropy, Poisson, floor 1/2, cap 20, Adam)": (
        "iwes",
        IwesDesign("entropy", 1.0, 0.5, 20.0, diverse=False, solver="adam"),
    ),
    "margin score, Poisson, floor 1/2, cap 20": (
        "iwes",
        IwesDesign("margin", 1.0, 0.5, 20.0, diverse=False),
    ),
    "margin^4, by cluster, floor 1/2, cap 20": ("iwes", IwesDesign("margin", 4.0, 0.5, 20.0, True)),
    "margin^4, by cluster, floor 1/10, cap 20": ("iwes", IwesDesign(w_max=20.0, diverse=True)),
    "margin^4, by cluster, floor 1/10, cap 10": ("iwes", IwesDesign(w_max=10.0, diverse=True)),
    "margin^4, by cluster, floor 1/10, cap 5": ("iwes", IwesDesign(diverse=True)),
    "margin, by cluster, floor 1/10, cap 5": ("iwes", IwesDesign(sharpness=1.0, diverse=True)),
    "margin^8, by cluster, floor 1/10, cap 5": ("iwes", IwesDesign(sharpness=8.0, diverse=True)),
    "entropy, by cluster, floor 1/10, cap 5": (
        "iwes",
        IwesDesign("entropy", 1.0, diverse=True),
    ),
    "bootstrap disagreement, by cluster": ("iwes", IwesDesign("disagreement", 1.0, diverse=True)),
    "margin^4, floor 1/10, cap 5, Poisson (iwes)": ("iwes", DESIGNS["iwes"]),
    "entropy, floor 1/10, cap 5, Poisson (iwes-entropy)": ("iwes", DESIGNS["iwes-entropy"]),
    "bootstrap disagreement, Poisson (iwes-dis)": ("iwes", DESIGNS["iwes-dis"]),
}


def curves(
    x: np.ndarray,
    y: np.ndarray,
    budget: int,
    seeds: int,
    runs: dict[str, tuple[str, IwesDesign | None]],
) -> dict[str, np.ndarray]:
    """{run name: (seeds, rounds + 1) test accuracies}; `runs` maps a name to a strategy
    and an optional design."""
    classes = int(y.max()) + 1
    out: dict[str, list[list[float]]] = {name: [] for name in runs}
    for seed in range(seeds):
        perm = np.random.default_rng(seed).permutation(len(x))
        cut = int(0.7 * len(x))
        pool, test = perm[:cut], perm[cut:]

        def evaluate(model, test=test) -> float:  # type: ignore[no-untyped-def]
            return float((predict_proba(model, x[test]).argmax(axis=1) == y[test]).mean())

        for name, (strategy, design) in runs.items():
            res = active_learn(
                x[pool],
                lambda p, pool=pool: y[pool][p],
                classes,
                budget,
                ROUNDS,
                strategy,
                seed,
                evaluate,
                design,
            )
            out[name].append([a for _, a in res.curve])
    return {name: np.asarray(c) for name, c in out.items()}


def strategy_runs() -> dict[str, tuple[str, IwesDesign | None]]:
    return {s: (s, None) for s in STRATEGIES}


def accuracy_table(title: str, budget: int, acc: dict[str, np.ndarray]) -> list[str]:
    steps = [budget // (ROUNDS + 1) * (i + 1) for i in range(ROUNDS)] + [budget]
    rows = [
        f"{title}; test accuracy, {len(acc['random'])} seeds",
        "",
        "| strategy | " + " | ".join(f"{n} labels" for n in steps) + " | reaches random's final |",
        "|---" * (len(steps) + 2) + "|",
    ]
    final = acc["random"][:, -1].mean()
    for name, a in acc.items():
        means, stds = a.mean(axis=0), a.std(axis=0)
        reach = next((n for n, m in zip(steps, means, strict=True) if m >= final), None)
        share = f"{reach / budget:.0%} of the labels" if reach else "not in budget"
        cells = " | ".join(f"{m:.3f} +- {s:.3f}" for m, s in zip(means, stds, strict=True))
        rows.append(f"| {name} | {cells} | {share} |")
    return rows


def points_table(title: str, acc: dict[str, np.ndarray], names: list[str]) -> list[str]:
    """Points over random and over margin after each round (the seed batch left out)."""
    rounds = acc["random"].shape[1] - 1
    head = " ".join(f"r{i + 1}" for i in range(rounds))
    rows = [
        f"{title}; points over random and over margin after rounds 1-{rounds}, "
        f"{len(acc['random'])} seeds",
        "",
        f"| variant | over random, {head} | over margin, {head} |",
        "|---|---|---|",
    ]
    for name in names:
        over_random = 100 * (acc[name] - acc["random"]).mean(axis=0)[1:]
        over_margin = 100 * (acc[name] - acc["margin"]).mean(axis=0)[1:]
        rows.append(
            f"| {name} | "
            + " ".join(f"{v:+.1f}" for v in over_random)
            + " | "
            + " ".join(f"{v:+.1f}" for v in over_margin)
            + " |"
        )
    return rows


def variant_runs() -> dict[str, tuple[str, IwesDesign | None]]:
    """The grid plus random and margin; the first variant trains with Adam, as it did."""
    runs: dict[str, tuple[str, IwesDesign | None]] = {
        "random": ("random", None),
        "margin": ("margin", None),
    }
    runs.update(VARIANTS)
    adam = "first iwes (entropy, Poisson, floor 1/2, cap 20, Adam)"
    runs["first iwes + L-BFGS probe"] = ("iwes", replace(VARIANTS[adam][1], solver="lbfgs"))
    return runs
