"""Wiring of `thresher learn` (simulation mode): the store's label column is the oracle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from thresher.scoring.matryoshka import normalize
from thresher.selection.iwes import active_learn
from thresher.storage import queries
from thresher.storage import vectors as vstore
from thresher.storage.store import StageCounts, Store


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
) -> LearnReport:
    """Select `budget` items to label in `rounds`, with importance weights, as selection `name`."""
    model = vstore.pick_model(store, model)
    dups = store.query("SELECT DISTINCT item_id FROM duplicates").column(0).to_numpy()
    parts = list(vstore.iter_embeddings(store, model, skip_ids=dups))
    ids = np.concatenate([p[0] for p in parts])
    vectors = normalize(np.concatenate([p[1] for p in parts]))
    found = queries.labels(store, ids)
    if found is None:
        raise ValueError(
            "thresher learn needs a label column to act as the oracle (ingest with "
            "--label-column); the export/label loop for unlabelled data is not "
            "built yet"
        )
    has = np.array([v is not None for v in found])
    ids, vectors = ids[has], vectors[has]
    classes, y = np.unique(np.asarray([v for v in found if v is not None]), return_inverse=True)
    if len(classes) < 2:
        raise ValueError("thresher learn needs at least 2 label classes")
    result = active_learn(
        vectors,
        lambda pos: y[pos],
        len(classes),
        budget,
        rounds,
        strategy,
        seed,
        evaluate=lambda m: _train_accuracy(m, vectors, y),
    )
    with store.run(
        "learn",
        {
            "name": name,
            "budget": budget,
            "rounds": rounds,
            "strategy": strategy,
            "seed": seed,
            "model": model,
        },
    ) as run:
        n = len(result.selected)
        run.write_table(
            "selections",
            pa.table(
                {
                    "selection": pa.array([name] * n, pa.string()),
                    "item_id": pa.array(ids[result.selected], pa.int64()),
                    "weight": pa.array(result.weights.astype(np.float64)),
                    "run_id": pa.array(np.full(n, run.run_id), pa.int64()),
                }
            ),
        )
        run.record(StageCounts("learn", name, len(ids), n, len(ids) - n, 0))
        run.message = f"{n} of {len(ids)} labelled by {strategy}"
    return LearnReport(run.run_id, name, strategy, len(ids), n, result.curve)


def _train_accuracy(model, vectors: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the proxy on the whole labelled pool (the oracle knows every label)."""
    from thresher.scoring.uncertainty import predict_proba

    return float((predict_proba(model, vectors).argmax(axis=1) == y).mean())
