"""Wiring of `thresher score`: kept items' vectors -> prototypes, density, uncertainty -> store.

Scores are written for every kept item (items in `duplicates` are skipped)
that has no score of that metric yet, so a rerun after new data scores only
the new items: against the centroids saved by the run that fitted them, the
density index of all kept items, and a probe trained on the labelled items.
`--refit` fits new centroids and rescores everything.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.flows import runtime
from thresher.flows.config import DEFAULT_SCORE_METRICS, SCORE_METRICS
from thresher.flows.density import density_pass
from thresher.flows.embed import update_index
from thresher.flows.label_issues import score_label_issues
from thresher.flows.quality import last_key, reference_key, score_quality
from thresher.flows.runtime import Progress
from thresher.scoring.matryoshka import normalize
from thresher.scoring.prototypes import (
    PrototypeStage,
    default_k,
    fit_sample,
    streamed_sample,
)
from thresher.scoring.uncertainty import ProbeStage, train_probe
from thresher.storage import queries, score_queries
from thresher.storage import vectors as vstore
from thresher.storage.errors import ThresherError
from thresher.storage.ray_adapter import run_task
from thresher.storage.stage import arrow_to_vectors
from thresher.storage.store import Run, StageCounts, Store

DEFAULT_METRICS, METRICS = DEFAULT_SCORE_METRICS, SCORE_METRICS
PROBE_ROWS = 200_000  # labelled rows the probe trains on, at most


@dataclass(frozen=True)
class ScoreReport:
    run_id: int
    model: str
    clusters: int
    scored: dict[str, int]
    note: str = ""


def score(
    store: Store,
    *,
    model: str | None = None,
    clusters: int | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    refit: bool = False,
    seed: int = 0,
    reference: str | None = None,
    reference_column: str | None = None,
    on_progress: Progress = None,
) -> ScoreReport:
    """`label_issue` and `quality` (with a `reference` file) run only when named."""
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ThresherError(f"unknown metric(s) {', '.join(bad)}: allowed {', '.join(METRICS)}")
    if ("quality" in metrics) != (reference is not None):
        raise ThresherError("--metrics quality and --reference FILE go together")
    model = vstore.pick_model(store, model)
    n_kept = queries.count(store, queries.kept_vectors(model))
    if not n_kept:
        raise ThresherError(f"no kept item has a {model!r} vector")
    config: dict = {"model": model, "clusters": clusters, "metrics": list(metrics)}
    if reference is not None:  # the file is checked before anything runs
        config["reference"] = reference
        config["quality_key"] = reference_key(store, model, reference, reference_column, seed)
    scored: dict[str, int] = {}
    notes = []
    k = 0
    # density reads the model's rotated vectors (the index brought up to date first: it
    # commits a run of its own; no shortlist index, which only search uses)
    index = update_index(store, model, shortlist=False) if "density" in metrics else None
    with store.run("score", {**config, "refit": refit, "seed": seed}) as run:
        # prototypes: spherical k-means once (a Ray task), then every new item against the
        # saved centroids on Ray workers, streamed into clusters and scores
        if "prototype" in metrics:
            centroids = None if refit else _saved_centroids(store, model)
            todo = kept = runtime.stage(run, "score-kept", queries.kept_vectors(model))
            if centroids is None:
                k = clusters or default_k(n_kept, queries.class_count(store, model))
                centroids = run_task(_fit_centroids, kept.paths, k, seed, rows=kept.rows)
                _save_centroids(run, model, centroids, seed)
            else:
                todo = runtime.stage(
                    run, "score-prototype", queries.kept_vectors(model, "prototype_distance")
                )
            k = len(centroids)
            found, values = run.writer("clusters"), run.writer("scores")
            for out in runtime.stream(PrototypeStage(centroids), todo, on_progress=on_progress):
                ids, distance = out.column("item_id"), out.column("distance")
                found.append(item_id=ids, cluster_id=out.column("cluster_id"), distance=distance)
                values.append(item_id=ids, metric="prototype_distance", value=distance)
            found.close()
            values.close()
            scored["prototype_distance"] = todo.rows
        # density: distance to the 10th nearest kept item, searched within clusters
        if index is not None:
            scored["knn_distance"] = 0
            todo = runtime.stage(
                run, "score-density", queries.kept_vectors(model, "knn_distance", ids_only=True)
            )
            if todo.rows and n_kept > 10:
                ids = runtime.stage(run, "score-ids", queries.kept_vectors(model, ids_only=True))
                scored["knn_distance"] = density_pass(run, index, ids, todo, seed=seed)
        # uncertainty: a linear probe trained on the labelled items (a Ray task), then
        # entropy and margin of every unscored item on Ray workers
        if "uncertainty" in metrics:
            n_todo = queries.count(store, queries.kept_vectors(model, "entropy", ids_only=True))
            if queries.class_count(store, model) < 2:
                notes.append("uncertainty skipped: needs a label column with >= 2 classes")
            else:
                if n_todo:
                    # one staged file: its labelled rows train the probe, its "todo" rows
                    # (no entropy yet) get scored
                    pool = runtime.stage(
                        run,
                        "score-probe",
                        queries.probe_pool(model, queries.label_column(store), "entropy"),
                    )
                    probe = run_task(_train_probe_step, pool.paths, seed, rows=pool.rows)
                    values = run.writer("scores")
                    for out in runtime.stream(probe, pool, on_progress=on_progress):
                        out = out.filter(out.column("todo"))
                        ids = out.column("item_id")
                        values.append(item_id=ids, metric="entropy", value=out.column("entropy"))
                        values.append(item_id=ids, metric="margin", value=out.column("margin"))
                    values.close()
                scored["entropy"] = scored["margin"] = n_todo
        # label issues: out-of-fold probes over the labelled items (flows/label_issues.py)
        if "label_issue" in metrics:
            if queries.class_count(store, model) < 2:
                notes.append("label_issue skipped: needs a label column with >= 2 classes")
            else:
                scored["label_issue"] = score_label_issues(run, model, seed, on_progress)
        # quality: a probe of the reference set against the store (flows/quality.py)
        if reference is not None:
            scored["quality"] = score_quality(
                run,
                model,
                reference,
                reference_column,
                config["quality_key"],
                seed=seed,
                refit=refit,
                on_progress=on_progress,
            )
        run.record(StageCounts("score", model, n_kept, n_kept, 0, 0))
        run.message = ", ".join(f"{v} {m}" for m, v in scored.items())
    return ScoreReport(run.run_id, model, k, scored, "; ".join(notes))


def pending_metrics(
    store: Store,
    model: str,
    metrics: Sequence[str],
    reference: str | None = None,
    reference_column: str | None = None,
    seed: int = 0,
) -> list[str]:
    """Those of `metrics` with something to do: the per-item ones (prototype, density,
    uncertainty) when a kept item has no prototype score; label_issue when its scores are
    stale; quality when an item has none or the reference changed."""
    per_item = [m for m in metrics if m in DEFAULT_METRICS]
    todo = (
        per_item if queries.count(store, queries.kept_vectors(model, "prototype_distance")) else []
    )
    if "label_issue" in metrics and score_queries.label_issues_stale(
        store, model, queries.label_column(store)
    ):
        todo.append("label_issue")
    if "quality" in metrics and reference is not None:
        key = reference_key(store, model, reference, reference_column, seed)
        if last_key(store) != key or queries.count(store, score_queries.quality_todo(model, False)):
            todo.append("quality")
    return todo


def _read_vectors(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, unit vectors) of staged (item_id, vector) files."""
    tables = [pq.read_table(p, columns=["item_id", "vector"]) for p in paths]
    if not tables:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    table = pa.concat_tables(tables)
    return table.column("item_id").to_numpy(), normalize(arrow_to_vectors(table.column("vector")))


