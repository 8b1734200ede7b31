"""Wiring of `thresher learn` and `thresher label`.

With labels for every candidate (an ingested label column), `learn` simulates
the whole loop with that column as the oracle. Without them it runs one round
per call: the items to label next are added to selection NAME (with their
importance weights); `thresher export` hands NAME to annotators and
`thresher label STORE FILE` brings their labels back for the next round.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.flows.runtime import Progress
from thresher.flows.score import kept_vectors
from thresher.flows.select import write_selection
from thresher.selection.iwes import Labelled, active_learn, diversity_clusters, pick_batch
from thresher.storage import queries
from thresher.storage import vectors as vstore
from thresher.storage.errors import ThresherError
from thresher.storage.store import StageCounts, Store
from thresher.storage.uri import check_name


@dataclass(frozen=True)
class LearnReport:
    run_id: int
    name: str
    strategy: str
    pool: int
    selected: int
    curve: list[tuple[int, float]]


def learn(
    store: Store,
    name: str,
    budget: int,
    *,
    rounds: int = 5,
    strategy: str = "iwes",
    seed: int = 0,
    model: str | None = None,
    on_progress: Progress = None,
) -> LearnReport:
    """Select `budget` items to label in `rounds`, with importance weights, as selection
    `name`; `on_progress(done, total)` after each round's training."""
    check_name(name)
    started = dt.datetime.now(dt.UTC)  # the run is opened once the loop is done
    model = vstore.pick_model(store, model)
    config = {
        "name": name,
        "budget": budget,
        "rounds": rounds,
        "strategy": strategy,
        "seed": seed,
        "model": model,
    }
    ids, vectors = kept_vectors(store, model)
    if not len(ids):
        raise ThresherError(f"no kept item has a {model!r} vector: run thresher embed first")
    found = queries.labels(store, ids) or [None] * len(ids)
    if queries.label_column(store) is None:  # no oracle: one round of the real label loop
        return _one_round(store, config, ids, vectors, found)
    has = np.array([v is not None for v in found])
    ids, vectors = ids[has], vectors[has]
    classes, y = np.unique(np.asarray([v for v in found if v is not None]), return_inverse=True)
    if len(classes) < 2:
        raise ThresherError("thresher learn needs at least 2 label classes")
    result = active_learn(
        vectors,
        lambda pos: y[pos],
        len(classes),
        budget,
        rounds,
        strategy,
        seed,
        evaluate=_counting(lambda m: _train_accuracy(m, vectors, y), rounds + 1, on_progress),
    )
    with store.run("learn", config, started) as run:
        n = len(result.selected)
        write_selection(run, name, ids[result.selected], result.weights)
        run.record(StageCounts("learn", name, len(ids), n, len(ids) - n, 0))
        run.message = f"{n} of {len(ids)} labelled by {strategy}"
        run.config["curve"] = [[labels, accuracy] for labels, accuracy in result.curve]
    return LearnReport(run.run_id, name, strategy, len(ids), n, result.curve)


def _counting(
    evaluate: Callable[[Any], float], total: int, on_progress: Progress
) -> Callable[[Any], float]:
    """`evaluate`, reporting each call (one per round) to `on_progress`."""
    done = 0

    def wrapped(model: Any) -> float:
        nonlocal done
        accuracy = evaluate(model)
        done += 1
        if on_progress:
            on_progress(done, total)
        return accuracy

    return wrapped


