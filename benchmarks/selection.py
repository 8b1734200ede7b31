"""Pruning policies against random selection and the full set, on held-out data, over seeds.

    pip install -e '.[bench]'
    python benchmarks/selection.py [--seeds 5] [--summaries 10000] [--cache DIR]

Datasets: scikit-learn's digits (64 pixel features, scaled to unit length,
10 classes) and `--summaries` labelled PyPI summaries (the `family` column of
../shared/data, 29 imbalanced classes) embedded with the default MiniLM
(cached). Each is split 70/30 into a pool and a held-out test set per seed.

For each kept fraction (10/30/50/70%) and policy, thresher's own pieces pick
the subset from the pool (spherical k-means with k = number of classes,
prototype_distance, `select` with cluster balance), then a fixed classifier
(scikit-learn LogisticRegression) is trained on it and scored on the test
set. Cells are mean +- std test accuracy over the seeds; `full` trains on the
whole pool. Target (issue #6): the default policy >= random at every budget.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import SUMMARIES, labelled_sample
from _variants import VARIANTS

from thresher.scoring.prototypes import prototype_scores, spherical_kmeans
from thresher.selection.pruning import auto_policy, select

POLICIES = ("random", "auto", "easy", "hard", "ccs", "kcenter")
KEEP = (0.1, 0.3, 0.5, 0.7)


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), d.target


def labelled_summaries(n: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from thresher.scoring.embedders import EmbedderConfig, TextEmbedder

    t = pq.read_table(SUMMARIES, columns=["summary", "family"])
    t = t.filter(pc.and_(pc.is_valid(t.column("family")), pc.is_valid(t.column("summary"))))
    t = t.slice(0, n)
    path = cache / f"labelled-{n}.npy"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        vecs = TextEmbedder(EmbedderConfig(batch_size=128)).encode(t.column(0).to_pylist())
        np.save(path, vecs)
    labels = np.unique(np.asarray(t.column(1).to_pylist()), return_inverse=True)[1]
    return np.load(path), labels


def accuracy(xtr, ytr, xte, yte) -> float:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(ytr)) < 2:
        return float(np.mean(yte == ytr[0]))
    clf = LogisticRegression(max_iter=2000, C=10.0)
    clf.fit(xtr, ytr)
    return float(clf.score(xte, yte))


def run(x: np.ndarray, y: np.ndarray, seeds: int) -> dict:
    results: dict = {}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(x))
        cut = int(0.7 * len(x))
        pool, test = perm[:cut], perm[cut:]
        xp, yp = x[pool], y[pool]
        k = len(np.unique(y))
        cluster, distance, _ = prototype_scores(xp, spherical_kmeans(xp, k, seed=seed))
        results.setdefault(("full", 1.0), []).append(accuracy(xp, yp, x[test], y[test]))
        for keep in KEEP:
            budget = round(keep * len(pool))
            for policy in POLICIES:
                picked = select(
                    len(pool),
                    budget,
                    policy,
                    scores=distance,
                    vectors=xp,
                    groups=cluster,
                    seed=seed,
                )
                acc = accuracy(xp[picked], yp[picked], x[test], y[test])
                results.setdefault((policy, keep), []).append(acc)
    return results


def table(name: str, results: dict) -> list[str]:
    full = results[("full", 1.0)]
    rows = [
        f"{name}: full pool {np.mean(full):.3f} +- {np.std(full):.3f}\n",
        "| policy | " + " | ".join(f"keep {int(k * 100)}%" for k in KEEP) + " |",
        "|---" * (len(KEEP) + 1) + "|",
    ]
    for policy in POLICIES:
        cells = []
        for keep in KEEP:
            accs = np.array(results[(policy, keep)])
            rand = np.array(results[("random", keep)])
            mark = (
                ""
                if policy == "random"
                else (" (>= random)" if accs.mean() >= rand.mean() else " (< random)")
            )
            cells.append(f"{accs.mean():.3f} +- {accs.std():.3f}{mark}")
        label = policy
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


POOL_FRACTIONS = (0.125, 0.25, 0.5, 1.0)


def regime(x: np.ndarray, y: np.ndarray, seeds: int) -> list[dict]:
    """hard / easy against random over pool sizes x kept fractions: where each wins.

    Sorscher et al.'s picture: keep easy items when the kept set is small for the
    task, hard ones when it is large. `per_cluster` (kept items per k-means
    cluster, k = classes) is the abundance measure the rule in `pruning` uses.
    """
    k = len(np.unique(y))
    cells: dict[tuple[int, float], dict[str, list[float]]] = {}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(x))
        cut = int(0.7 * len(x))
        pool, test = perm[:cut], perm[cut:]
        for frac in POOL_FRACTIONS:
            sub = pool[: int(frac * len(pool))]  # a random subset: pool is shuffled
            xp, yp = x[sub], y[sub]
            cluster, distance, _ = prototype_scores(xp, spherical_kmeans(xp, k, seed=seed))
            for keep in KEEP:
                budget = round(keep * len(sub))
                cell = cells.setdefault((len(sub), keep), {})
                for policy in ("random", "easy", "hard", "auto"):
                    picked = select(
                        len(sub), budget, policy, scores=distance, groups=cluster, seed=seed
                    )
                    acc = accuracy(xp[picked], yp[picked], x[test], y[test])
                    cell.setdefault(policy, []).append(acc)
    rows = []
    for (n, keep), cell in sorted(cells.items()):
        mean = {p: float(np.mean(v)) for p, v in cell.items()}
        rows.append(
            {
                "pool": n,
                "keep": keep,
                "per_cluster": keep * n / k,
                "random": mean["random"],
                "easy": mean["easy"] - mean["random"],
                "hard": mean["hard"] - mean["random"],
                "auto": mean["auto"] - mean["random"],
                "auto_is": auto_policy(n, round(keep * n), np.arange(k)),
                "sd": float(np.std(cell["random"])),
            }
        )
    return rows


def regime_table(name: str, rows: list[dict]) -> list[str]:
    out = [
        f"{name}\n",
        "| pool | keep | kept per cluster | random | easy - random | hard - random | best "
        "| auto | auto - random |",
        "|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        best = max(("random", 0.0), ("easy", r["easy"]), ("hard", r["hard"]), key=lambda t: t[1])
        out.append(
            f"| {r['pool']:,} | {int(r['keep'] * 100)}% | {r['per_cluster']:.0f} | "
            f"{r['random']:.3f} +- {r['sd']:.3f} | {r['easy']:+.3f} | {r['hard']:+.3f} | "
            f"{best[0]} | {r['auto_is']} | {r['auto']:+.4f} |"
        )
    return out


def family_halves(cache: Path, n: int = 20_000) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The labelled summaries (a seeded sample of `n` across the 29 families) split by
    family, with a fixed seed, into a half to tune on and a held-out half."""
    _, families, x = labelled_sample(n, cache)
    names = np.unique(families)
    tune = set(np.random.default_rng(0).permutation(names)[: len(names) // 2 + 1].tolist())
    out = []
    for title, inside in (("tuning half", True), ("held-out half", False)):
        mask = np.array([(f in tune) == inside for f in families])
        classes, y = np.unique(families[mask], return_inverse=True)
        out.append(
            (f"PyPI summaries, {title}: {len(classes)} families, {mask.sum():,} items", x[mask], y)
        )
    return out


def variants(seeds: int, cache: Path, save: Path | None, only: list[str] | None = None) -> None:
    """Every variant against random on digits and both family halves; with `save`, the
    points over random as JSON (what `select --report` quotes)."""
    import datetime as dt
    import json

    from _variants import evaluate
    from _variants import table as variant_table

    x, y = digits()
    datasets = [("digits (1,797 images, 10 classes)", x, y), *family_halves(cache)]
    measured: dict = {"date": dt.date.today().isoformat(), "seeds": seeds, "datasets": {}}
    for title, x, y in datasets:
        results = evaluate(x, y, seeds, accuracy, only)
        print("\n".join(variant_table(f"{title}; points over random, {seeds} seeds", results)))
        print(flush=True)
        cells: dict = {}
        for (name, keep), accs in results.items():
            diff = 100 * (np.array(accs) - np.array(results[("random", keep)]))
            cells.setdefault(name, {})[str(keep)] = [round(diff.mean(), 2), round(diff.std(), 2)]
        measured["datasets"][title] = {"pool": int(0.7 * len(x)), "points": cells}
    if save:
        save.write_text(json.dumps(measured, indent=1) + "\n")


def learning(seeds: int, cache: Path, variants_grid: bool) -> None:
    """Learning curves of every `learn` strategy (or, with `variants_grid`, of the IWeS
    variants tried) on digits and both family halves."""
    import _active

    x, y = digits()
    datasets = [("digits (1,797 images, 10 classes), budget 300", x, y, 300)]
    datasets += [(f"{title}, budget 600", x, y, 600) for title, x, y in family_halves(cache)]
    for title, x, y, budget in datasets:
        if variants_grid:
            runs = _active.variant_runs()
            acc = _active.curves(x, y, budget, seeds, runs)
            rows = _active.points_table(title, acc, [n for n in runs if n != "random"])
        else:
            acc = _active.curves(x, y, budget, seeds, _active.strategy_runs())
            rows = _active.accuracy_table(title, budget, acc)
            rows += ["", *_active.points_table(title, acc, [n for n in acc if n != "random"])]
        print("\n".join(rows) + "\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--summaries", type=int, default=10_000)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/thresher-bench-cache"))
    parser.add_argument("--learn-only", action="store_true", help="only the learning curves")
    parser.add_argument(
        "--learn-variants",
        action="store_true",
        help="only the IWeS variants tried, against random and margin",
    )
    parser.add_argument(
        "--regime", action="store_true", help="only the data-regime sweep (pool size x keep)"
    )
    parser.add_argument(
        "--variants",
        action="store_true",
        help="only the selection variants against random (tuning and held-out families)",
    )
    parser.add_argument("--save", type=Path, help="with --variants: the points as JSON here")
    parser.add_argument(
        "--variant",
        action="append",
        help="with --variants: only this variant (and random); repeatable",
    )
    args = parser.parse_args()
    if args.variants:
        if args.variant and args.save:
            parser.error("--save writes every variant's points: leave out --variant")
        unknown = sorted(set(args.variant or []) - set(VARIANTS))
        if unknown:
            parser.error(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
        variants(args.seeds, args.cache, args.save, args.variant)
        return
    if args.regime:
        x, y = digits()
        print("\n".join(regime_table("digits, 10 classes", regime(x, y, args.seeds))), flush=True)
        x, y = labelled_summaries(args.summaries, args.cache)
        name = f"PyPI summaries, {len(np.unique(y))} families, MiniLM"
        print("\n" + "\n".join(regime_table(name, regime(x, y, args.seeds))))
        return
    if args.learn_only or args.learn_variants:
        learning(args.seeds, args.cache, variants_grid=args.learn_variants)
        return
    x, y = digits()
    print("\n".join(table("digits (1,797 images, 10 classes)", run(x, y, args.seeds))), flush=True)
    x, y = labelled_summaries(args.summaries, args.cache)
    print()
    print(
        "\n".join(
            table(
                f"PyPI summaries ({len(x):,} labelled, {len(np.unique(y))} families, "
                "MiniLM embeddings)",
                run(x, y, args.seeds),
            )
        )
    )


if __name__ == "__main__":
    main()
