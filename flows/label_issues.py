"""Wiring of the `label_issue` metric (confident learning, Northcutt et al. 2021).

One Ray task samples at most PROBE_ROWS labelled kept items, fits the fold
probes (`scoring.confident`) and writes the sampled items' out-of-fold
`label_issue` (1 - p(given label)) and `label_issue_flag` (1 where the
confident joint puts the item off its label's diagonal); Ray workers then
score every other labelled item with the mean of the fold probes, which none
of them trained on. The pass is global (every label moves the probes), so it
reruns over all labelled items when one has no score or labels were given
since, and is skipped otherwise.
"""

from __future__ import annotations

import numpy as np

from thresher.flows import runtime
from thresher.flows.runtime import Progress
from thresher.scoring.confident import (
    LabelIssueStage,
    class_thresholds,
    confident_issues,
    fit_out_of_fold,
    label_issue,
)
from thresher.scoring.matryoshka import normalize
from thresher.storage import queries, score_queries
from thresher.storage.ray_adapter import run_task
from thresher.storage.stage import arrow_to_vectors
from thresher.storage.store import Run, write_rows

METRICS = ("label_issue", "label_issue_flag")
PROBE_ROWS = 200_000  # labelled rows the fold probes train on, at most (as score's probe)


def score_label_issues(run: Run, model: str, seed: int, on_progress: Progress = None) -> int:
    """Score every labelled kept item with a `model` vector in `run`; the items scored
    (0 when they are up to date)."""
    store, column = run.store, queries.label_column(run.store)
    if not score_queries.label_issues_stale(store, model, column):
        return 0
    pool = runtime.stage(run, "score-labelled", score_queries.label_issue_pool(model, column))
    out = run.reserve("scores")
    stage: LabelIssueStage = run_task(
        _fit_step, pool.paths, seed, run.run_id, str(out), rows=pool.rows
    )
    scored = run.adopt("scores", out) // len(METRICS)
    writer = run.writer("scores")
    for batch in runtime.stream(stage, pool, on_progress=on_progress):
        ids = batch.column("item_id")
        for metric in METRICS:
            writer.append(item_id=ids, metric=metric, value=batch.column(metric))
        scored += batch.num_rows
    writer.close()
    return scored


def _fit_step(pool: list[str], seed: int, run_id: int, out_path: str) -> LabelIssueStage:
    """Fit the fold probes on a sample of the pool, write its out-of-fold scores to
    `out_path`, and hand back the stage that scores the rest."""
    table, y, classes = runtime.labelled_sample(pool, PROBE_ROWS, seed)
    x = normalize(arrow_to_vectors(table.column("vector")))
    probs, probes = fit_out_of_fold(x, y, len(classes), seed=seed)
    thresholds = class_thresholds(probs, y)
    ids = table.column("item_id").to_numpy()
    values = np.concatenate([label_issue(probs, y), confident_issues(probs, y, thresholds)])
    write_rows(
        out_path,
        "scores",
        run_id,
        item_id=np.concatenate([ids, ids]),
        metric=np.repeat(np.array(METRICS), len(ids)),
        value=values.astype(np.float64),
    )
    return LabelIssueStage(probes, classes, thresholds, skip=ids)
