"""`thresher demo`: the curate flow on the bundled corpus, with a commentary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from thresher.flows.demo_data import write_demo_sources
from thresher.flows.embed import search
from thresher.flows.output import summary_table
from thresher.flows.select import latest_publication
from thresher.storage.sql import read_only_query
from thresher.storage.store import Store

QUERIES = {
    "items per topic, and how many the selection kept": "SELECT i.topic, count(*) AS items, "
    "count(s.item_id) AS selected FROM items i LEFT JOIN (SELECT item_id FROM selections "
    "WHERE selection = 'train') s USING (item_id) GROUP BY i.topic ORDER BY i.topic",
    "why rows were rejected": "SELECT source, row, reason FROM rejects ORDER BY source, row",
    "rows dropped by each filter rule": "SELECT split_part(reason, ':', 1) AS rule, "
    "count(*) AS rows FROM filtered GROUP BY 1 ORDER BY 1",
    "duplicates by method": "SELECT method, count(*) AS items, round(min(similarity), 3) AS "
    "min_similarity FROM duplicates GROUP BY method ORDER BY method",
    "the hardest (least typical) kept item of each cluster": "SELECT c.cluster_id, "
    "arg_max(i.text, c.distance) AS hardest, round(max(c.distance), 3) AS distance "
    "FROM clusters c JOIN items i USING (item_id) GROUP BY c.cluster_id ORDER BY c.cluster_id",
    "a near duplicate and the item kept in its place": "SELECT i.text AS dropped, "
    "k.text AS kept, round(d.similarity, 3) AS jaccard FROM duplicates d JOIN items i "
    "USING (item_id) JOIN items k ON k.item_id = d.kept_id WHERE d.method = 'fuzzy' "
    "ORDER BY d.similarity, d.item_id LIMIT 2",
}


DEMO_CONFIG = """\
# the curate flow of `thresher demo`; run it again with: thresher run {path}
store = "store"

[ingest]
sources = ["sources"]
id_column = "doc_id"
label_column = "topic"

[filter]
min_chars = 20
max_repeated_ngram_ratio = 0.5

[embed]
max_seq_length = 64

[select]
name = "train"
keep = 0.5
"""


def run_demo(
    root: Path,
    *,
    quiet: bool,
    echo: Callable[[str], object],
    progress,
    program: str = "thresher",
) -> Store:
    """Run the curate flow on the demo corpus under `root` and show what each stage did;
    the hints name the command as `program` (e.g. `.venv/bin/thresher`)."""
    from thresher.flows.runner import run_config

    echo(f"building the demo store in {root.absolute()} (a rerun resumes it)")
    write_demo_sources(root / "sources")
    config = root / "curate.toml"
    config.write_text(DEMO_CONFIG.format(path=config))
    echo(f"demo config: {config}")
    result = run_config(str(config), bars=lambda label: progress(label, quiet))
    store = Store(result["store"])
    echo(f"\ncurate flow (Prefect driving Ray), run {result['run_id']}:")
    echo(summary_table(result["stages"]))
    for title, query in QUERIES.items():
        echo(f'\n{title}:\n  {program} sql {store.root} "{query}"')
        echo(summary_table(read_only_query(store, query).to_pylist()))
    probe = "bread baking in a hot oven"
    echo(f'funnel search:\n  {program} search {store.root} --text "{probe}" -k 3')
    echo(summary_table(search(store, text=probe, k=3).to_pylist()))
    pub = latest_publication(store, "train")
    assert pub is not None
    echo(f"published selection 'train' version {pub.version} ({pub.rows} rows): {pub.path}")
    echo(f'next: {program} sql {store.root} "SELECT * FROM runs"')
    return store
