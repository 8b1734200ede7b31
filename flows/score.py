"""Wiring of `thresher score`: kept items' vectors -> prototypes, density, uncertainty -> store.

Scores are written for every kept item (items in `duplicates` are skipped)
that has no score of that metric yet, so a rerun after new data scores only
the new items: against the centroids saved by the run that fitted them, the
density index of all kept items, and a probe trained on the labelled items.
`--refit` fits new centroids and rescores everything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from thresher.scoring.embedders import vectors_to_arrow
from thresher.scoring.matryoshka import normalize
from thresher.scoring.prototypes import (
    PrototypeStage,
    default_k,
    knn_distance,
    spherical_kmeans,
)
from thresher.scoring.uncertainty import entropy_margin, predict_proba, train_probe
from thresher.storage import queries
from thresher.storage import vectors as vstore
from thresher.storage.ray_adapter import run_stage
from thresher.storage.store import Run, StageCounts, Store

METRICS = ("prototype", "density", "uncertainty")


@dataclass(frozen=True)
class ScoreReport:
    run_id: int
    model: str
    clusters: int
    scored: dict[str, int]
    note: str = ""


def _scores(run: Run, metric: str, ids: np.ndarray, values: np.ndarray) -> None:
    n = len(ids)
    run.write_table(
        "scores",
        pa.table(
            {
                "item_id": pa.array(ids, pa.int64()),
                "metric": pa.array([metric] * n, pa.string()),
                "value": pa.array(np.asarray(values, np.float64)),
                "run_id": pa.array(np.full(n, run.run_id), pa.int64()),
            }
        ),
    )


def score(
    store: Store,
    *,
    model: str | None = None,
    clusters: int | None = None,
    metrics: Sequence[str] = METRICS,
    refit: bool = False,
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> ScoreReport:
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {', '.join(bad)}: allowed {', '.join(METRICS)}")
    model = vstore.pick_model(store, model)
    ids, vectors = kept_vectors(store, model)
    if not len(ids):
        raise ValueError(f"no kept item has a {model!r} vector")
    done = _scored(store)
    labels = queries.labels(store, ids) or [None] * len(ids)
    scored: dict[str, int] = {}
    note = ""
    with store.run(
        "score",
        {
            "model": model,
            "clusters": clusters,
            "metrics": list(metrics),
            "refit": refit,
            "seed": seed,
        },
    ) as run:
        k = 0
        # prototypes: spherical k-means once, then every new item against the saved centroids
        if "prototype" in metrics:
            centroids = None if refit else _saved_centroids(store, model)
            if centroids is None:
                n_labels = len({v for v in labels if v is not None})
                k = clusters or default_k(len(ids), n_labels)
                centroids = spherical_kmeans(vectors, k, seed)
                path = f"centroids/{vstore.safe_name(model)}-r{run.run_id:06d}.npy"
                with open(run.stage_path(path), "wb") as fh:
                    np.save(fh, centroids)
                run.catalog_rows.append(
                    (
                        "centroids",
                        {"model": model, "run_id": run.run_id, "k": k, "path": path, "seed": seed},
                    )
                )
                todo = np.ones(len(ids), dtype=bool)
            else:
                k = len(centroids)
                todo = ~np.isin(ids, done.get("prototype_distance", np.zeros(0, np.int64)))
            table = pa.table(
                {"item_id": pa.array(ids[todo]), "vector": vectors_to_arrow(vectors[todo])}
            )
            outs = (
                list(run_stage(PrototypeStage(centroids), table, on_progress=on_progress))
                if todo.any()
                else []
            )
            if outs:
                out = pa.concat_tables(outs)
                run.write_table(
                    "clusters",
                    pa.table(
                        {
                            "item_id": out.column("item_id"),
                            "cluster_id": out.column("cluster_id"),
                            "distance": out.column("distance"),
                            "run_id": pa.array(np.full(out.num_rows, run.run_id), pa.int64()),
                        }
                    ),
                )
                _scores(
                    run,
                    "prototype_distance",
                    out.column("item_id").to_numpy(),
                    out.column("distance").to_numpy(),
                )
            scored["prototype_distance"] = int(todo.sum())
        # density: distance to the 10th nearest kept item
        if "density" in metrics:
            todo = ~np.isin(ids, done.get("knn_distance", np.zeros(0, np.int64)))
            if todo.any() and len(ids) > 10:
                _scores(run, "knn_distance", ids[todo], knn_distance(vectors)[todo])
            scored["knn_distance"] = int(todo.sum()) if len(ids) > 10 else 0
        # uncertainty: a linear probe on the labelled items, entropy and margin for all
        if "uncertainty" in metrics:
            known = np.array([v is not None for v in labels])
            classes = sorted({v for v in labels if v is not None})
            if len(classes) < 2:
                note = "uncertainty skipped: needs a label column with >= 2 classes"
            else:
                todo = ~np.isin(ids, done.get("entropy", np.zeros(0, np.int64)))
                code = {c: i for i, c in enumerate(classes)}
                y = np.array([code[v] for v in np.asarray(labels, dtype=object)[known]])
                if todo.any():
                    probe = train_probe(vectors[known], y, len(classes), seed=seed)
                    ent, mar = entropy_margin(predict_proba(probe, vectors[todo]))
                    _scores(run, "entropy", ids[todo], ent)
                    _scores(run, "margin", ids[todo], mar)
                scored["entropy"] = scored["margin"] = int(todo.sum())
        total = len(ids)
        run.record(StageCounts("score", model, total, total, 0, 0))
        run.message = ", ".join(f"{v} {m}" for m, v in scored.items())
    return ScoreReport(run.run_id, model, k, scored, note)


def kept_vectors(store: Store, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Ids and unit vectors of the items no dedup or filter dropped, in store order."""
    dups = store.query(f"SELECT DISTINCT item_id FROM {queries.EXCLUDED}").column(0).to_numpy()
    parts = list(vstore.iter_embeddings(store, model, skip_ids=dups))
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    return np.concatenate([p[0] for p in parts]), normalize(np.concatenate([p[1] for p in parts]))


def _scored(store: Store) -> dict[str, np.ndarray]:
    rows = store.query(
        "SELECT metric, list(item_id ORDER BY item_id) AS ids FROM scores "
        "GROUP BY metric ORDER BY metric"
    ).to_pylist()
    return {r["metric"]: np.asarray(r["ids"], np.int64) for r in rows}


def _saved_centroids(store: Store, model: str) -> np.ndarray | None:
    rows = store.query(
        "SELECT path FROM centroids WHERE model = $m ORDER BY run_id DESC LIMIT 1", {"m": model}
    ).to_pylist()
    return np.load(store.root / rows[0]["path"]) if rows else None


def describe(report: ScoreReport) -> list[dict]:
    rows: list[dict] = [
        {
            "metric": m,
            "items scored": n,
            "clusters": report.clusters if m == "prototype_distance" else None,
        }
        for m, n in report.scored.items()
    ]
    if report.note:
        rows.append({"metric": report.note, "items scored": None, "clusters": None})
    return rows
