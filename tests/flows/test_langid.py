"""thresher langid end to end: real store, real Ray; incremental; the filter's language rule."""

from __future__ import annotations

import pytest

from thresher.flows.filter import filter_items
from thresher.flows.langid import identify_languages
from thresher.selection.filters import Rules
from thresher.storage.errors import ThresherError
from thresher.storage.ingest import IngestConfig, ingest

from tests.flows.test_cli import thresher
from tests.helpers import write_jsonl

TEXT = IngestConfig(id_column="id", text_column="text")
FIRST = [
    "The shop closes early on Sundays",
    "Le magasin ferme tôt le dimanche",
    "Магазин закрывается рано по воскресеньям",
    "这家商店星期天关门很早",
]
SECOND = ["She forgot her umbrella at work", "ร้านปิดเร็วในวันอาทิตย์"]


def languages(store) -> dict[int, str]:
    rows = store.query("SELECT i.id, l.language FROM languages l JOIN items i USING (item_id)")
    return dict(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist(), strict=True))


def test_langid_is_incremental_and_feeds_the_filter(store, tmp_path, ray_session) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"id": i, "text": t} for i, t in enumerate(FIRST)])
    ingest(store, [str(tmp_path / "a.jsonl")], TEXT)
    rules = Rules(languages=("en",), min_language_confidence=0.5)
    with pytest.raises(ThresherError, match="thresher langid"):
        filter_items(store, rules)
    report = identify_languages(store)
    assert report.identified == 4
    assert languages(store) == {0: "en", 1: "fr", 2: "ru", 3: "zh"}
    assert identify_languages(store).run_id is None  # nothing new: no run
    write_jsonl(tmp_path / "b.jsonl", [{"id": 10 + i, "text": t} for i, t in enumerate(SECOND)])
    ingest(store, [str(tmp_path / "b.jsonl")], TEXT)
    assert identify_languages(store).identified == 2  # only the new items
    assert languages(store)[11] == "th"
    filtered = filter_items(store, rules)
    assert (filtered.checked, filtered.dropped) == (6, 4)
    reasons = store.query(
        "SELECT i.id, f.reason FROM filtered f JOIN items i USING (item_id) ORDER BY 1"
    ).to_pylist()
    assert [(r["id"], r["reason"]) for r in reasons] == [
        (1, "language: fr"),
        (2, "language: ru"),
        (3, "language: zh"),
        (11, "language: th"),
    ]


def test_langid_command(tmp_path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"id": i, "text": t} for i, t in enumerate(FIRST)])
    thresher("init", tmp_path / "s")
    thresher("ingest", tmp_path / "s", tmp_path / "a.jsonl", "--text-column", "text")
    out = thresher("langid", tmp_path / "s", "-q").stdout
    assert "4 new items identified" in out and "zh" in out
    assert "0 new items identified" in thresher("langid", tmp_path / "s", "-q").stdout
    bad = thresher("langid", tmp_path / "missing", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("thresher: error:")


def test_config_languages(tmp_path) -> None:
    from thresher.flows import config

    raw = {"store": "s", "ingest": {"sources": ["a"]}, "filter": {"languages": ["en", "ms"]}}
    cfg = config.parse(raw, tmp_path / "c.toml")
    assert Rules(**vars(cfg.filter)).languages == ("en", "ms")
    raw["filter"] = {"languages": ["English"]}
    with pytest.raises(ThresherError, match=r"\[filter\] languages: 'English' is not a language"):
        config.parse(raw, tmp_path / "c.toml")
