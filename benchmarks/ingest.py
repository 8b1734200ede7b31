"""Ingest throughput and peak memory against a plain pyarrow Parquet copy, same data, same run.

    python benchmarks/ingest.py [--rows 1000000] [--dim 384] [--workdir DIR]

Writes a Parquet file of `rows` rows (int64 id, text, `dim`-float embedding),
then runs, each in a fresh process so peak memory (max RSS) is its own:

- baseline: pyarrow.dataset scan of the file -> ParquetWriter (zstd), batch by batch;
- thresher: `thresher ingest STORE FILE --id-column id --text-column text
  --embedding-column emb` (validation, ids, rejects, catalog commit included).

Prints one table: seconds, rows/s, time ratio to the baseline, peak RSS.
Targets (issue 2): ratio <= 2.0, thresher peak RSS < 1.5 GiB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

WORDS = np.array(
    [
        "data",
        "curation",
        "prune",
        "select",
        "dedup",
        "score",
        "cluster",
        "vector",
        "text",
        "model",
        "train",
        "batch",
        "shard",
        "store",
        "query",
        "index",
        "label",
        "sample",
        "weight",
        "token",
    ]
)


def make_source(path: Path, rows: int, dim: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    schema = pa.schema(
        [("id", pa.int64()), ("text", pa.string()), ("emb", pa.list_(pa.float32(), dim))]
    )
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            words = WORDS[rng.integers(0, len(WORDS), size=(n, 10))]
            text = [" ".join(w) for w in words]
            vec = rng.standard_normal((n, dim), dtype=np.float32)
            emb = pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), dim)
            writer.write_table(
                pa.table(
                    {"id": np.arange(start, start + n), "text": text, "emb": emb}, schema=schema
                )
            )


def child_baseline(src: str, out: str) -> None:
    import pyarrow.dataset as ds

    dataset = ds.dataset(src, format="parquet")
    with pq.ParquetWriter(out, dataset.schema, compression="zstd") as writer:
        for batch in dataset.to_batches(batch_size=65_536):
            writer.write_batch(batch)


def child_thresher(src: str, store: str) -> None:
    from thresher.flows.cli import cli

    cli.main(["init", store], standalone_mode=False)
    cli.main(
        [
            "ingest",
            store,
            src,
            "--id-column",
            "id",
            "--text-column",
            "text",
            "--embedding-column",
            "emb",
            "--quiet",
        ],
        standalone_mode=False,
    )


def run_child(which: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", which, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        import resource

        which, *rest = args.child
        t0 = time.perf_counter()
        {"baseline": child_baseline, "thresher": child_thresher}[which](*rest)
        seconds = time.perf_counter() - t0
        rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(json.dumps({"seconds": seconds, "rss_gib": rss_gib}))
        return

    work = Path(args.workdir or tempfile.mkdtemp(prefix="thresher-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "source.parquet"
    if not src.exists() or pq.ParquetFile(src).metadata.num_rows != args.rows:
        print(f"writing {args.rows:,} rows x {args.dim} floats to {src} ...", file=sys.stderr)
        make_source(src, args.rows, args.dim)
    size_gib = src.stat().st_size / 2**30
    shutil.rmtree(work / "store", ignore_errors=True)
    (work / "copy.parquet").unlink(missing_ok=True)

    base = run_child("baseline", str(src), str(work / "copy.parquet"))
    ours = run_child("thresher", str(src), str(work / "store"))
    print(
        f"\ningest benchmark: {args.rows:,} rows (int64 id, text, {args.dim}-float embedding), "
        f"source {size_gib:.2f} GiB Parquet\n"
    )
    print(
        f"| {'method':<34} | {'seconds':>8} | {'rows/s':>10} | {'time ratio':>10} | "
        f"{'peak RSS GiB':>12} |"
    )
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 12}|{'-' * 12}|{'-' * 14}|")
    for name, r in [("pyarrow dataset -> Parquet (zstd)", base), ("thresher ingest", ours)]:
        print(
            f"| {name:<34} | {r['seconds']:>8.2f} | {args.rows / r['seconds']:>10,.0f} | "
            f"{r['seconds'] / base['seconds']:>10.2f} | {r['rss_gib']:>12.2f} |"
        )
    ratio = ours["seconds"] / base["seconds"]
    print(
        f"\ntargets: time ratio <= 2.0 -> {ratio:.2f} ({'met' if ratio <= 2 else 'MISSED'}); "
        f"peak RSS < 1.5 GiB -> {ours['rss_gib']:.2f} "
        f"({'met' if ours['rss_gib'] < 1.5 else 'MISSED'})"
    )
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
