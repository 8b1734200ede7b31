"""The quality metric on a real store with the real MiniLM: a reference set of one topic
ranks that topic first; reruns score only new items; a new reference rescores all."""

from __future__ import annotations

import numpy as np
import pytest

from thresher.flows.demo_data import make_records
from thresher.flows.embed import IndexConfig, embed
from thresher.flows.score import score
from thresher.scoring.embedders import EmbedderConfig
from thresher.storage.ingest import IngestConfig, ingest
from thresher.storage.store import Store

from tests.flows.test_cli import thresher
from tests.helpers import snapshot, write_jsonl

FAST = EmbedderConfig(max_seq_length=32, batch_size=32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ray_session):
    tmp = tmp_path_factory.mktemp("quality")
    recs = make_records(500, seed=11)
    write_jsonl(tmp / "a.jsonl", recs[:300])
    write_jsonl(tmp / "b.jsonl", recs[300:400])
    # the reference: sports texts the store does not hold
    write_jsonl(
        tmp / "ref.jsonl", [{"body": r["text"]} for r in recs[400:] if r["topic"] == "sports"]
    )
    write_jsonl(
        tmp / "ref2.jsonl", [{"body": r["text"]} for r in recs[400:] if r["topic"] == "cooking"]
    )
    store = Store.init(tmp / "store")
    ingest(store, [str(tmp / "a.jsonl")], IngestConfig(id_column="doc_id", text_column="text"))
    embed(store, FAST, IndexConfig(dims=(16, 64)))
    return store, tmp


def _mean_by_topic(store: Store) -> dict[str, float]:
    rows = store.query(
        "SELECT i.topic, avg(s.value) AS m FROM scores s JOIN items i USING (item_id) "
        "WHERE s.metric = 'quality' AND s.run_id = (SELECT max(run_id) FROM scores "
        "WHERE metric = 'quality') GROUP BY 1"
    ).to_pylist()
    return {r["topic"]: r["m"] for r in rows}


def test_reference_topic_scores_highest_then_incremental_then_rescored(corpus) -> None:
    store, tmp = corpus
    ref = str(tmp / "ref.jsonl")
    first = score(store, metrics=["quality"], reference=ref)
    assert first.scored == {"quality": 300}
    means = _mean_by_topic(store)
    assert max(means, key=means.get) == "sports"
    assert means["sports"] > 0.5 > max(v for k, v in means.items() if k != "sports")
    assert score(store, metrics=["quality"], reference=ref).scored == {"quality": 0}
    ingest(store, [str(tmp / "b.jsonl")], IngestConfig(id_column="doc_id", text_column="text"))
    embed(store, FAST, IndexConfig(dims=(16, 64)))
    assert score(store, metrics=["quality"], reference=ref).scored == {"quality": 100}
    probes = sorted(p.name for p in (store.root / "probes").iterdir())
    assert len(probes) == 1  # the saved probe was reused
    other = score(store, metrics=["quality"], reference=str(tmp / "ref2.jsonl"))
    assert other.scored == {"quality": 400}
    means = _mean_by_topic(store)
    assert max(means, key=means.get) == "cooking"


@pytest.mark.parametrize(
    ("body", "args", "message"),
    [
        ("", [], "the reference file is empty"),
        ('{"body": "x"}\n', ["--reference-column", "text"], "no column 'text'; columns: body"),
        (None, [], "no such reference file"),
    ],
)
def test_bad_reference_is_one_line_and_nothing_is_written(corpus, body, args, message) -> None:
    store, tmp = corpus
    path = tmp / "bad.jsonl"
    path.unlink(missing_ok=True)
    if body is not None:
        path.write_text(body)
    before = snapshot(store)
    out = thresher(
        "score", store.root, "--metrics", "quality", "--reference", path, *args, check=False
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert message in out.stderr
    assert snapshot(store) == before


def test_quality_and_reference_go_together(corpus) -> None:
    store, tmp = corpus
    with pytest.raises(ValueError, match="--metrics quality and --reference FILE go together"):
        score(store, metrics=["quality"])
    with pytest.raises(ValueError, match="go together"):
        score(store, reference=str(tmp / "ref.jsonl"))
    assert np.isfinite(list(_mean_by_topic(store).values())).all()
