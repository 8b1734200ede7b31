"""The README's stage-by-stage tour, from the command line, on a partly labelled corpus:
every command exits 0 with no traceback, through `publish`, `report` (rendered in
headless Chromium) and `examples/train.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from thresher.flows.demo_data import make_records

from tests.flows.test_cli import THRESHER
from tests.helpers import write_jsonl

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train.py"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; .ci/run installs it when missing
# as root, in a closed network: no sandbox, no background connections (see the env notes)
CHROMIUM_ARGS = [
    *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"),
    *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
]


def render(page: Path, screenshot: Path) -> tuple[list[str], list[float], list[str]]:
    """Open `page` in headless Chromium: (chart titles, each chart's drawn area in px^2,
    console errors); a full-page screenshot goes to `screenshot`."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1200, "height": 900})
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.goto(page.as_uri())
        charts = tab.eval_on_selector_all(
            "div.chart",
            "els => els.map(e => [e.dataset.chart, (() => { const s = e.querySelector('svg');"
            " if (!s) return 0; const b = s.getBoundingClientRect();"
            " return s.childElementCount ? b.width * b.height : 0; })()])",
        )
        tab.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return [c[0] for c in charts], [c[1] for c in charts], errors


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    # small inputs run in-process, as for a user (the tests' default forces Ray everywhere)
    return {k: v for k, v in os.environ.items() if k != "THRESHER_LOCAL_MAX_ROWS"}


def run(env: dict[str, str], *args: object) -> str:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, f"{args} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


@pytest.mark.slow  # about 60 s: CI runs it in its `pytest -m slow` pass
def test_the_stage_by_stage_tour_on_a_partly_labelled_corpus(tmp_path: Path, env) -> None:
    records = make_records(500, seed=11)
    for r in records[::3]:
        del r["topic"]  # a third of the rows have no label
    (tmp_path / "data" / "more").mkdir(parents=True)
    write_jsonl(tmp_path / "data" / "a.jsonl", records[:300])
    write_jsonl(tmp_path / "data" / "more" / "b.jsonl", records[300:])
    s = tmp_path / "my-store"
    t = [THRESHER]
    run(env, *t, "init", s)
    out = run(
        env, *t, "ingest", s, tmp_path / "data", "--id-column", "doc_id",
        "--text-column", "text", "--label-column", "topic",
    )  # fmt: skip
    assert "500 rows kept" in out
    run(env, *t, "embed", s, "--max-seq-length", "32")
    run(env, *t, "dedup", s)
    hits = json.loads(run(env, *t, "search", s, "--like-id", "7", "-k", "3", "--format", "json"))
    assert len(hits) == 3 and {"doc_id", "text", "label"} <= set(hits[0])
    run(env, *t, "score", s)
    out = run(env, *t, "select", s, "small", "--keep", "0.3")
    assert "auto = " in out
    run(env, *t, "export", s, "small", tmp_path / "small-parquet")
    assert run(env, *t, "sql", s, "SELECT count(*) AS n FROM items", "--format", "csv") == (
        "n\n500\n"
    )
    run(env, *t, "runs", s, "--stages")
    out = run(env, *t, "publish", s, "small")
    assert "published as version" in out
    again = run(env, *t, "publish", s, "small")
    assert "already published" in again and "nothing to do" in again
    trained = run(env, sys.executable, EXAMPLE, s, "--selection", "small", "--epochs", "1")
    assert "skipped" in trained and "with no label" in trained
    assert "held-out accuracy" in trained
    run(env, *t, "learn", s, "al", "--budget", "60", "--rounds", "2", "-q")
    # the report: every section drew, in a real browser, offline
    out = run(env, *t, "report", s, "--out", tmp_path / "report.html")
    assert out.strip() == f"report written to {tmp_path / 'report.html'}"
    html = (tmp_path / "report.html").read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (Debian's chromium package): the report's browser check")
    titles, areas, errors = render(tmp_path / "report.html", tmp_path / "report.png")
    assert errors == []
    assert {"runs", "funnel", "duplicates per method", "embedding map"} <= set(titles)
    assert {"composition", "score prototype_distance", "learning curves"} <= set(titles)
    assert all(a > 10_000 for a in areas), dict(zip(titles, areas, strict=True))
    assert (tmp_path / "report.png").stat().st_size > 50_000
