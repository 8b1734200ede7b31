"""Trainer feed throughput against a raw pyarrow scan and Hugging Face datasets, same run.

    python benchmarks/feed.py [--rows 500000] [--dim 128] [--batch 1024] [--repeat 3]

Writes `rows` rows (int64 item_id, int64 label, float64 weight, `dim` float32
vector, a short text) as 4 Parquet files (row groups of 65,536 rows), then
times one full pass over the columns a trainer reads (item_id, label, weight,
vector; and, in the last rows, text too), best of `--repeat`:

- raw scan: `pyarrow.dataset(...).to_batches(columns=..., batch_size=B)`,
  Arrow record batches only, no tensors (the floor for reading these files);
- datasets: `datasets.Dataset` over the same Arrow table (in memory, so its
  read is free) with `with_format("torch")`, `.iter(batch_size=B)`;
- thresher: `SelectionFeed` through `DataLoader(batch_size=None)`: tensors,
  weights as float32, without and with a shuffle buffer, 0 and 2 workers.

Prints rows/s and ratios. Targets (issue 7): feed >= 0.8x the raw scan and
>= 2x datasets.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from thresher.storage.feed import SelectionFeed

COLUMNS = ["item_id", "label", "weight", "vector"]


def make_files(folder: Path, rows: int, dim: int) -> list[Path]:
    rng = np.random.default_rng(0)
    files = []
    per = -(-rows // 4)
    for i, lo in enumerate(range(0, rows, per)):
        n = min(per, rows - lo)
        vectors = rng.standard_normal((n, dim), dtype=np.float32)
        table = pa.table(
            {
                "item_id": np.arange(lo, lo + n, dtype=np.int64),
                "label": rng.integers(0, 10, n),
                "weight": rng.uniform(1, 20, n),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
                "text": [f"an example sentence number {j} about curation" for j in range(n)],
            }
        )
        path = folder / f"part-{i}.parquet"
        pq.write_table(table, path, row_group_size=65_536)
        files.append(path)
    return files


def best(fn, repeat: int) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = fn()
        times.append(time.perf_counter() - t0)
    return min(times), rows


def raw_scan(files: list[Path], columns: list[str], batch: int) -> int:
    ds = pads.dataset([str(f) for f in files], format="parquet")
    return sum(b.num_rows for b in ds.to_batches(columns=columns, batch_size=batch))


def hf_iter(hf, batch: int) -> int:
    rows = 0
    for b in hf.iter(batch_size=batch):
        rows += len(b["item_id"])
    return rows


def feed_iter(files: list[Path], columns: list[str], batch: int, shuffle: int, workers: int):
    def run() -> int:
        feed = SelectionFeed(files, columns=columns, batch_size=batch, shuffle_buffer=shuffle)
        return sum(len(b["item_id"]) for b in feed.loader(num_workers=workers))

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import datasets
    from datasets.table import InMemoryTable

    with tempfile.TemporaryDirectory(prefix="thresher-feed-") as tmp:
        files = make_files(Path(tmp), args.rows, args.dim)
        readers: list[tuple[str, str, object]] = []
        for columns, tag in ((COLUMNS, "numeric"), ([*COLUMNS, "text"], "+text")):
            readers.append(
                (
                    tag,
                    "raw pyarrow scan (baseline)",
                    lambda c=columns: raw_scan(files, c, args.batch),
                )
            )
            table = pa.concat_tables(pq.read_table(f, columns=columns) for f in files)
            hf = datasets.Dataset(InMemoryTable(table)).with_format("torch")
            readers.append((tag, "datasets (torch format)", lambda h=hf: hf_iter(h, args.batch)))
            for shuffle, workers in ((0, 0), (65_536, 0), (0, 2), (65_536, 2)):
                label = f"thresher feed, shuffle {shuffle or 'off'}, {workers} workers"
                readers.append(
                    (tag, label, feed_iter(files, columns, args.batch, shuffle, workers))
                )
        raw_scan(files, [*COLUMNS, "text"], args.batch)  # warm the page cache
        # rounds: every reader once per round, best round kept (the machine is noisy)
        times: dict[str, list[float]] = {}
        counts: dict[str, int] = {}
        for _ in range(args.repeat):
            for tag, label, fn in readers:
                t, n = best(fn, 1)
                times.setdefault(tag + label, []).append(t)
                counts[tag + label] = n
        results = [
            (tag, label, min(times[tag + label]), counts[tag + label]) for tag, label, _ in readers
        ]

    print(
        f"\n{args.rows:,} rows, dim {args.dim}, batch {args.batch}, best of {args.repeat} rounds\n"
    )
    print("| columns | reader | rows/s | vs raw scan | vs datasets |")
    print("|---|---|---:|---:|---:|")
    for tag in ("numeric", "+text"):
        mine = [r for r in results if r[0] == tag]
        raw = next(r for r in mine if r[1].startswith("raw"))
        hf = next(r for r in mine if r[1].startswith("datasets"))
        for _, label, t, n in mine:
            assert n == args.rows, (label, n)
            print(f"| {tag} | {label} | {n / t:,.0f} | {raw[2] / t:.2f}x | {hf[2] / t:.2f}x |")


if __name__ == "__main__":
    main()
