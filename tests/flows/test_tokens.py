"""thresher tokens on a real store: counted once, new items only, one tokenizer."""

from __future__ import annotations

import shutil

import pytest

from thresher.flows.tokens import count_item_tokens, plan
from thresher.scoring.tokens import tokenizer_dir
from thresher.storage.ingest import IngestConfig, ingest

from tests.helpers import write_jsonl


def test_counts_once_then_new_items_and_plan(store, tmp_path, ray_session) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"id": i, "text": "the cat sat"} for i in range(3)])
    ingest(store, [str(tmp_path / "a.jsonl")], IngestConfig(id_column="id", text_column="text"))
    assert plan(store, 10).counted_items == 0
    r = count_item_tokens(store)
    assert (r.items, r.tokens) == (3, 9)
    assert count_item_tokens(store).run_id is None
    write_jsonl(tmp_path / "b.jsonl", [{"id": 7, "text": "hello"}])
    ingest(store, [str(tmp_path / "b.jsonl")], IngestConfig(id_column="id"))
    assert (count_item_tokens(store).items, store.query("SELECT * FROM tokens").num_rows) == (1, 4)
    p = plan(store, 100)
    assert (p.optimal, p.kept_tokens, p.keep_tokens) == (2000, 10, 10)
    assert plan(store, 0).keep_tokens == 0


def test_another_tokenizer_is_refused(store, tmp_path, ray_session) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "text": "x"}])
    ingest(store, [str(tmp_path / "a.jsonl")], IngestConfig(id_column="id", text_column="text"))
    count_item_tokens(store)
    other = tmp_path / "tok"
    other.mkdir()
    shutil.copy(tokenizer_dir("minilm") / "tokenizer.json", other)
    with pytest.raises(ValueError, match="made with minilm"):
        count_item_tokens(store, str(other))


def test_select_keep_tokens_sizes_the_selection_in_tokens(store, tmp_path) -> None:
    import subprocess

    from thresher.flows.select import select_items

    from tests.flows.test_cli import THRESHER
    from tests.helpers import snapshot

    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    rows = [{"id": i, "text": " ".join(words[: 1 + i % 8]) + f" {i}"} for i in range(60)]
    write_jsonl(tmp_path / "a.jsonl", rows)
    ingest(store, [str(tmp_path / "a.jsonl")], IngestConfig(id_column="id", text_column="text"))
    with pytest.raises(ValueError, match="60 of 60 candidates have no token count: run thresher"):
        select_items(store, "t", 1.0, policy="random", balance="none", keep_tokens=100)
    total = count_item_tokens(store).tokens
    r = select_items(store, "t", 1.0, policy="random", balance="none", keep_tokens=total // 3)
    got = (
        store.query(
            "SELECT sum(tokens) FROM tokens SEMI JOIN "
            f"(SELECT item_id FROM selections WHERE run_id = {r.run_id}) USING (item_id)"
        )
        .column(0)[0]
        .as_py()
    )
    assert got == r.tokens and 0.95 * (total // 3) <= got <= total // 3
    whole = select_items(store, "all", 1.0, policy="random", balance="none", keep_tokens=10**9)
    assert (whole.selected, whole.tokens) == (60, total)
    before = snapshot(store)
    proc = subprocess.run(
        [THRESHER, "select", store.root, "u", "--keep", "0.5", "--keep-tokens", "9"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "one of --keep FRACTION or --keep-tokens N" in proc.stderr
    assert snapshot(store) == before