def _one_round(
    store: Store, config: dict, ids: np.ndarray, vectors: np.ndarray, found: list
) -> LearnReport:
    """Add the next batch to label to selection `name` (unlabelled data: a real loop)."""
    name, budget, rounds = config["name"], config["budget"], config["rounds"]
    strategy, seed = config["strategy"], config["seed"]
    chosen = queries.latest_selection_weights(store, name)
    batch = max(1, budget // (rounds + 1))
    room = budget - len(chosen)
    if room <= 0:
        raise ThresherError(f"selection {name!r} already holds the budget of {budget} items")
    take = min(batch, room)
    rng = np.random.default_rng([seed, len(chosen)])
    pos = {v: i for i, v in enumerate(ids.tolist())}
    labelled = [pos[i] for i in chosen if i in pos and found[pos[i]] is not None]
    pool = np.setdiff1d(np.arange(len(ids)), [pos[i] for i in chosen if i in pos])
    classes, y = np.unique(
        np.asarray([found[p] for p in labelled], dtype=object).astype(str), return_inverse=True
    )
    if len(classes) < 2:  # nothing to learn from yet: a uniform seed batch
        new, w = (
            rng.choice(pool, min(take, len(pool)), replace=False),
            np.ones(min(take, len(pool))),
        )
    else:
        weights = [float(chosen[ids[p]]) for p in labelled]
        done = Labelled(labelled, y.tolist(), weights, len(classes))
        clusters = diversity_clusters(strategy, vectors, batch, seed)
        new, w = pick_batch(
            strategy, done.train(vectors, seed), vectors, pool, done, take, rng, seed, clusters
        )
    chosen.update(zip(ids[new].tolist(), np.asarray(w, float).tolist(), strict=True))
    with store.run(
        "learn",
        {**config, "mode": "label loop"},
    ) as run:
        write_selection(
            run, name, np.asarray(list(chosen), np.int64), np.asarray(list(chosen.values()))
        )
        run.record(StageCounts("learn", name, len(ids), len(new), len(ids) - len(new), 0))
        run.message = (
            f"{len(new)} items to label added to {name!r}: thresher export, then thresher label"
        )
    return LearnReport(run.run_id, name, strategy, len(ids), len(new), [])


def review_label_issues(store: Store, name: str, n: int) -> tuple[str, int]:
    """Selection NAME.review: the `n` labelled items most likely mislabelled (largest
    `label_issue`, `thresher score --metrics label_issue`), to send back to annotators
    before more labels are bought; (its name, its items)."""
    review = f"{name}.review"
    check_name(review)
    if not queries.has_scores(store, "label_issue"):
        raise ThresherError(
            "--review-label-issues needs label issue scores: run thresher score STORE "
            "--metrics label_issue first"
        )
    ids = queries.worst_label_issues(store, n)
    with store.run("learn", {"name": review, "review_label_issues": n}) as run:
        write_selection(run, review, np.sort(ids), np.ones(len(ids)))
        run.record(StageCounts("learn", review, len(ids), len(ids), 0, 0))
        run.message = (
            f"{len(ids)} likely mislabelled items to relabel in {review!r}: thresher export, "
            "then thresher label"
        )
    return review, len(ids)


def _train_accuracy(model, vectors: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the proxy on the whole labelled pool (the oracle knows every label)."""
    from thresher.scoring.uncertainty import predict_proba

    return float((predict_proba(model, vectors).argmax(axis=1) == y).mean())


def add_labels(store: Store, path: str, allow_new_classes: bool = False) -> int:
    """Record an annotators' file of (item_id, label) rows; refuse unknown items or classes."""
    from pathlib import Path

    from thresher.storage.readers import detect_format, read_chunks

    source = Path(path)
    if not source.is_file():
        raise ThresherError(f"{path}: no such file")
    chunks = list(read_chunks(source, detect_format(source, "auto"), 1 << 20))
    tables = [c.table for c in chunks if c.table.num_rows]
    if not tables or any(c.rejects for c in chunks):
        bad = sum(len(c.rejects) for c in chunks)
        raise ThresherError(f"{path}: {bad} unreadable rows" if bad else f"{path}: no rows")
    table = pa.concat_tables(tables, promote_options="permissive")
    missing = [c for c in ("item_id", "label") if c not in table.column_names]
    if missing:
        raise ThresherError(
            f"{path}: no column {missing[0]!r}; columns: {', '.join(table.column_names)}"
        )
    item_ids = table.column("item_id").cast(pa.int64()).to_numpy()
    values = table.column("label").to_pylist()
    if any(v is None or not str(v).strip() for v in values):
        raise ThresherError(f"{path}: empty label(s) in column 'label'")
    values = [str(v) for v in values]
    known_ids = queries.item_ids(store)
    unknown = np.setdiff1d(item_ids, known_ids)
    if len(unknown):
        raise ThresherError(
            f"{path}: {len(unknown)} item_id(s) are not in the store, e.g. {unknown[0]}"
        )
    old = queries.labels(store, known_ids) or []
    classes = {v for v in old if v is not None}
    new_classes = sorted(set(values) - classes)
    if classes and new_classes and not allow_new_classes:
        raise ThresherError(
            f"{path}: unknown class(es) {', '.join(new_classes[:5])} (known: "
            f"{', '.join(sorted(classes)[:10])}); pass --allow-new-classes"
        )
    with store.run("label", {"file": str(source.absolute())}) as run:
        run.append("labels", item_id=item_ids, label=values)
        run.record(StageCounts("label", str(source), len(values), len(values), 0, 0))
    return len(values)