def _fit_centroids(paths: list[str], k: int, seed: int) -> np.ndarray:
    """Spherical k-means on the sample `spherical_kmeans` would take, picked while the
    staged vectors are read a row group at a time."""

    def batches() -> Iterator[np.ndarray]:
        for path in paths:
            pf = pq.ParquetFile(path)
            for g in range(pf.metadata.num_row_groups):
                yield normalize(arrow_to_vectors(pf.read_row_group(g, ["vector"]).column(0)))

    return fit_sample(streamed_sample(batches(), k, seed), k, seed)


def _save_centroids(run: Run, model: str, centroids: np.ndarray, seed: int) -> None:
    path = f"centroids/{vstore.safe_name(model)}-r{run.run_id:06d}.npy"
    with open(run.stage_path(path), "wb") as fh:
        np.save(fh, centroids)
    row = {"model": model, "run_id": run.run_id, "k": len(centroids), "path": path, "seed": seed}
    run.catalog_rows.append(("centroids", row))


def _train_probe_step(pool: list[str], seed: int) -> ProbeStage:
    """A linear probe over the labelled rows' vectors (at least 2 classes): all of them up
    to PROBE_ROWS, else a seeded sample of PROBE_ROWS (a linear probe on 384 dimensions
    gains nothing from millions of rows, and its full-batch training holds them all)."""
    table, y, classes = runtime.labelled_sample(pool, PROBE_ROWS, seed)
    x = normalize(arrow_to_vectors(table.column("vector")))
    return ProbeStage.from_probe(train_probe(x, y, len(classes), seed=seed))


def kept_vectors(store: Store, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Ids and unit vectors of the items no dedup or filter dropped, in store order."""
    parts = list(vstore.iter_embeddings(store, model, skip_ids=queries.excluded_ids(store)))
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    return np.concatenate([p[0] for p in parts]), normalize(np.concatenate([p[1] for p in parts]))


def _saved_centroids(store: Store, model: str) -> np.ndarray | None:
    path = queries.latest_centroids(store, model)
    return np.load(store.root / path) if path else None


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
