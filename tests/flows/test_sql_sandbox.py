"""User SQL (`thresher sql`, `--where`, `[select] where`) reads the store's tables and
nothing else, and writes nothing anywhere: real processes, a real store, byte-compared."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.flows import config as cfgmod
from thresher.flows.select import publish, select_items
from thresher.storage import catalog
from thresher.storage.errors import ConfigError, QueryError
from thresher.storage.ingest import IngestConfig, ingest
from thresher.storage.sql import check_condition, read_only_query
from thresher.storage.store import Store

from tests.flows.test_cli import thresher
from tests.helpers import clustered

CATALOG_TABLES = ("meta", "runs", "stages", "files", "models", "centroids", "indexes")
CATALOG_TABLES += ("publications", "sources")


@pytest.fixture(scope="module")
def world(tmp_path_factory, ray_session) -> dict:
    """A store with items, vectors (from an items column), a selection and a publication;
    a Parquet file outside it."""
    tmp = tmp_path_factory.mktemp("sandbox")
    x = clustered(40, 4, seed=1, centres=2)
    data = pa.table(
        {
            "id": np.arange(40),
            "text": [f"row {i}" for i in range(40)],
            "vec": pa.array(list(x), pa.list_(pa.float32())),
        }
    )
    pq.write_table(data, tmp / "src.parquet")
    pq.write_table(data, tmp / "elsewhere.parquet")
    store = Store.init(tmp / "store")
    ingest(
        store,
        [str(tmp / "src.parquet")],
        IngestConfig(id_column="id", text_column="text", embedding_column="vec"),
    )
    select_items(store, "sel", 0.5, policy="random", balance="none")
    publish(store, "sel")
    return {"store": store, "tmp": tmp}


def _digest(root: Path) -> dict[str, str]:
    """Every file under `root` with the hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


ATTACKS = [
    "EXPLAIN ANALYZE COPY (SELECT * FROM items LIMIT 1) TO '{item_file}' (FORMAT parquet)",
    "EXPLAIN ANALYZE COPY (SELECT * FROM items LIMIT 1) TO '{item_file}' "
    "(FORMAT parquet, USE_TMP_FILE false)",
    "EXPLAIN ANALYZE /* x */ COPY (SELECT 1) TO '{item_file}' (FORMAT parquet)",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{catalog}' (FORMAT csv, USE_TMP_FILE false)",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{catalog}' (FORMAT csv)",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{tmp}/new.csv' (FORMAT csv)",
    "SELECT 1; COPY (SELECT 1) TO '{tmp}/new.csv'",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM read_parquet('{tmp}/elsewhere.parquet')",
    "SELECT * FROM glob('{tmp}/*')",
    "SELECT * FROM read_parquet('{store}/tables/*/*.parquet')",
    "ATTACH '{tmp}/other.duckdb' AS o",
    "SELECT count(*) FROM items WHERE (SELECT count(*) FROM read_text('/etc/passwd')) > 0",
]


def _subs(world: dict) -> dict[str, str]:
    store: Store = world["store"]
    return {
        "store": str(store.root),
        "catalog": str(store.catalog_path),
        "item_file": str(store.table_files("items")[0]),
        "tmp": str(world["tmp"]),
    }


def _refused(proc) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("thresher: error: "), proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("attack", ATTACKS)
def test_sql_reads_only_the_store_and_writes_nothing(world, attack) -> None:
    store: Store = world["store"]
    before, elsewhere = _digest(store.root), _digest(world["tmp"] / "elsewhere.parquet")
    _refused(thresher("sql", store.root, attack.format(**_subs(world)), check=False))
    assert _digest(store.root) == before
    assert _digest(world["tmp"] / "elsewhere.parquet") == elsewhere
    assert not (world["tmp"] / "new.csv").exists() and not (world["tmp"] / "other.duckdb").exists()


WHERE_ATTACKS = [
    "(SELECT count(*) FROM read_text('/etc/passwd')) > 0",
    "length((SELECT string_agg(column0, '') FROM read_csv('/etc/passwd', header=false))) > 0",
    "id IN (SELECT id FROM read_parquet('{tmp}/elsewhere.parquet'))",
    "(SELECT count(*) FROM glob('{tmp}/*')) > 0",
    "1=1) UNION ALL SELECT 1 FROM items WHERE (1=1",
    "1=1; COPY (SELECT 1) TO '{tmp}/new.csv'",
    "1=1) ; COPY (SELECT 1) TO '{tmp}/new.csv'; SELECT (1",
]


@pytest.mark.parametrize("where", WHERE_ATTACKS)
def test_select_where_is_one_sandboxed_condition(world, where) -> None:
    store: Store = world["store"]
    before = _digest(store.root)
    proc = thresher(
        *("select", store.root, "w", "--keep", "0.5", "--policy", "random"),
        *("--balance", "none", "--where", where.format(**_subs(world))),
        check=False,
    )
    _refused(proc)
    assert _digest(store.root) == before
    assert not (world["tmp"] / "new.csv").exists()


def test_ordinary_queries_over_every_table_still_work(world) -> None:
    store: Store = world["store"]
    counts = {
        t: read_only_query(store, f"SELECT count(*) FROM {t}").column(0)[0].as_py()
        for t in (*catalog.TABLES, *CATALOG_TABLES)
    }
    assert counts["items"] == counts["embeddings"] == 40 and counts["selections"] == 20
    assert counts["publications"] == 1 and counts["runs"] == 3
    explained = read_only_query(store, "EXPLAIN ANALYZE SELECT count(*) FROM embeddings")
    assert explained.num_rows == 1
    runs = thresher(
        "sql", store.root, "SELECT flow, config FROM runs ORDER BY run_id", "--format", "json"
    )
    assert '"flow": "select"' in runs.stdout
    check_condition(store, "id < 10 AND text LIKE 'row %'")
    r = select_items(store, "small", 0.5, policy="random", balance="none", where="id < 10")
    assert r.candidates == 10 and r.selected == 5


@pytest.mark.parametrize(
    "where",
    ["1=1; DROP TABLE items", "1=1) OR (1=1", "a = 1 ORDER BY 1", "", "x, y"],
)
def test_config_where_is_checked_when_the_config_is_read(tmp_path, where) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'store = "s"\n[ingest]\nsources = ["nope/*.jsonl"]\n[select]\nwhere = "{where}"\n'
    )
    with pytest.raises(ConfigError, match=r"c\.toml: \[select\] where: "):
        cfgmod.load(cfg)
    proc = thresher("run", cfg, check=False)
    _refused(proc)
    assert "[select] where" in proc.stderr and not (tmp_path / "s").exists()


def test_condition_refusals_are_query_errors(world) -> None:
    with pytest.raises(QueryError, match="one SQL condition"):
        check_condition(world["store"], "1=1; SELECT 2")
