"""thresher decontaminate: items sharing word n-grams with eval files, into `contamination`.

Each eval file's n-gram hashes are computed once and saved in `eval_ngrams` under
its content fingerprint (a rerun reads them back). A batch is checked once per
eval file and n: its `stages` row (stage "decontaminate", key "FINGERPRINT:N
batch B") marks it done, so a rerun checks only new batches; a changed eval file
has a new fingerprint and is checked against every item.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from thresher.flows import runtime
from thresher.flows.runtime import Progress
from thresher.selection.decontam import DecontamStage, ngram_hashes
from thresher.storage import queries
from thresher.storage.errors import ThresherError
from thresher.storage.guess import text_column_for
from thresher.storage.ingest import fingerprint
from thresher.storage.store import Run, StageCounts, Store
from thresher.storage.text_files import text_chunks


@dataclass(frozen=True)
class DecontamReport:
    run_id: int | None
    checked: int  # item checks, summed over eval files
    contaminated: dict[str, int]  # eval file -> items found this run


def eval_grams(path: Path, n: int, text_column: str | None) -> np.ndarray:
    """The sorted, distinct n-gram hashes of one eval file's texts."""
    parts = [np.empty(0, dtype=np.int64)]
    for texts in text_chunks(path, text_column, "eval file"):
        parts.extend(ngram_hashes(texts, n))
    grams = np.unique(np.concatenate(parts))
    if not len(grams):
        column = text_column or text_column_for(path)[0]
        raise ThresherError(f"{path}: no text of at least {n} words in column {column!r}")
    return grams


def decontaminate(
    store: Store,
    eval_files: list[str],
    n: int = 13,
    text_column: str | None = None,
    on_progress: Progress = None,
) -> DecontamReport:
    """Check every batch not yet checked against each eval file; record the contaminated."""
    if n < 1:
        raise ThresherError(f"--ngram must be >= 1, got {n}")
    if not eval_files:
        raise ThresherError("no eval files given")
    files = {fingerprint(Path(f)): Path(f).absolute() for f in eval_files}
    found: dict[str, int] = {}
    checked = 0
    with store.run("decontaminate", {"eval_files": eval_files, "ngram": n}) as run:
        for fp, path in files.items():
            todo = queries.decontam_todo(store.text_column(), f"{fp}:{n}")
            if not queries.count(store, todo):
                continue
            grams = queries.eval_ngrams(store, fp, n)
            if grams is None:
                grams = eval_grams(path, n, text_column)
                run.append("eval_ngrams", fingerprint=fp, ngram=n, hash=grams)
            seen, found[str(path)] = _check(run, todo, str(path), f"{fp}:{n}", grams, n)
            checked += seen
            if on_progress:
                on_progress(len(found), len(files))
        if not checked:
            run.discard()
            return DecontamReport(None, 0, {})
        run.message = f"{sum(found.values())} contaminated items" + "".join(
            f"; {v} by {k}" for k, v in found.items()
        )
    return DecontamReport(run.run_id, checked, found)


def _check(
    run: Run, todo: queries.Query, source: str, key: str, grams: np.ndarray, n: int
) -> tuple[int, int]:
    """Stream the todo items through the stage; (items checked, items contaminated)."""
    staged = runtime.stage(run, f"decontam-{key.replace(':', '-')}", todo)
    writer = run.writer("contamination")
    per_batch: dict[int, list[int]] = {}
    for out in runtime.stream(DecontamStage(grams, n), staged):
        for b, hit in zip(
            out.column("batch_id").to_pylist(),
            pc.greater(out.column("overlap"), 0).to_pylist(),
            strict=True,
        ):
            per_batch.setdefault(b, [0, 0])[bool(hit)] += 1
        out = out.filter(pc.greater(out.column("overlap"), 0))
        writer.append(item_id=out.column("item_id"), eval_source=source, overlap=out["overlap"])
    writer.close()
    for b, (clean, dirty) in sorted(per_batch.items()):
        run.record(StageCounts("decontaminate", f"{key} batch {b}", clean + dirty, clean, dirty))
    return sum(map(sum, per_batch.values())), sum(d for _, d in per_batch.values())
