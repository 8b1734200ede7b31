"""kNN density without all pairs: agreement with the exact all-pairs score, and speed.

    python benchmarks/density.py [--rows 100000] [--probes 3,5] [--most 16384]
        [--sample Q] [--cache bench-stages]
    python benchmarks/density.py --store DIR [--model vector] [--sample 2000]

On the stage benchmark's corpus (PyPI summaries with planted copies, hashed
character-3-gram vectors, 384-d; built by `benchmarks/stages.py` and cached),
`thresher score --metrics density` (search within clusters, each row in its
nearest clusters; 3 and 5 probes) against the exact search it replaced (FAISS flat inner
product over every kept item, `scoring.prototypes.knn_distance`), same vectors,
same run. Target (issue): Spearman >= 0.95 at 100k items. `--sample Q`: the exact
search for Q random items only, among all (at 1M and beyond). `--store DIR`: the
agreement of a store's own `knn_distance` scores (e.g. a kept `scale.py` store at 10M)
with an exact search of Q random scored items among every scored item, streamed.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
    ap.add_argument("--probes", type=ints, default=[3, 5])
    ap.add_argument("--most", type=ints, default=None, help="cluster bounds (default: MOST)")
    ap.add_argument(
        "--sample", type=int, default=0, help="exact search for this many random items only"
    )
    ap.add_argument("--store", type=Path, help="measure this store's knn_distance scores")
    ap.add_argument("--model", default="vector", help="the --store's embedding model")
    args = ap.parse_args()
    if args.store:
        return stored_agreement(args.store, args.model, args.sample or 2000)

    from thresher.flows import density
    from thresher.flows.embed import IndexConfig, update_index
    from thresher.flows.score import score
    from thresher.scoring.matryoshka import normalize
    from thresher.scoring.prototypes import knn_distance
    from thresher.storage.ingest import IngestConfig, ingest
    from thresher.storage.stage import arrow_to_vectors
    from thresher.storage.store import Store

    files = corpus(args.rows, args.cache)
    default_probes, default_most = density.PROBES, density.MOST
    rows, got = [], {}
    with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
        base = Path(tmp) / "base"
        store = Store.init(base)
        ingest(
            store, [str(f) for f in files], IngestConfig(id_column="id", embedding_column="vector")
        )
        t0 = time.perf_counter()
        update_index(store, "vector", IndexConfig())  # once per model; embed builds it
        t_index = time.perf_counter() - t0
        vectors = store.query(
            "SELECT vector FROM embeddings WHERE model = 'vector' ORDER BY item_id"
        ).column(0)
        x = normalize(arrow_to_vectors(vectors))
        del vectors
        for probes in args.probes:
            for most in args.most or [default_most]:
                copy = Path(tmp) / f"p{probes}-m{most}"
                shutil.copytree(base, copy)
                density.PROBES, density.MOST = probes, most
                t0 = time.perf_counter()
                score(Store.init(copy), metrics=["density"])
                rows.append((probes, most, time.perf_counter() - t0))
                got[probes, most] = (
                    Store(copy)
                    .query("SELECT value FROM scores ORDER BY item_id")
                    .column(0)
                    .to_numpy()
                )
                shutil.rmtree(copy)
    asked = np.arange(len(x))
    if 0 < args.sample < len(x):
        asked = np.sort(np.random.default_rng(0).choice(len(x), args.sample, replace=False))
    t0 = time.perf_counter()
    exact = kth_exact(x, asked) if len(asked) < len(x) else knn_distance(x)
    t_exact = time.perf_counter() - t0
    print(f"density: {len(x):,} items, {x.shape[1]}-d, k = 10, {os.cpu_count()} CPUs")
    print(f"(the model's index, built once per model and shared with search: {t_index:.1f} s)")
    if len(asked) < len(x):
        print(
            f"(agreement on {len(asked):,} random items, each searched exactly among all "
            f"{len(x):,}; 'exact' seconds are for those items only)"
        )
    head = ["method", "seconds", "vs exact", "Spearman", "equal"]
    table = [["exact all pairs (FAISS flat)", f"{t_exact:.1f}", "1.00", "1.0000", "1.000"]]
    best = 0.0
    for probes, most, seconds in rows:
        approx = got[probes, most][asked]
        spearman = float(np.corrcoef(ranks(exact), ranks(approx))[0, 1])
        same = float(np.mean(np.abs(approx - exact) < 1e-5))
        if (probes, most) == (default_probes, default_most):
            best = spearman
        table.append(
            [
                f"within clusters, {probes} probes, most {most:,} (score)",
                f"{seconds:.1f}",
                f"{t_exact / seconds:.2f}" if len(asked) == len(x) else "-",
                f"{spearman:.4f}",
                f"{same:.3f}",
            ]
        )
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *table]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    verdict = "met" if best >= 0.95 else "MISSED"
    print(
        f"\ntarget: Spearman >= 0.95 at the default {default_probes} probes, most "
        f"{default_most:,} -> {best:.4f} ({verdict})"
    )
    print("'equal': share of items whose distance is the exact one (within 1e-5)")


def stored_agreement(root: Path, model: str, sample: int, k: int = 10) -> None:
    """Spearman of a store's `knn_distance` against the exact k-th distance of `sample`
    random scored items among every scored item (one streamed pass over the vectors)."""
    import pyarrow as pa

    from thresher.scoring.matryoshka import normalize
    from thresher.storage.stage import arrow_to_vectors
    from thresher.storage.store import Store

    store = Store(root)
    got = store.query(
        "SELECT item_id, value FROM scores WHERE metric = 'knn_distance' ORDER BY item_id"
    )
    ids, values = got.column(0).to_numpy(), got.column(1).to_numpy()
    pick = np.sort(np.random.default_rng(0).choice(len(ids), min(sample, len(ids)), False))
    asked = pa.table({"item_id": ids[pick]})
    q = store.query(
        "SELECT e.vector FROM embeddings e JOIN asked USING (item_id) "
        "WHERE e.model = ? ORDER BY e.item_id",
        [model],
        tables={"asked": asked},
    )
    queries = normalize(arrow_to_vectors(q.column(0)))
    top = np.full((len(queries), k + 1), -np.inf, np.float32)  # best sims so far
    t0, seen = time.perf_counter(), 0
    sql = (
        "SELECT e.vector FROM embeddings e SEMI JOIN "
        "(SELECT item_id FROM scores WHERE metric = 'knn_distance') s USING (item_id) "
        "WHERE e.model = ?"
    )
    with store.stream(sql, [model], batch_rows=16_384) as reader:
        for batch in reader:
            sims = queries @ normalize(arrow_to_vectors(batch.column(0))).T
            both = np.concatenate([top, sims], axis=1)
            top = -np.partition(-both, k, axis=1)[:, : k + 1]
            seen += batch.num_rows
    best = np.sort(top, axis=1)[:, ::-1]  # the first hit is the item
    exact = 1.0 - best[:, k]
    approx = values[pick]
    spearman = float(np.corrcoef(ranks(exact), ranks(approx))[0, 1])
    same = float(np.mean(np.abs(approx - exact) < 1e-5))
    print(
        f"density in {root}: {len(ids):,} scored items, {len(pick):,} searched exactly among "
        f"{seen:,} ({time.perf_counter() - t0:.0f} s): Spearman {spearman:.4f}, "
        f"equal {same:.3f}, never nearer than the truth: {bool((approx >= exact - 1e-5).all())}"
    )
    # how the score depends on recall: a flat profile (tight families of near copies, then
    # a gap) makes a missed neighbour costly; one falling gradually hides it
    profile = " ".join(f"{v:.3f}" for v in np.median(best[:, 1:], axis=0))
    print(f"exact similarity of the 1st..{k}th neighbour (medians): {profile}")
    print(f"median exact distance {np.median(exact):.3f}, stored {np.median(approx):.3f}")


def ints(v: str) -> list[int]:
    return [int(x) for x in v.split(",")]


def kth_exact(x: np.ndarray, asked: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact distance of the `asked` rows of `x` to their k-th nearest other row."""
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(x, dtype=np.float32))
    sims, _ = index.search(np.ascontiguousarray(x[asked], dtype=np.float32), k + 1)
    return 1.0 - sims[:, k]


if __name__ == "__main__":
    main()
