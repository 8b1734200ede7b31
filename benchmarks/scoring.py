"""k-means + assignment against scikit-learn; the nearest-centroid paths against torch matmul+topk.

    pip install -e '.[bench]'
    python benchmarks/scoring.py [--n 500000] [--k 100] [--cache DIR]

Data: `n` x 384 unit vectors. The first 200,000 are real MiniLM embeddings of
PyPI summaries (the retrieval benchmark's cache); the rest are those vectors
again with Gaussian noise (sigma 0.02 per dimension) added and renormalized,
so the cluster structure stays realistic at 500k.

Table 1: thresher's spherical k-means (FAISS, at most 256 points per centroid)
plus assignment of every row (the nearest-centroid dispatch) against
scikit-learn's MiniBatchKMeans fit + predict, same k and data; quality as the
k-means objective of each partition (sum of squared distances to the cluster
means), ratio to scikit-learn's. Target: >= 3x faster, objective within 2%.

Table 2: assigning all rows to k centroids, rows/s: the torch CPU path
(chunked), the FAISS path, and plain torch matmul + topk over the full (n, k)
matrix. The Triton kernel on a GPU has its own benchmark, kernel.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import embedded_summaries

from thresher.kernels.dispatch import nearest_centroid
from thresher.scoring.prototypes import prototype_scores, spherical_kmeans


def data(n: int, cache: Path) -> np.ndarray:
    _, real = embedded_summaries(200_000, cache)
    rng = np.random.default_rng(0)
    reps = [real]
    while sum(len(r) for r in reps) < n:
        noisy = real + rng.standard_normal(real.shape, dtype=np.float32) * 0.02
        reps.append(noisy / np.linalg.norm(noisy, axis=1, keepdims=True))
    return np.ascontiguousarray(np.concatenate(reps)[:n], dtype=np.float32)


def objective(x: np.ndarray, labels: np.ndarray, k: int) -> float:
    sums = np.zeros((k, x.shape[1]), np.float64)
    np.add.at(sums, labels, x)
    counts = np.bincount(labels, minlength=k)[:, None]
    means = sums / np.maximum(counts, 1)
    return float((x.astype(np.float64) ** 2).sum() - (counts * means**2).sum())


def kmeans_table(x: np.ndarray, k: int) -> list[str]:
    from sklearn.cluster import MiniBatchKMeans

    t0 = time.perf_counter()
    centroids = spherical_kmeans(x, k, seed=0)
    ours_labels, _, _ = prototype_scores(x, centroids)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    mbk = MiniBatchKMeans(n_clusters=k, batch_size=4096, n_init=1, random_state=0)
    sk_labels = mbk.fit(x).predict(x)
    t_sk = time.perf_counter() - t0
    j_ours, j_sk = objective(x, ours_labels, k), objective(x, sk_labels, k)
    return [
        f"| {'method':<44} | {'seconds':>7} | {'speedup':>7} | {'objective':>10} | "
        f"{'vs sklearn':>10} |",
        f"|{'-' * 46}|{'-' * 9}|{'-' * 9}|{'-' * 12}|{'-' * 12}|",
        f"| {'scikit-learn MiniBatchKMeans fit + predict':<44} | {t_sk:>7.1f} | {1.0:>7.2f} | "
        f"{j_sk:>10,.0f} | {1.0:>10.4f} |",
        f"| {'thresher spherical k-means + assignment':<44} | {t_ours:>7.1f} | "
        f"{t_sk / t_ours:>7.2f} | {j_ours:>10,.0f} | {j_ours / j_sk:>10.4f} |",
    ]


def assign_table(x: np.ndarray, k: int) -> list[str]:
    c = spherical_kmeans(x[:50_000], k, seed=1)
    xt, ct = torch.from_numpy(x), torch.from_numpy(c)

    def plain() -> None:
        (xt @ ct.T).topk(2, dim=1)

    runs = [
        ("torch matmul + topk, full (n, k) matrix", plain),
        ("thresher dispatch, torch CPU path", lambda: nearest_centroid(x, c, backend="torch")),
        ("thresher dispatch, FAISS path", lambda: nearest_centroid(x, c, backend="faiss")),
        (
            "thresher dispatch, torch path, 128-dim prefix",
            lambda: nearest_centroid(x, c, m=128, backend="torch"),
        ),
    ]
    rows = [
        f"| {'path':<46} | {'rows/s':>12} | {'vs plain torch':>14} |",
        f"|{'-' * 48}|{'-' * 14}|{'-' * 16}|",
    ]
    base = None
    for name, fn in runs:
        best = min(_time(fn) for _ in range(3))
        rate = len(x) / best
        base = base or rate
        rows.append(f"| {name:<46} | {rate:>12,.0f} | {rate / base:>14.2f} |")
    rows.append("(CPU paths; the Triton kernel on CUDA: python benchmarks/kernel.py)")
    return rows


def _time(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/thresher-bench-cache"))
    args = parser.parse_args()
    x = data(args.n, args.cache)
    print(
        f"\nk-means, k={args.k}, {len(x):,} x {x.shape[1]} unit vectors, "
        f"{torch.get_num_threads()} threads\n",
        flush=True,
    )
    print("\n".join(kmeans_table(x, args.k)), flush=True)
    print(f"\nnearest centroid, k={args.k}, {len(x):,} rows\n")
    print("\n".join(assign_table(x, args.k)))


if __name__ == "__main__":
    main()
