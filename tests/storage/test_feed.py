"""The trainer feed: exactly-once sharding, seeded shuffles, weights, resume, other views."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from thresher.flows.select import publish, select_items
from thresher.storage.feed import SelectionFeed, round_robin_taken
from thresher.storage.ingest import IngestConfig, ingest

from tests.helpers import write_jsonl

N = 1000


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("feed")
    rng = np.random.default_rng(0)
    ids = np.arange(N, dtype=np.int64)
    vectors = rng.standard_normal((N, 4)).astype(np.float32)
    table = pa.table(
        {
            "item_id": ids,
            "text": [f"text {i}" for i in ids],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 4),
            "weight": rng.uniform(1, 5, N),
        }
    )
    out = []
    for i, (lo, hi) in enumerate([(0, 300), (300, 650), (650, N)]):
        path = folder / f"part-{i}.parquet"
        pq.write_table(table.slice(lo, hi - lo), path, row_group_size=64)
        out.append(path)
    return out


def _ids(loader) -> list[int]:
    return [i for batch in loader for i in batch["item_id"].tolist()]


@pytest.mark.parametrize("shuffle_buffer", [0, 200])
def test_two_ranks_times_two_workers_read_every_row_exactly_once(files, shuffle_buffer) -> None:
    seen: list[list[int]] = []
    for rank in range(2):
        feed = SelectionFeed(
            files, batch_size=32, shuffle_buffer=shuffle_buffer, seed=7, rank=rank, world_size=2
        )
        loader = feed.loader(num_workers=2)
        seen.append(_ids(loader))
    assert sorted(seen[0] + seen[1]) == list(range(N))
    assert abs(len(seen[0]) - len(seen[1])) <= 1
    if shuffle_buffer:
        assert seen[0] != sorted(seen[0])


def test_shuffle_is_seeded_per_epoch(files) -> None:
    def order(seed: int, epoch: int) -> list[int]:
        feed = SelectionFeed(files, batch_size=50, shuffle_buffer=300, seed=seed)
        feed.set_epoch(epoch)
        return _ids(feed.loader())

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1)
    assert order(1, 0) != order(2, 0)
    assert sorted(order(1, 1)) == list(range(N))


def test_batches_carry_columns_weights_and_vectors(files) -> None:
    feed = SelectionFeed(files, columns=["item_id", "vector", "text"], batch_size=100)
    batch = next(iter(feed.loader()))
    assert set(batch) == {"item_id", "vector", "text", "weight"}
    assert batch["vector"].shape == (100, 4) and batch["vector"].dtype == torch.float32
    assert batch["weight"].dtype == torch.float32
    assert batch["text"][:2] == ["text 0", "text 1"]
    expected = pq.read_table(files[0]).column("weight").to_numpy()[:100]
    assert np.allclose(batch["weight"].numpy(), expected)
    with pytest.raises(ValueError, match="no column 'label'; columns: item_id, text"):
        SelectionFeed(files, columns=["label"])


def test_round_robin_accounting() -> None:
    assert round_robin_taken([3, 3], 4) == ([2, 2], 0)
    assert round_robin_taken([3, 3], 3) == ([2, 1], 1)
    assert round_robin_taken([1, 4], 4) == ([1, 3], 1)  # worker 0 ran out after one
    assert round_robin_taken([2, 2, 1], 5) == ([2, 2, 1], 0)
    assert round_robin_taken([2, 2, 2], 4) == ([2, 1, 1], 1)
    assert round_robin_taken([5, 5], 0) == ([0, 0], 0)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers", [0, 2, 3])
def test_resume_continues_exactly_where_it_stopped(files, workers) -> None:
    def feed() -> SelectionFeed:
        return SelectionFeed(files, batch_size=30, shuffle_buffer=256, seed=3, rank=1, world_size=2)

    full = [b["item_id"].tolist() for b in feed().loader(num_workers=workers)]
    loader = feed().loader(num_workers=workers)
    first = []
    for batch in loader:
        first.append(batch["item_id"].tolist())
        if len(first) == 7:
            break
    state = loader.state_dict()
    assert state == {"epoch": 0, "batches": 7, "seed": 3}
    resumed = feed().loader(num_workers=workers)
    resumed.load_state_dict(state)
    rest = [b["item_id"].tolist() for b in resumed]
    assert first + rest == full
    assert resumed.state_dict()["batches"] == len(full)


def test_resume_refuses_a_different_worker_count(files) -> None:
    loader = SelectionFeed(files, batch_size=30).loader(num_workers=0)
    loader.load_state_dict({"epoch": 0, "batches": 2, "seed": 0})
    loader.feed._skip = (0, 2, 2)
    with pytest.raises(ValueError, match="saved with 2 DataLoader workers"):
        next(iter(loader))


def test_ray_and_hugging_face_views(files, ray_session) -> None:
    feed = SelectionFeed(files, columns=["item_id", "weight"])
    ds = feed.to_ray_dataset()
    assert ds.count() == N
    assert sorted(ds.to_pandas()["item_id"].tolist()) == list(range(N))
    hf = feed.to_hf_dataset()
    assert hf.num_rows == N and hf.column_names == ["item_id", "weight"]
    assert hf[5]["item_id"] == 5


def test_from_store_reads_the_published_selection(store, tmp_path) -> None:
    src = write_jsonl(
        tmp_path / "a.jsonl", [{"id": i, "text": f"item number {i}"} for i in range(200)]
    )
    ingest(store, [str(src)], IngestConfig(id_column="id", text_column="text"))
    select_items(store, "train", 0.25, policy="random", balance="none")
    pub = publish(store, "train")
    assert pub.rows == 50 and pub.new
    assert not publish(store, "train").new  # the same version is not written twice
    feed = SelectionFeed.from_store(store, "train", columns=["id"], batch_size=16)
    rows = [i for b in feed.loader() for i in b["id"].tolist()]
    assert len(rows) == 50 and len(set(rows)) == 50
    with pytest.raises(ValueError, match="no published selection 'test'"):
        SelectionFeed.from_store(store, "test")


def test_real_ddp_ranks_with_two_workers_each_read_every_row_once(files, tmp_path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    script = Path(__file__).with_name("ddp_feed.py")
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path)]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [(r["rank"], r["world"]) for r in ranks] == [(0, 2), (1, 2)]  # from torch.distributed
    assert sorted(ranks[0]["ids"] + ranks[1]["ids"]) == list(range(N))


def test_loader_refuses_settings_that_would_break_epochs_or_batches(files) -> None:
    feed = SelectionFeed(files)
    with pytest.raises(ValueError, match="persistent_workers"):
        feed.loader(num_workers=2, persistent_workers=True)
    with pytest.raises(ValueError, match="leave DataLoader batch_size unset"):
        feed.loader(batch_size=8)
