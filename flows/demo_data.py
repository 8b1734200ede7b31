"""The bundled demo corpus: short labelled texts in three formats, made from a seed.

The corpus ships as this generator rather than as data files: the same seed
writes the same bytes on every machine, and nothing large lives in git. It
holds what curation is for: exact duplicates (some differing only in case and
spacing), near-duplicates (a word changed), and rows that cannot be ingested
(empty text, broken JSON, bytes that are not UTF-8, a CSV row with an extra
field), so every part of the pipeline has something to find.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TOPICS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "sports": (
        ["The home team", "A veteran striker", "The coach", "The young goalkeeper", "Our captain"],
        ["won", "lost", "defended", "dominated", "drew"],
        ["the derby", "the final match", "a tense semifinal", "the away game", "the cup tie"],
    ),
    "cooking": (
        ["This recipe", "A slow braise", "The sourdough", "Fresh pasta", "A simple curry"],
        ["needs", "rewards", "depends on", "improves with", "starts with"],
        ["patient kneading", "browned butter", "a hot oven", "good stock", "toasted spices"],
    ),
    "software": (
        ["The parser", "This library", "The scheduler", "Our query planner", "The cache layer"],
        ["handles", "rejects", "streams", "indexes", "retries"],
        ["malformed input", "large files", "concurrent writes", "nested records", "slow disks"],
    ),
    "travel": (
        ["The night train", "A coastal road", "The old harbour", "Our guesthouse", "The ferry"],
        ["leads to", "overlooks", "connects", "crosses", "serves"],
        ["the quiet islands", "a mountain pass", "the walled city", "three valleys", "the lagoon"],
    ),
    "finance": (
        ["The central bank", "A small lender", "The index fund", "Bond yields", "The startup"],
        ["raised", "cut", "hedged", "tracked", "doubled"],
        ["interest rates", "its exposure", "quarterly revenue", "the benchmark", "new capital"],
    ),
    "health": (
        ["Regular sleep", "A short walk", "The new vaccine", "Hydration", "Strength training"],
        ["reduces", "supports", "protects against", "improves", "lowers"],
        ["blood pressure", "joint pain", "seasonal flu", "daily focus", "long-term risk"],
    ),
}
TAILS = [
    "every week",
    "after the storm",
    "this season",
    "in the end",
    "by morning",
    "without fuss",
    "for the first time",
    "as expected",
    "despite the doubts",
    "again",
]


def _sentence(rng: random.Random, topic: str) -> str:
    subjects, verbs, objects = TOPICS[topic]
    return f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(TAILS)}."


def make_records(n: int = 3000, seed: int = 0) -> list[dict]:
    """`n` labelled texts, about 8% exact (or case/space) duplicates and 5% near-duplicates."""
    rng = random.Random(seed)
    records: list[dict] = []
    for i in range(n):
        if records and rng.random() < 0.08:
            src = rng.choice(records)
            text = src["text"] if rng.random() < 0.5 else "  " + src["text"].upper() + " "
            topic = src["topic"]
        elif records and rng.random() < 0.05:
            src = rng.choice(records)
            words = src["text"].split()
            words[rng.randrange(len(words))] = rng.choice(["quickly", "really", "truly"])
            text, topic = " ".join(words), src["topic"]
        else:
            topic = rng.choice(sorted(TOPICS))
            text = " ".join(_sentence(rng, topic) for _ in range(rng.randint(1, 3)))
        records.append({"doc_id": i, "text": text, "topic": topic})
    return records


def write_demo_sources(folder: Path, seed: int = 0) -> list[Path]:
    """Write the demo corpus as news.jsonl, reviews.csv and notes.parquet under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    records = make_records(seed=seed)
    third = len(records) // 3
    jsonl, csv_rows, parquet_rows = (
        records[:third],
        records[third : 2 * third],
        records[2 * third :],
    )

    jsonl_path = folder / "news.jsonl"
    with open(jsonl_path, "wb") as fh:
        for r in jsonl:
            fh.write(json.dumps(r).encode() + b"\n")
        fh.write(json.dumps({"doc_id": -1, "text": "", "topic": "sports"}).encode() + b"\n")
        fh.write(b'{"doc_id": -2, "text": "a line cut short\n')
        fh.write(b'{"doc_id": -3, "text": "caf\xe9 au lait", "topic": "cooking"}\n')

    csv_path = folder / "reviews.csv"
    with open(csv_path, "w", newline="") as fh:
        fh.write("doc_id,text,topic\n")
        for r in csv_rows:
            fh.write(f'{r["doc_id"]},"{r["text"]}",{r["topic"]}\n')
        fh.write('-4,"one field too many",travel,extra\n')

    parquet_path = folder / "notes.parquet"
    pq.write_table(pa.Table.from_pylist(parquet_rows), parquet_path)
    return [jsonl_path, csv_path, parquet_path]
