"""Decontamination: recall on planted eval passages with edits, false positives, rows/s.

    python benchmarks/decontam.py [--n 100000] [--ngram 13]

Corpus: `n` real PyPI summaries (../shared/data). Eval set: 300 synthetic passages
of 30 words each (random words of the corpus' vocabulary, seeded). 300 corpus items
get one passage planted (an edit: one word replaced at a random position, the
case changed, or the passage cut to its first 20 words, each after a prefix of
real text). Recall: planted items flagged; false-positive rate: other items flagged.
rows/s: n-gram hashing and lookup of the corpus (one process, as one worker).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import summaries

from thresher.selection.decontam import ngram_hashes, overlaps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--ngram", type=int, default=13)
    args = ap.parse_args()
    rng = random.Random(0)
    texts = summaries(args.n)
    vocab = sorted({w for t in texts[:5000] for w in t.split()})
    evals = [" ".join(rng.choice(vocab) for _ in range(30)) for _ in range(300)]
    planted = rng.sample(range(len(texts)), 300)
    for k, i in enumerate(planted):
        words = evals[k].split()
        edit = k % 3
        if edit == 0:
            words[rng.randrange(len(words))] = "EDITED"
        elif edit == 1:
            words = [w.upper() for w in words]
        else:
            words = words[:20]
        texts[i] = texts[i] + " " + " ".join(words)
    grams = np.unique(np.concatenate(ngram_hashes(evals, args.ngram)))
    t0 = time.perf_counter()
    hits = overlaps(ngram_hashes(texts, args.ngram), grams) > 0
    rate = len(texts) / (time.perf_counter() - t0)
    mask = np.zeros(len(texts), bool)
    mask[planted] = True
    recall = hits[mask].mean()
    fpr = hits[~mask].mean()
    print("| rows | ngram | recall | false-positive rate | rows/s |")
    print("|---|---|---|---|---|")
    print(f"| {len(texts):,} | {args.ngram} | {recall:.3f} | {fpr:.4%} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
