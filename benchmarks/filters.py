"""The LLM-data filters: rows/s on PyPI summaries and accuracy on labelled check sets.

    pip install -e '.[bench]'
    python benchmarks/filters.py [--rows 100000] [--labelled 20000] [--cache DIR]

Throughput: each stage's own `process` (the code a Ray worker runs) over the
first `--rows` distinct PyPI summaries in Arrow batches of 16,384, in this one
process, so rows/s is per worker (per core); the target is 5,000 rows/s on 2
cores, so a stage meets it at >= 2,500 rows/s per worker. Label issues run on
`--labelled` summaries with MiniLM vectors (a seeded sample across the 29
families, embedded once and cached): fitting the 5 fold probes, then scoring
with their mean (what items outside the fitted sample get). The quality
probe's fit is exempt from the target; its scoring is not.

Accuracy, each on a check set built here (seeded):
- language ID: the 12 short sentences per language of `benchmarks/langid.py`
  (10 languages, 6 scripts) joined in pairs into texts of 5-15 words (66 per
  language; Chinese and Thai, written without spaces, are counted in
  sentences); target >= 0.95 per language.
- decontamination: 300 eval passages of 30 words planted into 300 summaries
  with an edit each (a word replaced, the case changed, or cut to 20 words);
  recall on the planted items, false positives on the rest; target recall
  >= 0.95 at <= 0.5% false positives.
- PII: 200 values of each kind planted into summaries with no PII, plus 400
  look-alikes that are not PII (Luhn-failing card numbers, dates, version
  numbers, out-of-range octets, 9 bare digits, a wrong IBAN check digit);
  recall per kind, and precision over everything found.
- label issues: 10% of the labels flipped to another class at random, on
  scikit-learn's digits and on the labelled summaries; precision of the k
  worst `label_issue` (k = flipped), and the confident-joint flags'
  precision and recall.
- quality: a reference set of 1,000 summaries of one family (not in the
  pool); AUC of `quality` for that family's pool items against the rest.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import labelled_sample, summaries
from langid import SENTENCES

from thresher.scoring.confident import (
    LabelIssueStage,
    class_thresholds,
    confident_issues,
    fit_out_of_fold,
    label_issue,
)
from thresher.scoring.quality import QualityStage, fit_quality_probe
from thresher.scoring.tokens import TokenStage
from thresher.selection.decontam import DecontamStage, ngram_hashes, overlaps
from thresher.selection.langid import LangIdStage, identify
from thresher.selection.pii import KINDS, PiiStage, find_pii
from thresher.storage.stage import Stage

PER_WORKER_TARGET = 2_500  # 5,000 rows/s on 2 cores
BATCH = 16_384


def rows_per_second(stage: Stage, table: pa.Table) -> float:
    stage.setup()
    t0 = time.perf_counter()
    for start in range(0, table.num_rows, BATCH):
        stage.process(table.slice(start, BATCH))
    return table.num_rows / (time.perf_counter() - t0)


# --- check sets -------------------------------------------------------------------


def langid_accuracy() -> dict[str, float]:
    out = {}
    for lang, sentences in SENTENCES.items():
        texts = []
        for i, a in enumerate(sentences):
            for b in sentences[i + 1 :]:
                text = f"{a.rstrip('.!?')}. {b}"
                words = len(text.split())
                if lang in ("zh", "th") or 5 <= words <= 15:
                    texts.append(text)
        out[lang] = float(np.mean([got == lang for got, _ in identify(texts)]))
    return out


def planted_evals(texts: list[str], rng: random.Random) -> tuple[list[str], list[str], np.ndarray]:
    """(texts with 300 passages planted, the passages, the planted positions)."""
    vocab = sorted({w for t in texts[:5000] for w in t.split()})
    evals = [" ".join(rng.choice(vocab) for _ in range(30)) for _ in range(300)]
    planted = np.array(rng.sample(range(len(texts)), 300))
    texts = list(texts)
    for k, i in enumerate(planted):
        words = evals[k].split()
        if k % 3 == 0:
            words[rng.randrange(len(words))] = "EDITED"
        elif k % 3 == 1:
            words = [w.upper() for w in words]
        else:
            words = words[:20]
        texts[i] = texts[i] + " " + " ".join(words)
    return texts, evals, planted


def _luhn_digit(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def _iban(rng: random.Random) -> str:
    bban = "".join(rng.choice("0123456789") for _ in range(18))
    digits = "".join(str(int(c, 36)) for c in bban + "DE00")
    return f"DE{98 - int(digits) % 97:02d}{bban}"


def pii_values(rng: random.Random) -> dict[str, Callable[[], str]]:
    def card() -> str:
        body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
        number = body + _luhn_digit(body)
        return (
            " ".join(number[i : i + 4] for i in range(0, 16, 4)) if rng.random() < 0.5 else number
        )

    def phone() -> str:
        a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
        forms = [f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"+44 20 {b}{c % 10} {c:04d}"]
        return rng.choice(forms)

    def ipv6() -> str:
        return ":".join(f"{rng.randint(0, 65535):x}" for _ in range(8))

    return {
        "email": lambda: f"user{rng.randint(1, 9999)}@example{rng.randint(1, 99)}.org",
        "phone": phone,
        "ip": lambda: (
            ".".join(str(rng.randint(1, 254)) for _ in range(4)) if rng.random() < 0.7 else ipv6()
        ),
        "credit_card": card,
        "iban": lambda: _iban(rng),
        "ssn": lambda: (
            f"{rng.randint(1, 665):03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
        ),
    }


def pii_decoys(rng: random.Random) -> list[Callable[[], str]]:
    def bad_card() -> str:
        body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
        return body + str((int(_luhn_digit(body)) + 1) % 10)

    def bad_iban() -> str:
        good = _iban(rng)
        return good[:2] + f"{(int(good[2:4]) + 1) % 100:02d}" + good[4:]

    return [
        bad_card,
        lambda: f"{rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        lambda: (
            f"v{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}"
        ),
        lambda: f"{rng.randint(256, 999)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.1",
        lambda: "".join(rng.choice("0123456789") for _ in range(9)),
        bad_iban,
    ]


def pii_accuracy(texts: list[str], rng: random.Random) -> tuple[dict[str, float], float, int]:
    """(recall per kind, precision over all spans found, spans found)."""
    clean = [t for t in texts if not find_pii(t)]
    values = pii_values(rng)
    planted: list[tuple[str, str, int, int]] = []  # kind, text, start, end
    for kind, make in values.items():
        for _ in range(200):
            value, base = make(), rng.choice(clean)
            words = base.split()
            cut = rng.randint(0, len(words))
            head = " ".join(words[:cut]) + (" " if cut else "")
            text = head + value + (" " if cut < len(words) else "") + " ".join(words[cut:])
            planted.append((kind, text, len(head), len(head) + len(value)))
    decoys = pii_decoys(rng)
    for k in range(400):
        base = rng.choice(clean)
        planted.append(("none", f"{base} {decoys[k % len(decoys)]()}", -1, -1))
    hits = {kind: 0 for kind in values}
    found = correct = 0
    for kind, text, start, end in planted:
        spans = find_pii(text)
        found += len(spans)
        ok = [s for s in spans if s.kind == kind and s.start == start and s.end == end]
        correct += len(ok)
        if kind != "none":
            hits[kind] += bool(ok)
    return {k: v / 200 for k, v in hits.items()}, correct / max(found, 1), found


def flipped(y: np.ndarray, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = int(y.max()) + 1
    pos = rng.choice(len(y), round(rate * len(y)), replace=False)
    noisy = y.copy()
    noisy[pos] = (y[pos] + rng.integers(1, classes, len(pos))) % classes
    return noisy, pos


def label_issue_check(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    noisy, pos = flipped(y, 0.1, seed=0)
    classes = int(y.max()) + 1
    t0 = time.perf_counter()
    probs, probes = fit_out_of_fold(x, noisy, classes, seed=0)
    fit_s = time.perf_counter() - t0
    issue = label_issue(probs, noisy)
    worst = np.argsort(-issue)[: len(pos)]
    flags = confident_issues(probs, noisy)
    truth = np.zeros(len(y), bool)
    truth[pos] = True
    stage = LabelIssueStage(
        probes, [str(c) for c in range(classes)], class_thresholds(probs, noisy), skip=np.zeros(0)
    )
    table = pa.table(
        {
            "item_id": np.arange(len(y)),
            "vector": pa.array(list(x.astype(np.float32)), pa.list_(pa.float32())),
            "label": [str(v) for v in noisy],
        }
    )
    return {
        "rows": len(y),
        "precision@k": float(truth[worst].mean()),
        "flag precision": float(truth[flags].mean()) if flags.any() else 0.0,
        "flag recall": float(flags[truth].mean()),
        "fit rows/s": len(y) / fit_s,
        "score rows/s": rows_per_second(stage, table),
    }


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUC: P(a positive scores above a negative)."""
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def quality_check(pool: np.ndarray, families: np.ndarray, cache: Path) -> dict[str, float]:
    from thresher.scoring.embedders import EmbedderConfig, TextEmbedder

    target = "django"
    texts, fams, _ = labelled_sample(40_000, cache, seed=0, embed=False)
    others = set(labelled_sample(len(families), cache, seed=0, embed=False)[0])
    reference = [t for t, f in zip(texts, fams, strict=True) if f == target and t not in others]
    reference = reference[:1000]
    ref = TextEmbedder(EmbedderConfig(batch_size=128)).encode(reference)
    t0 = time.perf_counter()
    weight, bias = fit_quality_probe(ref, pool, seed=0)
    fit_s = time.perf_counter() - t0
    table = pa.table(
        {"item_id": np.arange(len(pool)), "vector": pa.array(list(pool), pa.list_(pa.float32()))}
    )
    stage = QualityStage(weight, bias)
    quality = stage.process(table).column("quality").to_numpy()
    return {
        "reference": len(reference),
        "auc": auc(quality, families == target),
        "fit s": fit_s,
        "score rows/s": rows_per_second(stage, table),
    }


