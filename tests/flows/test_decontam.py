"""thresher decontaminate end to end: real store, real Ray; incremental; select skips."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.flows.decontam import decontaminate
from thresher.flows.select import select_items
from thresher.storage.errors import ThresherError
from thresher.storage.ingest import IngestConfig, ingest

from tests.flows.test_cli import thresher
from tests.helpers import write_jsonl

TEXT = IngestConfig(id_column="id", text_column="text")
QUESTION = "which planet in the solar system has the largest number of known moons today"


def corpus(start: int, n: int) -> list[dict]:
    rows = [
        {"id": i, "text": f"note {i} about cooking rice with water and salt"}
        for i in range(start, start + n)
    ]
    rows[0]["text"] = f"Quiz: {QUESTION.upper()}? Answer below."  # planted, case changed
    return rows


def contaminated(store) -> list[int]:
    rows = store.query("SELECT i.id FROM contamination c JOIN items i USING (item_id) ORDER BY 1")
    return rows.column(0).to_pylist()


def test_decontaminate_is_incremental_and_select_leaves_items_out(
    store, tmp_path, ray_session
) -> None:
    write_jsonl(tmp_path / "a.jsonl", corpus(0, 10))
    ingest(store, [str(tmp_path / "a.jsonl")], TEXT)
    pq.write_table(pa.table({"question": [QUESTION, "too short"]}), tmp_path / "eval.parquet")
    evals = [str(tmp_path / "eval.parquet")]
    with pytest.raises(ThresherError, match="no column 'text'; columns: question"):
        decontaminate(store, evals, 8, text_column="text")
    report = decontaminate(store, evals, 8)  # the question column is guessed
    assert report.checked == 10 and contaminated(store) == [0]
    row = store.query("SELECT eval_source, overlap FROM contamination").to_pylist()[0]
    assert row["eval_source"].endswith("eval.parquet") and row["overlap"] == 6
    # 14 words: 7 8-grams, less the last, whose "today" reads "today?" in the item
    assert decontaminate(store, evals, 8).run_id is None  # nothing new
    write_jsonl(tmp_path / "b.jsonl", corpus(100, 5))
    ingest(store, [str(tmp_path / "b.jsonl")], TEXT)
    (tmp_path / "eval.parquet").rename(tmp_path / "moved.parquet")  # saved n-grams are used
    again = decontaminate(store, [str(tmp_path / "moved.parquet")], 8)
    assert again.checked == 5 and contaminated(store) == [0, 100]
    picked = select_items(store, "all", 1.0, policy="random", balance="none")
    assert picked.candidates == 13
    kept = select_items(store, "all2", 1.0, policy="random", balance="none", keep_contaminated=True)
    assert kept.candidates == 15


def test_decontaminate_command(tmp_path) -> None:
    write_jsonl(tmp_path / "a.jsonl", corpus(0, 6))
    write_jsonl(tmp_path / "eval.jsonl", [{"prompt": QUESTION, "answer": "Saturn"}])
    (tmp_path / "empty.jsonl").write_text("\n \n")
    thresher("init", tmp_path / "s")
    thresher("ingest", tmp_path / "s", tmp_path / "a.jsonl", "--text-column", "text")
    out = thresher(
        "decontaminate", tmp_path / "s", tmp_path / "eval.jsonl", "--text-column", "prompt"
    )
    assert "6 item checks, 1 contaminated" in out.stdout
    bad = thresher(
        "decontaminate",
        tmp_path / "s",
        tmp_path / "empty.jsonl",
        "--text-column",
        "prompt",
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("thresher: error:")
    assert bad.stderr.strip().endswith("empty.jsonl: the eval file is empty")
    assert len(bad.stderr.strip().splitlines()) == 1
    guessed = thresher("decontaminate", tmp_path / "s", tmp_path / "empty.jsonl", check=False)
    assert guessed.stderr.strip().endswith("empty.jsonl: the eval file is empty")


def test_config_section_resolves_eval_files(tmp_path) -> None:
    from thresher.flows import config

    raw = {
        "store": "s",
        "ingest": {"sources": ["a"]},
        "decontaminate": {"eval_files": ["evals/mmlu.jsonl"], "ngram": 8},
    }
    cfg = config.parse(raw, tmp_path / "c.toml")
    assert cfg.decontaminate.eval_files == (str(tmp_path / "evals" / "mmlu.jsonl"),)
    assert (cfg.decontaminate.ngram, cfg.decontaminate.text_column) == (8, None)
    raw["decontaminate"] = {"ngram": 0}
    with pytest.raises(ThresherError, match=r"\[decontaminate\] ngram: 0 is out of range"):
        config.parse(raw, tmp_path / "c.toml")
