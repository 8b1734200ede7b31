"""The runtime's two paths give the same store: small inputs in-process, and Ray.

Each store is built by the command line in its own processes, one with
`THRESHER_LOCAL_MAX_ROWS=0` (every stage and global step on Ray, as the rest
of the tests run) and one with the default threshold (this corpus is small, so
nothing starts Ray). Every decision they record must be equal.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.flows.demo_data import make_records
from thresher.storage.store import Store

from tests.flows.test_cli import THRESHER
from tests.helpers import clustered

COMMANDS = [
    ("init",),
    (
        "ingest",
        "{src}",
        "--text-column",
        "text",
        "--id-column",
        "doc_id",
        "--label-column",
        "topic",
        "--embedding-column",
        "vec",
    ),
    ("dedup",),
    ("score", "--clusters", "5"),
    ("select", "small", "--keep", "0.3", "--policy", "hard"),
]


def _build(folder: Path, source: Path, local_max_rows: str) -> Store:
    root = folder / f"store-{local_max_rows}"
    env = {**os.environ, "THRESHER_LOCAL_MAX_ROWS": local_max_rows}
    for args in COMMANDS:
        argv = [a.format(src=source) for a in args]
        proc = subprocess.run(
            [THRESHER, argv[0], str(root), *argv[1:]],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    return Store(root)


def _decisions(store: Store) -> dict[str, list]:
    def rows(sql: str) -> list:
        return [tuple(r.values()) for r in store.query(sql).to_pylist()]

    return {
        "duplicates": rows(
            "SELECT item_id, kept_id, method, round(similarity, 6) FROM duplicates ORDER BY ALL"
        ),
        "clusters": rows(
            "SELECT item_id, cluster_id, round(distance, 5) FROM clusters ORDER BY ALL"
        ),
        "scores": rows("SELECT item_id, metric, round(value, 4) FROM scores ORDER BY ALL"),
        "selection": rows("SELECT item_id, weight FROM selections ORDER BY ALL"),
    }


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("runtime")
    records = make_records(900, seed=5)
    vectors = clustered(len(records), 32, seed=5, centres=6)
    table = pa.Table.from_pylist(records).append_column(
        "vec", pa.array(list(vectors), pa.list_(pa.float32()))
    )
    pq.write_table(table, folder / "corpus.parquet")
    return folder / "corpus.parquet"


@pytest.mark.slow  # two full pipelines (45 s)
def test_in_process_and_ray_paths_record_the_same_decisions(source: Path) -> None:
    folder = source.parent
    on_ray = _decisions(_build(folder, source, "0"))
    local = _decisions(_build(folder, source, "1000000"))
    assert all(on_ray[k] for k in ("duplicates", "clusters", "scores", "selection"))
    assert {m for _, _, m, _ in on_ray["duplicates"]} == {"exact", "fuzzy", "semantic"}
    assert local == on_ray
