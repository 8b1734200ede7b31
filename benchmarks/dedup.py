"""Fuzzy dedup against datasketch on planted near-duplicates; semantic dedup against brute force.

    pip install -e '.[bench]'
    python benchmarks/dedup.py [--n 50000] [--cache DIR]

Fuzzy: `n` real PyPI summaries of at least 8 words (../shared/data), plus one
planted near-duplicate for 10% of them, each made by one of: two character
edits, one word dropped, the two halves swapped (reorder), the last tenth of
the words cut (truncation). Ground truth: a planted copy is a duplicate of
its source when their true Jaccard (character 5-gram sets) is >= 0.8.
Recall counts planted copies flagged, precision counts flagged items that are
planted copies or have true Jaccard >= 0.8 with the item kept in their place
(the corpus has natural near-duplicates too). Both thresher and datasketch's
MinHashLSH use 128 permutations, threshold 0.8 and the same shingles; rows/s
is end to end (shingles, signatures, LSH, verification, grouping).
Targets: recall >= 0.95 at precision >= 0.99; >= 5x datasketch's rows/s.

Semantic: SemDeDup at cosine 0.95 over 20,000 real MiniLM vectors (the
retrieval benchmark's cache), on the 128-dim PCA prefix and on the full
vector, against a brute-force all-pairs reference. Target: identical sets.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import embedded_summaries, summaries

from thresher.scoring.matryoshka import fit_pca_rotation
from thresher.selection.minhash import (
    LSHParams,
    fuzzy_duplicates,
    jaccard,
    minhash_signatures,
    shingle_hashes,
)
from thresher.selection.semantic import (
    SemanticParams,
    all_pairs_reference,
    semantic_duplicates,
)


def plant(texts: list[str], seed: int = 0) -> tuple[list[str], dict[int, int], list[str]]:
    """texts + copies; {copy position: source position}; the edit kind of each copy."""
    rng = random.Random(seed)
    out, truth, kinds = list(texts), {}, []
    for src in rng.sample(range(len(texts)), len(texts) // 10):
        words = texts[src].split()
        kind = rng.choice(["char edits", "word drop", "reorder", "truncation"])
        if kind == "char edits":
            chars = list(texts[src])
            for _ in range(2):
                chars[rng.randrange(len(chars))] = rng.choice("abcdefghijklmnopqrstuvwxyz")
            copy = "".join(chars)
        elif kind == "word drop":
            del words[rng.randrange(len(words))]
            copy = " ".join(words)
        elif kind == "reorder":
            half = len(words) // 2
            copy = " ".join(words[half:] + words[:half])
        else:
            copy = " ".join(words[: max(1, len(words) - max(1, len(words) // 10))])
        truth[len(out)] = src
        out.append(copy)
        kinds.append(kind)
    return out, truth, kinds


def thresher_fuzzy(texts: list[str], threads: int) -> tuple[float, dict[int, int]]:
    params = LSHParams(threshold=0.8)
    t0 = time.perf_counter()
    hashes, offsets = shingle_hashes(pa.array(texts))
    sig = minhash_signatures(hashes, offsets, params, threads=threads)
    res = fuzzy_duplicates(hashes, offsets, sig, params)
    return time.perf_counter() - t0, dict(zip(res.dup.tolist(), res.kept.tolist(), strict=True))


def datasketch_fuzzy(texts: list[str]) -> tuple[float, dict[int, int]]:
    from datasketch import MinHash, MinHashLSH

    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    found = {}
    for i, text in enumerate(texts):
        t = " ".join(text.lower().split())
        shingles = {t[j : j + 5].encode() for j in range(max(len(t) - 4, 1))}
        m = MinHash(num_perm=128)
        m.update_batch(list(shingles))
        hits = lsh.query(m)
        if hits:
            found[i] = min(hits)
        else:
            lsh.insert(i, m)
    return time.perf_counter() - t0, found


def score(found: dict[int, int], truth: dict[int, int], hashes, offsets, true_j) -> tuple:
    positives = {c for c, j in true_j.items() if j >= 0.8}
    recall = len(positives & set(found)) / max(len(positives), 1)
    flagged = np.array(sorted(found.items()), dtype=np.int64).reshape(-1, 2)
    sims = jaccard(hashes, offsets, flagged) if len(flagged) else np.zeros(0)
    good = sum(
        1 for (d, _), s in zip(flagged.tolist(), sims, strict=True) if d in truth or s >= 0.8
    )
    return recall, good / max(len(found), 1)


def fuzzy_table(n: int) -> list[str]:
    corpus = [t for t in summaries(4 * n) if len(t.split()) >= 8][:n]
    texts, truth, kinds = plant(corpus)
    hashes, offsets = shingle_hashes(pa.array(texts))
    pairs = np.array(list(truth.items()), dtype=np.int64)
    true_j = dict(zip(truth, jaccard(hashes, offsets, pairs).tolist(), strict=True))
    t_ours, ours = thresher_fuzzy(texts, threads=os.cpu_count() or 1)
    t_one, ours_one = thresher_fuzzy(texts, threads=1)
    t_ds, theirs = datasketch_fuzzy(texts)
    rows = [
        f"| {'method':<22} | {'rows/s':>9} | {'speed vs datasketch':>19} | {'recall':>6} | "
        f"{'precision':>9} | {'flagged':>7} |",
        f"|{'-' * 24}|{'-' * 11}|{'-' * 21}|{'-' * 8}|{'-' * 11}|{'-' * 9}|",
    ]
    runs = (
        (f"thresher, {os.cpu_count()} threads", t_ours, ours),
        ("thresher, 1 thread", t_one, ours_one),
        ("datasketch MinHashLSH", t_ds, theirs),
    )
    for name, t, found in runs:
        r, p = score(found, truth, hashes, offsets, true_j)
        rows.append(
            f"| {name:<22} | {len(texts) / t:>9,.0f} | {t_ds / t:>19.2f} | {r:>6.3f} | "
            f"{p:>9.3f} | {len(found):>7,} |"
        )
    n_pos = sum(1 for j in true_j.values() if j >= 0.8)
    by_kind = {
        k: (
            sum(1 for c, kk in zip(truth, kinds, strict=True) if kk == k and c in ours),
            sum(1 for kk in kinds if kk == k),
        )
        for k in sorted(set(kinds))
    }
    rows.append(
        f"\n{len(texts):,} rows: {len(corpus):,} summaries + {len(truth):,} planted copies, "
        f"{n_pos:,} of them with true Jaccard >= 0.8. thresher flagged, by edit: "
        + ", ".join(f"{k} {a}/{b}" for k, (a, b) in by_kind.items())
    )
    return rows


def semantic_table(cache: Path, n: int = 20_000) -> list[str]:
    _, vectors = embedded_summaries(200_000, cache)
    x = vectors[:n]
    x = x @ fit_pca_rotation(x)
    t0 = time.perf_counter()
    ref_dup, ref_kept, _ = all_pairs_reference(x, 0.95)
    t_ref = time.perf_counter() - t0
    ref = dict(zip(ref_dup.tolist(), ref_kept.tolist(), strict=True))
    rows = [
        f"| {'method':<34} | {'seconds':>7} | {'pairs checked':>13} | {'duplicates':>10} | "
        f"{'same as reference':>17} |",
        f"|{'-' * 36}|{'-' * 9}|{'-' * 15}|{'-' * 12}|{'-' * 19}|",
        f"| {'brute force, all pairs, 384 dims':<34} | {t_ref:>7.2f} | {n * (n - 1) // 2:>13,} "
        f"| {len(ref):>10,} | {'-':>17} |",
    ]
    for m in (384, 128, 64):
        t0 = time.perf_counter()
        res = semantic_duplicates(x, SemanticParams(threshold=0.95, prefix_dim=m))
        t = time.perf_counter() - t0
        got = dict(zip(res.dup.tolist(), res.kept.tolist(), strict=True))
        rows.append(
            f"| {f'SemDeDup, clusters on {m} dims':<34} | {t:>7.2f} | "
            f"{res.candidates:>13,} | {len(got):>10,} | {got == ref!s:>17} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/thresher-bench-cache"))
    args = parser.parse_args()
    print("\nfuzzy dedup at Jaccard 0.8, character 5-grams, 128 permutations\n", flush=True)
    print("\n".join(fuzzy_table(args.n)), flush=True)
    print("\nsemantic dedup at cosine 0.95, 20,000 real MiniLM vectors (PCA-rotated)\n")
    print("\n".join(semantic_table(args.cache)))


if __name__ == "__main__":
    main()