# --- the run ----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--labelled", type=int, default=20_000)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/thresher-bench-cache"))
    args = parser.parse_args()
    rng = random.Random(0)
    texts = summaries(args.rows)
    with_evals, evals, planted = planted_evals(texts, rng)
    ids = np.arange(len(texts))
    table = pa.table({"item_id": ids, "batch_id": np.zeros_like(ids), "text": texts})
    grams = np.unique(np.concatenate(ngram_hashes(evals, 13)))
    throughput = {
        "language ID": rows_per_second(LangIdStage(), table),
        "decontamination (13-grams)": rows_per_second(DecontamStage(grams, 13), table),
        "PII": rows_per_second(PiiStage(), table),
        "tokens (MiniLM tokenizer)": rows_per_second(TokenStage(), table),
    }

    _, families, x = labelled_sample(args.labelled, args.cache)
    names, y = np.unique(families, return_inverse=True)
    from sklearn.datasets import load_digits

    digits = load_digits()
    dx = digits.data.astype(np.float32)
    dx /= np.maximum(np.linalg.norm(dx, axis=1, keepdims=True), 1e-12)
    issues = {
        "digits": label_issue_check(dx, digits.target),
        f"PyPI summaries ({len(names)} families)": label_issue_check(x, y),
    }
    quality = quality_check(x, families, args.cache)

    print(f"\nthroughput: {len(texts):,} PyPI summaries, one process (per worker)\n")
    print("| stage | rows/s per worker | target per worker | ratio |")
    print("|---|---|---|---|")
    summary = issues[f"PyPI summaries ({len(names)} families)"]
    throughput["label issues: fold probes' fit"] = summary["fit rows/s"]
    throughput["label issues: scoring (mean of folds)"] = summary["score rows/s"]
    throughput["quality: scoring"] = quality["score rows/s"]
    for stage, rate in throughput.items():
        print(
            f"| {stage} | {rate:,.0f} | {PER_WORKER_TARGET:,} | {rate / PER_WORKER_TARGET:.1f}x |"
        )
    print(f"| quality: probe fit (exempt) | {quality['fit s']:.1f} s | | |")

    acc = langid_accuracy()
    print("\nlanguage ID: pairs of short sentences (5-15 words), accuracy per language\n")
    print("| " + " | ".join(acc) + " | all |")
    print("|---" * (len(acc) + 1) + "|")
    print(
        "| "
        + " | ".join(f"{v:.2f}" for v in acc.values())
        + f" | {np.mean(list(acc.values())):.3f} |"
    )

    hits = overlaps(ngram_hashes(with_evals, 13), grams) > 0
    mask = np.zeros(len(texts), bool)
    mask[planted] = True
    print("\ndecontamination: 300 planted eval passages with edits, 13-grams\n")
    print("| rows | recall | false-positive rate |")
    print("|---|---|---|")
    print(f"| {len(texts):,} | {hits[mask].mean():.3f} | {hits[~mask].mean():.4%} |")

    recall, precision, found = pii_accuracy(texts[:20_000], rng)
    print("\nPII: 200 planted values per kind and 400 look-alikes in summaries without PII\n")
    print("| " + " | ".join(KINDS) + " | precision (all spans) |")
    print("|---" * (len(KINDS) + 1) + "|")
    print(
        "| "
        + " | ".join(f"{recall[k]:.3f}" for k in KINDS)
        + f" | {precision:.3f} ({found} spans) |"
    )

    print("\nlabel issues: 10% of labels flipped, 5-fold out-of-fold linear probes\n")
    print("| dataset | rows | precision@k | flag precision | flag recall |")
    print("|---|---|---|---|---|")
    for name, r in issues.items():
        print(
            f"| {name} | {r['rows']:,} | {r['precision@k']:.3f} | {r['flag precision']:.3f} | "
            f"{r['flag recall']:.3f} |"
        )

    print(f"\nquality: reference = {quality['reference']:,} django summaries outside the pool\n")
    print(f"| pool | AUC (django vs the rest) |\n|---|---|\n| {len(x):,} | {quality['auc']:.3f} |")


if __name__ == "__main__":
    main()
