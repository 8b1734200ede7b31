"""thresher select / export on a real store: duplicates never selected, SQL-visible weights."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from thresher.flows import dedup
from thresher.flows.score import score
from thresher.flows.select import export, select_items
from thresher.scoring.matryoshka import normalize
from thresher.storage import uri
from thresher.storage.ingest import IngestConfig, ingest

from tests.helpers import clustered


@pytest.fixture
def scored(store, tmp_path, ray_session):
    x = clustered(400, 16, seed=3, centres=4)
    x = np.concatenate([x, normalize(x[:40] + 0.001)])  # 40 near-copies to dedup
    labels = np.argmax(x[:, :3], axis=1)
    pq.write_table(
        pa.table(
            {
                "id": np.arange(len(x)),
                "label": labels,
                "vec": pa.array(list(x), pa.list_(pa.float32())),
            }
        ),
        tmp_path / "v.parquet",
    )
    ingest(
        store,
        [str(tmp_path / "v.parquet")],
        IngestConfig(id_column="id", label_column="label", embedding_column="vec"),
    )
    assert dedup.dedup_semantic(store, 0.999).duplicates >= 40
    score(store, metrics=["prototype"])
    return store


@pytest.mark.parametrize("policy", ["auto", "hard", "random", "kcenter"])
def test_select_never_picks_duplicates_and_is_queryable(scored, policy) -> None:
    report = select_items(scored, "s", 0.25, policy=policy)
    kept = scored.query("SELECT count(*) FROM items ANTI JOIN duplicates USING (item_id)")
    assert report.candidates == kept.column(0)[0].as_py()
    assert report.selected == round(0.25 * report.candidates)
    # the report names the policy that ran: keep 25%, several per cluster -> random
    assert report.policy == ("auto = random" if policy == "auto" else policy)
    rows = scored.query(
        "SELECT count(*) AS n, sum(weight) AS w FROM selections s "
        "SEMI JOIN duplicates d USING (item_id)"
    ).to_pylist()[0]
    assert rows["n"] == 0
    total = scored.query("SELECT sum(weight) FROM selections").column(0)[0].as_py()
    assert total == report.selected


def test_where_and_label_balance_and_export(scored, tmp_path) -> None:
    r = select_items(scored, "lab", 0.5, policy="random", balance="label", where="label = 1")
    labels = (
        scored.query(
            "SELECT DISTINCT i.label FROM selections s JOIN items i "
            "USING (item_id) WHERE selection = 'lab'"
        )
        .column(0)
        .to_pylist()
    )
    assert labels == [1] and r.selected > 0
    n = export(scored, "lab", str(tmp_path / "out")).rows
    table = ds.dataset(tmp_path / "out").to_table()
    assert n == table.num_rows == r.selected and "weight" in table.column_names
    with pytest.raises(ValueError, match="no selection named"):
        export(scored, "missing", str(tmp_path / "o2"))
    with pytest.raises(ValueError, match="keep must be"):
        select_items(scored, "x", 1.5)


def test_learn_writes_weighted_selection(scored) -> None:
    from thresher.flows.learn import learn

    calls: list[tuple[int, int]] = []
    r = learn(
        scored, "al", 60, rounds=3, strategy="iwes", seed=1, on_progress=lambda *a: calls.append(a)
    )
    assert 0 < r.selected <= 60 and len(r.curve) >= 2
    assert calls == [(i, 4) for i in range(1, len(r.curve) + 1)]  # one call per round
    rows = scored.query(
        "SELECT count(*) AS n, min(weight) AS lo, max(weight) AS hi FROM "
        "selections WHERE selection = 'al'"
    ).to_pylist()[0]
    assert rows["n"] == r.selected and rows["lo"] >= 1 and rows["hi"] <= 20
    dup = (
        scored.query(
            "SELECT count(*) FROM selections s SEMI JOIN duplicates USING (item_id) "
            "WHERE selection = 'al'"
        )
        .column(0)[0]
        .as_py()
    )
    assert dup == 0


def test_label_loop_without_a_label_column(store, tmp_path, ray_session) -> None:
    from thresher.flows.learn import add_labels, learn

    x = clustered(300, 8, seed=6, centres=3)
    truth = np.argmax(x[:, :3], axis=1)
    pq.write_table(
        pa.table({"id": np.arange(300), "vec": pa.array(list(x), pa.list_(pa.float32()))}),
        tmp_path / "v.parquet",
    )
    ingest(
        store, [str(tmp_path / "v.parquet")], IngestConfig(id_column="id", embedding_column="vec")
    )

    def annotate(name: str) -> str:
        rows = store.query(
            "SELECT s.item_id, i.id FROM selections s JOIN items i "
            "USING (item_id) WHERE selection = $n AND s.run_id = (SELECT "
            "max(run_id) FROM selections WHERE selection = $n)",
            {"n": name},
        )
        path = tmp_path / f"labels-{rows.num_rows}.csv"
        path.write_text(
            "item_id,label\n"
            + "".join(
                f"{i},c{truth[j]}\n"
                for i, j in zip(rows.column(0).to_pylist(), rows.column(1).to_pylist(), strict=True)
            )
        )
        return str(path)

    first = learn(store, "al", budget=40, rounds=3)
    assert first.selected == 10  # seed batch: 40 // (3 + 1)
    assert add_labels(store, annotate("al")) == 10
    second = learn(store, "al", budget=40, rounds=3, strategy="margin")
    assert second.selected == 10
    assert (
        store.query(
            "SELECT count(*) FROM selections WHERE selection = 'al' AND run_id = "
            "(SELECT max(run_id) FROM selections)"
        )
        .column(0)[0]
        .as_py()
        == 20
    )

    bad_item = tmp_path / "bad.csv"
    bad_item.write_text("item_id,label\n123456789,c0\n")
    with pytest.raises(ValueError, match="not in the store"):
        add_labels(store, str(bad_item))
    some_id = store.query("SELECT item_id FROM items LIMIT 1").column(0)[0].as_py()
    bad_class = tmp_path / "class.csv"
    bad_class.write_text(f"item_id,label\n{some_id},zebra\n")
    with pytest.raises(ValueError, match="unknown class"):
        add_labels(store, str(bad_class))
    assert add_labels(store, str(bad_class), allow_new_classes=True) == 1


def test_an_empty_selection_is_refused_and_export_names_the_version(store, tmp_path) -> None:
    from tests.flows.test_cli import THRESHER, records
    from tests.helpers import snapshot, write_jsonl

    write_jsonl(tmp_path / "a.jsonl", records(30))
    ingest(store, [str(tmp_path / "a.jsonl")], IngestConfig(text_column="text"))
    first = select_items(store, "s", 0.5, policy="random", balance="none")
    before = snapshot(store)

    def cli(*args: object) -> subprocess.CompletedProcess:
        env = {**os.environ, "THRESHER_LOCAL_MAX_ROWS": ""}  # 30 rows: no Ray in the subprocess
        return subprocess.run(
            [THRESHER, *map(str, args)], capture_output=True, text=True, timeout=300, env=env
        )

    proc = cli(
        "select", store.root, "s", "--keep", "0.0001", "--policy", "random", "--balance", "none"
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "keeps no item" in lines[0], proc.stderr
    assert snapshot(store) == before  # no run, no file
    with pytest.raises(ValueError, match="keeps no item"):
        select_items(store, "s", 0.0001, policy="random", balance="none")
    assert snapshot(store) == before

    out = cli("export", store.root, "s", tmp_path / "out")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        f"15 rows of selection 's' version {first.run_id} written to {tmp_path / 'out'}"
    )
    assert ds.dataset(tmp_path / "out").to_table().num_rows == first.selected == 15


def test_balance_auto_stratifies_by_label_for_random_and_by_cluster_for_hard(scored) -> None:
    import json

    low = select_items(scored, "low", 0.25)
    high = select_items(scored, "high", 0.8)
    assert (low.balance, high.balance) == ("label", "cluster")
    assert (low.policy, high.policy) == ("auto = random", "auto = hard")
    config = json.loads(
        scored.query("SELECT config FROM runs WHERE run_id = $r", {"r": low.run_id})
        .column(0)[0]
        .as_py()
    )
    assert config["balance"] == "label"  # the run records the balance that ran
    labels = scored.query(
        "SELECT i.label, count(*) AS n FROM selections s JOIN items i USING (item_id) "
        "WHERE s.selection = 'low' GROUP BY 1 ORDER BY 1"
    ).column("n")
    pool = scored.query(
        "SELECT i.label, count(*) AS n FROM items i ANTI JOIN duplicates USING (item_id) "
        "GROUP BY 1 ORDER BY 1"
    ).column("n")
    # proportional quotas per label: each within one item of 25% of its pool share
    got, share = labels.to_pylist(), pool.to_pylist()
    assert all(abs(a - 0.25 * b) <= 1 for a, b in zip(got, share, strict=True))


def test_an_export_is_written_a_row_group_at_a_time_into_files_of_bounded_rows(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(uri, "EXPORT_GROUP_ROWS", 3)
    monkeypatch.setattr(uri, "EXPORT_FILE_ROWS", 4)
    table = pa.table({"item_id": np.arange(10), "text": [f"t{i}" for i in range(10)]})
    batches = [table.slice(0, 5), table.slice(5, 1), table.slice(6, 4)]  # uneven batches
    reader = pa.RecordBatchReader.from_batches(table.schema, [b.to_batches()[0] for b in batches])
    uri.write_parquet_dataset(reader, tmp_path / "out")
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    groups = [
        [
            pq.ParquetFile(f).metadata.row_group(g).num_rows
            for g in range(pq.ParquetFile(f).num_row_groups)
        ]
        for f in files
    ]
    assert groups == [[3, 1], [3, 1], [2]]
    assert pa.concat_tables([pq.read_table(f) for f in files]).equals(table)
