"""Funnel retrieval over Matryoshka prefixes against exact flat search; fp32 vs int8 encoder.

    python benchmarks/retrieval.py [--n 200000] [--queries 1000] [--cache DIR]

Corpus: the first `n` distinct PyPI summaries of ../shared/data, embedded
with the default model (all-MiniLM-L6-v2, fp32; cached under --cache: the
first run embeds them, about 20 minutes on 2 cores). Queries: the next
`queries` summaries, embedded the same way.

Table 1, in one run: for plain truncation, the PCA rotation and the learned
adaptor (both fitted on 50k corpus vectors), funnel search (an HNSW shortlist
on the m0-prefix, reranking on longer prefixes and the full vector) —
recall@10 against exact full-dimension flat search, and queries/s as a ratio
to that exact search (batches of all queries, best of 3). Target: recall@10
>= 0.95 at >= 4x.

Table 2: encoder texts/s, fp32 against the int8 path and a shorter maximum
sequence length, with recall@10 of each one's neighbours against fp32's
(over a 5k-summary corpus). Target: int8 >= 2x texts/s at >= 0.95.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import embedded_summaries, summaries

from thresher.scoring.embedders import EmbedderConfig, TextEmbedder
from thresher.scoring.funnel import Funnel, funnel_search
from thresher.scoring.matryoshka import fit_rotation, prefix
from thresher.storage.index import build_index, set_search_width

K = 10


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(got, truth, strict=True)])
    )


def timed(fn, repeat: int = 3):  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def retrieval_table(corpus: np.ndarray, queries: np.ndarray) -> list[str]:
    exact = faiss.IndexFlatIP(corpus.shape[1])
    exact.add(corpus)
    t_exact, (_, truth) = timed(lambda: exact.search(queries, K))
    qps_exact = len(queries) / t_exact
    rng = np.random.default_rng(0)
    sample = corpus[np.sort(rng.choice(len(corpus), 50_000, replace=False))]
    rows = [
        f"| {'exact flat, 384 dims':<26} | {'-':>9} | {'-':>9} | {1.0:>9.3f} | "
        f"{qps_exact:>9,.0f} | {1.0:>8.2f} |"
    ]
    for kind in ("identity", "pca", "adaptor"):
        t0 = time.perf_counter()
        q = fit_rotation(sample, kind, [32, 64, 128, 384])  # type: ignore[arg-type]
        fit_s = time.perf_counter() - t0
        rc, rq = corpus @ q, queries @ q
        name = {
            "identity": "plain truncation",
            "pca": "PCA rotation",
            "adaptor": "learned adaptor",
        }[kind]
        for m0, shortlist in ((32, 200), (64, 200), (128, 100)):
            # the shortlist index: HNSW on the m0-prefix (thresher's default above 50k items)
            index = build_index(prefix(rc, m0), np.arange(len(rc)), "hnsw")
            set_search_width(index, shortlist)
            funnel = Funnel.build(rc, [d for d in (32, 64, 128) if d >= m0], index)
            t, (_, pos) = timed(lambda: funnel_search(rq, funnel, K, shortlist))  # noqa: B023
            qps = len(queries) / t
            rows.append(
                f"| {name:<26} | {m0:>9} | {shortlist:>9} | "
                f"{recall(pos, truth):>9.3f} | {qps:>9,.0f} | {qps / qps_exact:>8.2f} |"
            )
        rows[-1] += f" fit {fit_s:.0f} s"
    head = [
        f"| {'method':<26} | {'prefix m0':>9} | {'shortlist':>9} | {'recall@10':>9} | "
        f"{'queries/s':>9} | {'vs exact':>8} |",
        f"|{'-' * 28}|{'-' * 11}|{'-' * 11}|{'-' * 11}|{'-' * 11}|{'-' * 10}|",
    ]
    return head + rows


def encoder_table(n: int = 5000) -> list[str]:
    texts = summaries(n, offset=300_000)
    configs = [
        ("fp32, max_seq_length 128", EmbedderConfig(batch_size=128)),
        ("int8, max_seq_length 128", EmbedderConfig(batch_size=128, int8=True)),
        ("fp32, max_seq_length 32", EmbedderConfig(batch_size=128, max_seq_length=32)),
        ("int8, max_seq_length 32", EmbedderConfig(batch_size=128, int8=True, max_seq_length=32)),
    ]
    results = {}
    for name, cfg in configs:
        embedder = TextEmbedder(cfg)
        embedder.encode(texts[:256])  # warm up
        t0 = time.perf_counter()
        vectors = embedder.encode(texts)
        results[name] = (n / (time.perf_counter() - t0), vectors)
    base_rate, base = results[configs[0][0]]
    truth = np.argsort(-(base[:500] @ base.T), axis=1)[:, 1 : K + 1]
    rows = [
        f"| {'encoder':<28} | {'texts/s':>8} | {'speedup':>7} | {'recall@10 vs fp32':>17} |",
        f"|{'-' * 30}|{'-' * 10}|{'-' * 9}|{'-' * 19}|",
    ]
    for name, (rate, vectors) in results.items():
        got = np.argsort(-(vectors[:500] @ vectors.T), axis=1)[:, 1 : K + 1]
        rows.append(
            f"| {name:<28} | {rate:>8.0f} | {rate / base_rate:>7.2f} | "
            f"{recall(got, truth):>17.3f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/thresher-bench-cache"))
    parser.add_argument("--skip-encoder", action="store_true")
    args = parser.parse_args()

    _, corpus = embedded_summaries(args.n, args.cache)
    texts_q = summaries(args.queries, offset=args.n)
    qpath = args.cache / f"queries-{args.n}-{args.queries}.npy"
    if not qpath.exists():
        np.save(qpath, TextEmbedder(EmbedderConfig(batch_size=128)).encode(texts_q))
    queries = np.load(qpath)
    print(
        f"\nretrieval: {len(corpus):,} real MiniLM vectors (PyPI summaries), "
        f"{len(queries):,} held-out queries, k={K}, {faiss.omp_get_max_threads()} threads\n"
    )
    print("\n".join(retrieval_table(corpus, queries)))
    if not args.skip_encoder:
        print(
            "\nencoder: 5,000 PyPI summaries, one process, torch threads = "
            f"{__import__('torch').get_num_threads()}\n"
        )
        print("\n".join(encoder_table()))


if __name__ == "__main__":
    main()
