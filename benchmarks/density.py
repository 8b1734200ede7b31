"""kNN density without all pairs: agreement with the exact all-pairs score, and speed.

    python benchmarks/density.py [--rows 100000] [--cache bench-stages]

On the stage benchmark's corpus (PyPI summaries with planted copies, hashed
character-3-gram vectors, 384-d; built by `benchmarks/stages.py` and cached),
`thresher score --metrics density` (search within clusters, each row in its 3
nearest clusters) against the exact search it replaced (FAISS flat inner
product over every kept item, `scoring.prototypes.knn_distance`), same vectors,
same run. Target (issue): Spearman >= 0.95 at 100k items.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from stages import corpus

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def ranks(v: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(v, kind="stable"), kind="stable").astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--cache", type=Path, default=Path("bench-stages"))
    args = ap.parse_args()

    from thresher.flows.score import score
    from thresher.scoring.matryoshka import normalize
    from thresher.scoring.prototypes import knn_distance
    from thresher.storage.ingest import IngestConfig, ingest
    from thresher.storage.stage import arrow_to_vectors
    from thresher.storage.store import Store

    files = corpus(args.rows, args.cache)
    with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
        store = Store.init(Path(tmp) / "store")
        ingest(
            store, [str(f) for f in files], IngestConfig(id_column="id", embedding_column="vector")
        )
        t0 = time.perf_counter()
        score(store, metrics=["density"])
        t_part = time.perf_counter() - t0
        got = store.query(
            "SELECT s.item_id, s.value, e.vector FROM scores s JOIN embeddings e USING (item_id) "
            "WHERE s.metric = 'knn_distance' ORDER BY s.item_id"
        )
    x = normalize(arrow_to_vectors(got.column("vector")))
    approx = got.column("value").to_numpy()
    t0 = time.perf_counter()
    exact = knn_distance(x)
    t_exact = time.perf_counter() - t0
    spearman = float(np.corrcoef(ranks(exact), ranks(approx))[0, 1])
    same = float(np.mean(np.abs(approx - exact) < 1e-5))
    print(f"density: {len(x):,} items, {x.shape[1]}-d, k = 10, {os.cpu_count()} CPUs\n")
    print("| method                              | seconds | vs exact | Spearman | equal |")
    print("|-------------------------------------|---------|----------|----------|-------|")
    print(f"| exact all pairs (FAISS flat)        | {t_exact:7.1f} |     1.00 |   1.0000 | 1.000 |")
    print(
        f"| within clusters (thresher score)    | {t_part:7.1f} | {t_exact / t_part:8.2f} "
        f"| {spearman:8.4f} | {same:5.3f} |"
    )
    print(
        f"\ntarget: Spearman >= 0.95 -> {spearman:.4f} ({'met' if spearman >= 0.95 else 'MISSED'})"
    )
    print("'equal': share of items whose distance is the exact one (within 1e-5)")


if __name__ == "__main__":
    main()
