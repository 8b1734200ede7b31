"""The real corpus for benchmarks: PyPI summaries from ../shared/data, embedded once and cached."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

SUMMARIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "pypi_summaries.parquet"


def summaries(n: int, offset: int = 0) -> list[str]:
    """`n` distinct non-empty summaries, in file order, from row `offset` on."""
    if not SUMMARIES.exists():
        sys.exit(f"benchmark data not found: {SUMMARIES}")
    col = pq.read_table(SUMMARIES, columns=["summary"]).column("summary")
    col = pc.drop_null(col)
    texts = [t for t in dict.fromkeys(col.to_pylist()) if t.strip()]
    return texts[offset : offset + n]


def embedded_summaries(n: int, cache: Path, int8: bool = False) -> tuple[list[str], np.ndarray]:
    """The first `n` summaries and their MiniLM vectors (cached as .npy under `cache`)."""
    from thresher.scoring.embedders import EmbedderConfig, TextEmbedder

    texts = summaries(n)
    path = cache / f"minilm{'-int8' if int8 else ''}-{n}.npy"
    if path.exists():
        return texts, np.load(path)
    cache.mkdir(parents=True, exist_ok=True)
    embedder = TextEmbedder(EmbedderConfig(int8=int8, batch_size=128))
    out = []
    t0 = time.perf_counter()
    for i in range(0, n, 10_000):
        out.append(embedder.encode(texts[i : i + 10_000]))
        rate = (i + len(out[-1])) / (time.perf_counter() - t0)
        print(f"embedded {i + len(out[-1]):,}/{n:,} ({rate:.0f} texts/s)", file=sys.stderr)
    vectors = np.concatenate(out)
    np.save(path, vectors)
    return texts, vectors


if __name__ == "__main__":
    embedded_summaries(int(sys.argv[1]), Path(sys.argv[2]))


def labelled_sample(
    n: int, cache: Path, seed: int = 0, embed: bool = True
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A seeded random sample of `n` labelled summaries across all 29 families (the
    labelled rows are in family blocks, so a prefix would hold a few): (texts, family
    names, MiniLM vectors, cached as .npy under `cache`; empty unless `embed`)."""
    from thresher.scoring.embedders import EmbedderConfig, TextEmbedder

    t = pq.read_table(SUMMARIES, columns=["summary", "family"])
    t = t.filter(pc.and_(pc.is_valid(t.column("family")), pc.is_valid(t.column("summary"))))
    pick = np.sort(np.random.default_rng(seed).choice(t.num_rows, min(n, t.num_rows), False))
    t = t.take(pick)
    texts, families = t.column(0).to_pylist(), np.asarray(t.column(1).to_pylist())
    path = cache / f"labelled-sample-{n}-{seed}.npy"
    if not embed:
        return texts, families, np.zeros((0, 0), np.float32)
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        vectors = TextEmbedder(EmbedderConfig(batch_size=128)).encode(texts)
        print(
            f"embedded {n} labelled summaries in {time.perf_counter() - t0:.0f} s", file=sys.stderr
        )
        np.save(path, vectors)
    return texts, families, np.load(path)
