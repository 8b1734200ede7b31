"""thresher pii on a real store: spans recorded once per item, redacted on the way out."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from thresher.flows.pii import scan_pii
from thresher.flows.select import export, publish, select_items
from thresher.storage.feed import SelectionFeed
from thresher.storage.ingest import IngestConfig, ingest
from thresher.storage.redact import redact

from tests.helpers import write_jsonl

TEXTS = [
    "mail jane@example.org or call (202) 555-0143",
    "nothing to hide, version 1.2.3.4",
    "server 10.0.0.7 card 4111 1111 1111 1111",
    "plain text",
]


@pytest.fixture
def pii_store(store, tmp_path, ray_session):
    write_jsonl(tmp_path / "a.jsonl", [{"id": i, "text": t} for i, t in enumerate(TEXTS)])
    ingest(store, [str(tmp_path / "a.jsonl")], IngestConfig(id_column="id", text_column="text"))
    return store


def test_spans_once_then_only_new_items(pii_store, tmp_path) -> None:
    r = scan_pii(pii_store)
    assert (r.scanned, r.items_with_pii) == (4, 2)
    assert r.by_kind == {"credit_card": 1, "email": 1, "ip": 1, "phone": 1}
    rows = pii_store.query(
        'SELECT i.text, p.kind, p.start, p."end" FROM pii p JOIN items i USING (item_id) '
        "ORDER BY i.id, p.start"
    ).to_pylist()
    assert [r["text"][r["start"] : r["end"]] for r in rows] == [
        "jane@example.org",
        "(202) 555-0143",
        "10.0.0.7",
        "4111 1111 1111 1111",
    ]
    assert scan_pii(pii_store).run_id is None  # nothing new
    write_jsonl(tmp_path / "b.jsonl", [{"id": 9, "text": "ssn 078-05-1120"}])
    ingest(pii_store, [str(tmp_path / "b.jsonl")], IngestConfig(id_column="id"))
    assert (scan_pii(pii_store).scanned, pii_store.query("SELECT * FROM pii").num_rows) == (1, 5)


def test_export_redacts_and_refuses_unscanned(pii_store, tmp_path) -> None:
    select_items(pii_store, "all", 1.0, policy="random", balance="none")
    with pytest.raises(ValueError, match="4 of 4 items of selection 'all' were never scanned"):
        export(pii_store, "all", str(tmp_path / "o1"), redact_pii=True)
    scan_pii(pii_store)
    export(pii_store, "all", str(tmp_path / "o2"), redact_pii=True)
    table = ds.dataset(tmp_path / "o2").to_table().sort_by("id")
    assert table.column("text").to_pylist() == [
        "mail <EMAIL> or call <PHONE>",
        "nothing to hide, version 1.2.3.4",
        "server <IP> card <CREDIT_CARD>",
        "plain text",
    ]
    assert "pii_spans" not in table.column_names
    export(pii_store, "all", str(tmp_path / "o3"))  # without the flag: the text as stored
    plain = ds.dataset(tmp_path / "o3").to_table().sort_by("id").column("text").to_pylist()
    assert plain == TEXTS


def test_feed_redacts_published_rows(pii_store) -> None:
    select_items(pii_store, "all", 1.0, policy="random", balance="none")
    publish(pii_store, "all")
    with pytest.raises(ValueError, match="published without PII spans"):
        SelectionFeed.from_store(pii_store, "all", redact_pii=True)
    scan_pii(pii_store)
    select_items(pii_store, "all", 1.0, policy="random", balance="none")  # a new version
    publish(pii_store, "all")
    plain = SelectionFeed.from_store(pii_store, "all", batch_size=10)
    assert "pii_spans" not in plain.columns
    assert sorted(next(iter(plain))["text"]) == sorted(TEXTS)
    feed = SelectionFeed.from_store(pii_store, "all", batch_size=10, redact_pii=True)
    batch = next(iter(feed))
    assert "pii_spans" not in batch
    assert "mail <EMAIL> or call <PHONE>" in batch["text"]
    assert "server <IP> card <CREDIT_CARD>" in batch["text"]
    assert feed.to_hf_dataset()["text"] == batch["text"]


def test_redact_keeps_text_between_spans() -> None:
    spans = [{"kind": "ip", "start": 4, "end": 8}, {"kind": "email", "start": 0, "end": 3}]
    assert redact("a@b 1234 end", spans) == "<EMAIL> <IP> end"
