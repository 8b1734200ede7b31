"""Small helpers shared by tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from thresher.storage.store import Store


def write_jsonl(path: Path, records: list[dict], extra_lines: list[bytes] = ()) -> Path:
    with open(path, "wb") as fh:
        for r in records:
            fh.write(json.dumps(r).encode() + b"\n")
        for line in extra_lines:
            fh.write(line + b"\n")
    return path


def snapshot(store: Store) -> tuple:
    """Everything a user could see of a store: its catalog tables and its files."""
    with store.read() as con:
        tables = tuple(
            tuple(con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall())
            for t in ("runs", "stages", "files", "sources", "items", "rejects")
        )
    files = tuple(
        sorted(
            str(p.relative_to(store.root))
            for p in (store.root / "tables").rglob("*")
            if p.is_file()
        )
    )
    return tables, files


def clustered(n: int, d: int, seed: int = 0, centres: int = 20) -> np.ndarray:
    """Unit vectors around a few centres: the low-rank structure of real embeddings."""
    from thresher.scoring.matryoshka import normalize

    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)) * 3
    return normalize(c[rng.integers(0, centres, n)] + rng.standard_normal((n, d)))
