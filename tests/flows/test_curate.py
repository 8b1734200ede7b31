"""The curate flow through real Prefect (ephemeral) and real Ray, as `thresher run`.

One reference store is built once; the incremental run and the kill/resume
run are compared against it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.flows.demo_data import make_records
from thresher.storage.feed import SelectionFeed
from thresher.storage.store import Store

from tests.flows.test_cli import THRESHER, thresher
from tests.helpers import write_jsonl

CONFIG = """\
store = "{store}"
[ingest]
sources = [{sources}]
id_column = "doc_id"
label_column = "topic"
[filter]
min_chars = 25
[embed]
max_seq_length = 32
[dedup]
semantic = 0.97
[score]
clusters = 6
metrics = ["prototype", "density", "uncertainty", "label_issue"]
[tokens]
enabled = true
[pii]
enabled = true
[select]
name = "train"
keep = 0.4
drop_label_issues = 0.02
publish_uri = "{store}-out"
[flow]
retries = 0
"""


def _config(folder: Path, store: str, sources: list[str]) -> Path:
    path = folder / f"{store}.toml"
    path.write_text(CONFIG.format(store=store, sources=", ".join(f'"{s}"' for s in sources)))
    return path


def _stages(store: Store, run_id: int) -> dict[str, dict]:
    rows = store.query(
        "SELECT stage, key, rows_in, rows_kept, rows_dropped, rows_rejected, seconds FROM stages "
        "WHERE run_id = $r",
        {"r": run_id},
    ).to_pylist()
    return {r["stage"]: r for r in rows}


def _state(store: Store) -> dict[str, object]:
    """What a run leaves in the store, independent of run ids."""

    def ids(sql: str) -> list[int]:
        return store.query(sql + " ORDER BY 1").column(0).to_pylist()

    return {
        "items": ids("SELECT item_id FROM items"),
        "filtered": ids("SELECT item_id FROM filtered"),
        "duplicates": ids("SELECT item_id FROM duplicates"),
        "embeddings": ids("SELECT item_id FROM embeddings"),
        "scored": ids("SELECT item_id FROM scores WHERE metric = 'prototype_distance'"),
        "selection": ids(
            "SELECT item_id FROM selections WHERE run_id = (SELECT max(run_id) FROM selections)"
        ),
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("curate")
    records = make_records(1500, seed=3)
    records[5]["text"] = "too short"
    write_jsonl(folder / "a.jsonl", records[:700])
    with (folder / "a.jsonl").open("a") as f:
        f.write("not json\n")  # one reject: counted as rejected, not dropped
    pq.write_table(pa.Table.from_pylist(records[700:1300]), folder / "b.parquet")
    write_jsonl(folder / "c.jsonl", records[1300:])  # arrives later
    return folder


@pytest.fixture(scope="module")
def reference(corpus: Path) -> dict:
    """An uninterrupted first run over a and b, then c added and run again."""
    cfg = _config(corpus, "ref", ["a.jsonl", "b.parquet"])
    first = thresher("run", "-q", cfg)
    store = Store(corpus / "ref")
    state = _state(store)
    first_run = store.query("SELECT max(run_id) FROM runs").column(0)[0].as_py()
    cfg.write_text(cfg.read_text().replace('"b.parquet"]', '"b.parquet", "c.jsonl"]'))
    second = thresher("run", "-q", cfg)
    return {
        "store": store,
        "first": first,
        "state": state,
        "first_run": first_run,
        "second": second,
    }


@pytest.mark.slow  # the two reference flow runs take ~95 s; CI runs -m slow
def test_run_goes_through_every_stage_and_records_it(reference: dict) -> None:
    store: Store = reference["store"]
    run = store.query(
        "SELECT flow, config FROM runs WHERE run_id = $r", {"r": reference["first_run"]}
    ).to_pylist()[0]
    assert run["flow"] == "curate"
    config = json.loads(run["config"])
    assert config["select"]["keep"] == 0.4 and config["filter"]["min_chars"] == 25
    stages = _stages(store, reference["first_run"])
    assert list(stages) == [
        *("ingest", "filter", "dedup", "embed", "semantic", "score", "tokens", "pii"),
        *("select", "publish"),
    ]
    assert stages["ingest"]["rows_kept"] == 1300
    assert (stages["ingest"]["rows_dropped"], stages["ingest"]["rows_rejected"]) == (0, 1)
    # the run row counts each item once and takes the flow's wall time, not the commit's
    row = store.query(
        "SELECT rows_in, rows_kept, rows_dropped, rows_rejected, "
        "epoch(finished_at - started_at) AS s FROM runs WHERE run_id = $r",
        {"r": reference["first_run"]},
    ).to_pylist()[0]
    dropped = sum(stages[s]["rows_dropped"] for s in ("filter", "dedup", "semantic"))
    assert (row["rows_in"], row["rows_rejected"], row["rows_dropped"]) == (1301, 1, dropped)
    assert row["rows_kept"] == 1300 - dropped
    seconds = [r["seconds"] for r in stages.values()]
    assert all(s is not None and s >= 0 for s in seconds)
    assert row["s"] >= sum(seconds) > 1.0  # a curate run takes seconds, not the 0 of before
    assert stages["filter"]["rows_dropped"] >= 1  # "too short"
    state = reference["state"]
    assert len(state["items"]) == 1300
    assert (
        store.query("SELECT reason FROM filtered").column(0).to_pylist().count("min_chars: 9 < 25")
        == 1
    )
    # every later stage skipped the filtered rows; duplicates are never selected
    assert not set(state["filtered"]) & set(state["embeddings"])
    # exact and fuzzy dedup ran before embed: none of their duplicates was embedded
    text_dups = store.query(
        "SELECT method, count(*) AS n, count(e.item_id) AS embedded FROM duplicates d "
        "LEFT JOIN embeddings e USING (item_id) GROUP BY method ORDER BY method"
    ).to_pylist()
    by_method = {r["method"]: r for r in text_dups}
    assert by_method["exact"]["n"] > 0 and by_method["fuzzy"]["n"] > 0
    assert by_method["exact"]["embedded"] == 0 and by_method["fuzzy"]["embedded"] == 0
    kept = len(state["items"]) - len(state["filtered"]) - len(state["duplicates"])
    assert len(state["scored"]) == kept
    assert stages["tokens"]["rows_in"] == stages["pii"]["rows_in"] == kept
    # label issues scored for every kept item; select left the worst 2% out first
    issues = (
        store.query(
            "SELECT count(*) FROM scores WHERE metric = 'label_issue' AND run_id < $r",
            {"r": reference["first_run"]},
        )
        .column(0)[0]
        .as_py()
    )
    assert issues == kept
    assert (
        "likely mislabelled left out first"
        in store.query("SELECT message FROM runs WHERE flow = 'select' ORDER BY run_id LIMIT 1")
        .column(0)[0]
        .as_py()
    )
    assert len(state["selection"]) == round(0.4 * kept)
    assert not set(state["selection"]) & set(state["duplicates"])
    assert "publish" in reference["first"].stdout


@pytest.mark.slow  # the two reference flow runs take ~95 s; CI runs -m slow
def test_second_run_with_a_new_file_processes_only_that_file(reference: dict) -> None:
    store: Store = reference["store"]
    last = store.query("SELECT max(run_id) FROM runs").column(0)[0].as_py()
    stages = _stages(store, last)
    assert stages["ingest"]["rows_kept"] == 200
    assert stages["filter"]["rows_in"] == 200
    assert stages["embed"]["rows_in"] <= 200
    assert stages["dedup"]["rows_in"] <= 200
    # label issues are global: every labelled kept item is scored again, the rest only new
    assert stages["score"]["rows_in"] > 1000
    # tokens and PII: only the new file's kept items, each once
    assert 0 < stages["tokens"]["rows_in"] == stages["pii"]["rows_in"] <= 200
    assert (
        store.query("SELECT count(*) = count(DISTINCT item_id) FROM pii_checked")
        .column(0)[0]
        .as_py()
    )
    pubs = store.query("SELECT version, path, rows FROM publications ORDER BY version").to_pylist()
    assert len(pubs) == 2
    published = pq.read_table(store.root / pubs[-1]["path"])
    assert published.num_rows == pubs[-1]["rows"]
    assert {"item_id", "text", "topic", "weight"} <= set(published.column_names)
    # each version has its report beside its parts (pyarrow read the folder above)
    assert all((store.root / p["path"] / "_report.html").stat().st_size > 10_000 for p in pubs)
    # both versions were also copied to [select] publish_uri, each marked complete
    out = store.root.parent / "ref-out" / "train"
    assert sorted(p.name for p in out.glob("v*/_SUCCESS")) == ["_SUCCESS", "_SUCCESS"]
    feed = SelectionFeed.from_uri(str(out.parent), "train")
    assert feed.num_rows == pubs[-1]["rows"]
    assert (
        SelectionFeed.from_uri(str(out.parent), "train", pubs[0]["version"]).num_rows
        == (pubs[0]["rows"])
    )


@pytest.mark.slow  # a third full flow run (50 s); test_publish.py's SIGKILL test is default
def test_a_run_killed_mid_stage_resumes_to_the_same_selection(corpus: Path, reference: dict):
    cfg = _config(corpus, "killed", ["a.jsonl", "b.parquet"])
    root = corpus / "killed"
    proc = subprocess.Popen(
        [THRESHER, "run", "-q", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    killed_in = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        staged = list(root.glob("tables/embeddings/*.tmp"))
        if staged:
            os.killpg(proc.pid, signal.SIGKILL)
            killed_in = "embed"
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert killed_in == "embed", "the run finished before the embed stage could be killed"
    store = Store(root)
    assert store.query("SELECT count(*) FROM embeddings").column(0)[0].as_py() == 0
    assert not store.query("SELECT * FROM runs WHERE flow = 'curate'").num_rows

    thresher("run", "-q", cfg)
    state = _state(store)
    assert state == reference["state"]
    assert len(state["embeddings"]) == len(set(state["embeddings"]))  # nothing twice
    assert not list(root.glob("**/*.tmp"))


def test_bad_config_is_one_line_and_nothing_runs(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('store = "s"\n[ingest]\nsources = ["x"]\n[select]\nbalance = "topic"\n')
    proc = thresher("run", cfg, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"thresher: error: {cfg}: [select] balance: 'topic' is not allowed; "
        "allowed: auto, cluster, label, none"
    ]
    assert not (tmp_path / "s").exists()


def test_only_user_errors_are_not_retried() -> None:
    from prefect.states import Failed

    from thresher.flows.curate import _transient
    from thresher.storage.errors import ConfigError, ThresherError

    assert _transient(None, None, Failed(data=OSError("disk went away")))
    assert _transient(None, None, Failed(data=RuntimeError("ray worker died")))
    assert _transient(None, None, Failed(data=ValueError("a bug, not the user's")))
    assert not _transient(None, None, Failed(data=ThresherError("no such column")))
    assert not _transient(None, None, Failed(data=ConfigError("x.toml: [select] keep")))


@pytest.mark.slow  # the two reference flow runs take ~95 s; CI runs -m slow
def test_example_trains_with_ddp_on_the_published_selection(reference: dict) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "train.py"
    torchrun = Path(sys.executable).with_name("torchrun")
    store: Store = reference["store"]
    proc = subprocess.run(
        [
            *(str(torchrun), "--standalone", "--nproc_per_node", "2"),
            *(str(example), str(store.root), "--epochs", "2"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.findall(r"rank (\d) epoch (\d): (\d+) rows", proc.stdout)
    rows = {(rank, epoch): int(n) for rank, epoch, n in found}
    published = store.query("SELECT rows FROM publications ORDER BY version DESC LIMIT 1")
    total = published.column(0)[0].as_py()
    for epoch in ("0", "1"):  # the two ranks split each epoch's rows between them
        assert rows[("0", epoch)] + rows[("1", epoch)] == total
        assert abs(rows[("0", epoch)] - rows[("1", epoch)]) <= 1
    accuracy = float(re.findall(r"held-out accuracy: ([\d.]+)", proc.stdout)[0])
    assert accuracy > 0.5  # 6 topics: chance is about 0.17


def test_missing_source_is_one_line_and_no_store_is_made(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "s", ["nope/*.jsonl"])
    proc = thresher("run", cfg, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"thresher: error: {tmp_path}/nope/*.jsonl: no files match this pattern"
    ]
    assert not (tmp_path / "s").exists()


def _prefect_startup_timeout(env: dict[str, str]) -> str:
    code = (
        "import thresher.flows.curate\n"
        "from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as S\n"
        "print(S.value())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return proc.stdout.strip()


def test_prefect_server_start_timeout_is_longer_and_a_users_value_is_kept() -> None:
    env = {k: v for k, v in os.environ.items() if "EPHEMERAL_STARTUP" not in k}
    assert _prefect_startup_timeout(env) == "120"  # Prefect's own default: 20
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "7"
    assert _prefect_startup_timeout(env) == "7"


def test_prefect_server_start_timeout_is_one_line_naming_the_setting(tmp_path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"doc_id": 1, "text": "x", "topic": "t"}])
    config = _config(tmp_path, str(tmp_path / "s"), [str(tmp_path / "a.jsonl")])
    env = {**os.environ, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "0"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run(
        [THRESHER, "run", "-q", str(config)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("thresher: error: "), proc.stderr
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in lines[0]
    assert "PREFECT_API_URL" in lines[0]
