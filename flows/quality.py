"""Wiring of the `quality` metric: a probe of a reference set against the store.

One Ray task embeds the reference file's texts (at most REFERENCE_ROWS, a
seeded sample) with the encoder the store's vectors came from, samples as
many kept vectors, and fits the probe (`scoring.quality`); Ray workers then
score the kept items. The probe is saved in the store under the reference's
key (file content, text column, seed, model), so a rerun with the same
reference scores only new items against it; another reference (or `--refit`)
fits a new probe and rescores every kept item.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from thresher.flows import runtime
from thresher.flows.runtime import Progress
from thresher.scoring.embedders import EmbedderConfig, TextEmbedder
from thresher.scoring.quality import REFERENCE_ROWS, QualityStage, fit_quality_probe
from thresher.storage import queries, score_queries
from thresher.storage import vectors as vstore
from thresher.storage.errors import ThresherError
from thresher.storage.ingest import fingerprint
from thresher.storage.ray_adapter import run_task
from thresher.storage.stage import arrow_to_vectors
from thresher.storage.store import Run, Store
from thresher.storage.text_files import text_chunks


def reference_key(store: Store, model: str, reference: str, column: str | None, seed: int) -> str:
    """What identifies a fitted probe; checks the file (exists, not empty, has the column)
    and the model (made by an encoder) first."""
    if queries.encoder(store, model) is None:
        raise ThresherError(
            f"model {model!r} holds ingested vectors: quality needs the encoder they came "
            "from to embed the reference texts"
        )
    path = Path(reference)
    next(text_chunks(path, column, "reference file"), None)  # the checks, on its first chunk
    key = f"{fingerprint(path)}:{column}:{seed}:{model}"
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def last_key(store: Store) -> str | None:
    """The reference key of the latest quality scores."""
    rows = store.query(
        "SELECT config->>'quality_key' FROM runs WHERE flow = 'score' AND run_id = "
        "(SELECT max(run_id) FROM scores WHERE metric = 'quality')"
    )
    return rows.column(0)[0].as_py() if rows.num_rows else None


def score_quality(
    run: Run,
    model: str,
    reference: str,
    column: str | None,
    key: str,
    *,
    seed: int,
    refit: bool,
    on_progress: Progress = None,
) -> int:
    """Score the kept items with a `model` vector that need it in `run`; the items scored."""
    store = run.store
    rescore = refit or last_key(store) != key
    todo = runtime.stage(run, "score-quality", score_queries.quality_todo(model, rescore))
    if not todo.rows:
        return 0
    saved = store.root / f"probes/quality-{vstore.safe_name(model)}-{key}.npz"
    if saved.exists() and not refit:
        with np.load(saved) as probe:
            weight, bias = probe["weight"], probe["bias"]
    else:
        kept = runtime.stage(run, "score-quality-kept", queries.kept_vectors(model))
        texts = reference_texts(Path(reference), column, seed)
        encoder = queries.encoder(store, model)
        weight, bias = run_task(_fit_step, texts, encoder, kept.paths, seed, rows=kept.rows)
        with open(run.stage_path(str(saved.relative_to(store.root))), "wb") as fh:
            np.savez(fh, weight=weight, bias=bias)
    writer = run.writer("scores")
    for batch in runtime.stream(QualityStage(weight, bias), todo, on_progress=on_progress):
        writer.append(item_id=batch.column("item_id"), metric="quality", value=batch["quality"])
    writer.close()
    return todo.rows


def reference_texts(path: Path, column: str | None, seed: int) -> list[str]:
    """The reference file's non-blank texts, a seeded sample of REFERENCE_ROWS when it
    has more (reservoir sampling, so the file is read once, in chunks)."""
    rng = np.random.default_rng(seed)
    kept: list[str] = []
    seen = 0
    for chunk in text_chunks(path, column, "reference file"):
        for text in chunk.to_pylist():
            if not text or not text.strip():
                continue
            seen += 1
            if len(kept) < REFERENCE_ROWS:
                kept.append(text)
            elif (j := int(rng.integers(seen))) < REFERENCE_ROWS:
                kept[j] = text
    if not kept:
        raise ThresherError(f"{path}: the reference file has no text")
    return kept


def _fit_step(
    texts: list[str], encoder: dict, kept: list[str], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Embed the reference texts, sample as many kept vectors, fit the probe."""
    reference = TextEmbedder(EmbedderConfig(**encoder)).encode(texts)
    sample = runtime.sample_rows(kept, REFERENCE_ROWS, seed, column="vector")
    background = arrow_to_vectors(sample.column("vector"))
    background = background / np.maximum(np.linalg.norm(background, axis=1, keepdims=True), 1e-12)
    return fit_quality_probe(reference, background, seed)
