"""Wiring of the dedup stage: items from the store -> Ray -> `duplicates` rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from thresher.selection.exact import ContentHash, exact_duplicates
from thresher.storage.ray_adapter import run_stage
from thresher.storage.store import StageCounts, Store


@dataclass(frozen=True)
class DedupReport:
    run_id: int
    method: str
    items: int
    duplicates: int
    new_duplicates: int


def dedup_exact(store: Store, on_progress: Callable[[int, int], None] | None = None) -> DedupReport:
    """Mark exact duplicates (normalized-text hash); rerunning adds nothing new."""
    text = store.text_column()
    files = store.item_files(text)
    ids, hashes = [], []
    for out in run_stage(
        ContentHash(text), files, columns=["item_id", text], on_progress=on_progress
    ):
        ids.append(out.column("item_id").to_numpy())
        hashes.append(out.column("content_hash").to_numpy())
    item_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    dup, kept = exact_duplicates(np.concatenate(hashes) if hashes else np.zeros(0, np.int64))
    known = store.duplicate_ids("exact")
    new = np.array([item_ids[d] not in known for d in dup], dtype=bool)
    with store.run("dedup", {"method": "exact", "text_column": text}) as run:
        run.write_table(
            "duplicates",
            pa.table(
                {
                    "item_id": pa.array(item_ids[dup[new]], pa.int64()),
                    "kept_id": pa.array(item_ids[kept[new]], pa.int64()),
                    "method": pa.array(["exact"] * int(new.sum()), pa.string()),
                    "similarity": pa.array(np.ones(int(new.sum())), pa.float64()),
                    "run_id": pa.array(np.full(int(new.sum()), run.run_id), pa.int64()),
                }
            ),
        )
        run.record(
            StageCounts("dedup_exact", "", len(item_ids), len(item_ids) - len(dup), len(dup), 0)
        )
        run.message = f"{len(dup)} exact duplicates ({int(new.sum())} new)"
    return DedupReport(run.run_id, "exact", len(item_ids), len(dup), int(new.sum()))
