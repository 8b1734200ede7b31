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
