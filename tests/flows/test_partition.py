"""The cluster partition of the global steps: each group's files carry what its task
needs of every member, and nothing outside the group is read."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.flows import partition
from thresher.flows.embed import IndexConfig, update_index
from thresher.storage import vectors as vstore
from thresher.storage.ingest import IngestConfig, ingest

from tests.helpers import clustered


def test_members_carry_their_row_id_home_and_todo_across_pieces(store, tmp_path) -> None:
    x = clustered(1000, 24, seed=3, centres=6)
    pq.write_table(
        pa.table({"id": np.arange(1000), "vec": pa.array(list(x), pa.list_(pa.float32()))}),
        tmp_path / "v.parquet",
    )
    ingest(
        store, [str(tmp_path / "v.parquet")], IngestConfig(id_column="id", embedding_column="vec")
    )
    info = update_index(store, "vec", IndexConfig())
    ids = store.query("SELECT item_id FROM items ORDER BY item_id DESC").column(0).to_numpy()
    pq.write_table(pa.table({"item_id": ids[:700]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"item_id": ids[700:]}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"item_id": ids[::3]}), tmp_path / "todo.parquet")
    part = partition.build(
        store, info, [[str(tmp_path / "a.parquet")], [str(tmp_path / "b.parquet")]],
        tmp_path / "part", clusters=7, probes=2, seed=0, prefix_dim=None, rows=1000,
        groups=3, todo_paths=[str(tmp_path / "todo.parquet")], piece_rows=128,
    )  # fmt: skip
    assert (part.n, part.found, part.groups) == (1000, (700, 300), 3)
    wanted, rows = partition.wanted_ids(part.folder), partition.index_rows(part.folder)
    assert (wanted == ids).all()  # positions in the order of the id files
    index_ids = vstore.VectorParts(store, info).ids(store, info)
    assert (index_ids[rows] == wanted).all()
    home = np.full(1000, -1)
    seen = np.zeros(1000, int)
    for g in range(part.groups):
        for c, members in partition.clusters(part.folder, g):
            assert c % part.groups == g
            assert (np.diff(members.pos) > 0).all()
            assert (members.item_id == wanted[members.pos]).all()
            assert (members.row == rows[members.pos]).all()
            assert (members.todo == np.isin(members.item_id, ids[::3])).all()
            seen[members.pos] += 1
            mine = members.home == c
            assert (home[members.pos[mine]] == -1).all()  # one nearest cluster each
            home[members.pos[mine]] = c
    assert (seen == 2).all()  # every position in its 2 nearest clusters
    assert (home >= 0).all()
    sims = partition.nearest_sims(part.folder, np.arange(1000))
    assert ((sims > 0) & (sims <= 1 + 1e-5)).all()


def test_embeddings_stream_in_the_same_order_whatever_the_batch(store, tmp_path) -> None:
    x = clustered(900, 8, seed=2, centres=3)
    for i, rows in enumerate((slice(0, 500), slice(500, 900))):  # two ingest runs
        ids = np.arange(900)[rows]
        path = tmp_path / f"v{i}.parquet"
        vec = pa.array(list(x[rows]), pa.list_(pa.float32()))
        pq.write_table(pa.table({"id": ids, "vec": vec}), path)
        ingest(store, [str(path)], IngestConfig(id_column="id", embedding_column="vec"))
    runs = [
        np.concatenate([ids for ids, _ in vstore.iter_embeddings(store, "vec", batch_rows=b)])
        for b in (64, 100, 4096)
    ]
    assert all((r == runs[0]).all() for r in runs)  # the index build's sample is reproducible
    by_file = store.query("SELECT item_id FROM items")
    assert sorted(runs[0].tolist()) == sorted(by_file.column(0).to_pylist())
    skip = runs[0][:300]
    rest = np.concatenate([ids for ids, _ in vstore.iter_embeddings(store, "vec", skip)])
    assert (rest == runs[0][300:]).all()
