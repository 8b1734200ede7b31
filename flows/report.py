"""`thresher report`: one self-contained HTML page of what curation did.

Charts are drawn by matplotlib (Agg) as inline SVG: no script and no style come
from the network, the page opens offline, and each chart is a plain `<svg>` a
browser draws without JavaScript. Data comes from `storage.reporting`, which
reads aggregates and bounded samples only (see its MAP_POINTS), so the page of a
10M-item store is as small as that of a demo store.
"""

from __future__ import annotations

import datetime as dt
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from thresher.scoring.projection import pca_2d
from thresher.storage import queries, reporting
from thresher.storage.errors import ThresherError
from thresher.storage.store import Store

NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top;max-width:420px}th{background:#f4f4f4}
.chart svg{max-width:100%;height:auto}.empty{color:#888;font-style:italic}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1rem}
"""


def build(store: Store, out: Path) -> Path:
    """Write the report of `store` to `out` (an .html file); return its path."""
    import matplotlib

    matplotlib.use("Agg")  # no display; SVG output only
    matplotlib.rcParams["svg.fonttype"] = "none"  # text as text, not glyph paths: 4x smaller
    matplotlib.rcParams["svg.hashsalt"] = "thresher"  # the same store, the same page
    sections = [
        _section("Runs", _runs(store)),
        _section("Stage funnel", _funnel(store)),
        _section("Rejected and filtered rows", _rejects(store)),
        _section("Duplicates", _duplicates(store)),
        _section("Scores", _scores(store)),
        *_selection_sections(store),
        _section("Active learning", _learning(store)),
    ]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>thresher report: "
        f"{html.escape(store.root.name)}</title><style>{STYLE}</style></head><body>"
        f"<h1>thresher report: {html.escape(str(store.root))}</h1><p>made {stamp}</p>"
        + "".join(sections)
        + "</body></html>"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


# -- sections -------------------------------------------------------------------------------


def _runs(store: Store) -> str:
    rows = reporting.runs(store)
    if not rows:
        return _empty("no runs yet")
    fig, ax = _figure(7, 0.25 * len(rows) + 1.2)
    labels = [f"{r['run_id']} {r['flow']}" for r in rows]
    ax.barh(labels, [r["seconds"] or 0 for r in rows], color="#4c72b0")
    ax.invert_yaxis()
    ax.set_xlabel("wall seconds")
    cols = ["run_id", "flow", "started", "seconds", "rows_in", "rows_kept", "rows_dropped"]
    return _chart(fig, "runs") + _table(rows, [*cols, "rows_rejected", "message"])


def _funnel(store: Store) -> str:
    rows = reporting.funnel(store)
    if not rows:
        return _empty("no stage has run yet")
    fig, ax = _figure(7, 0.4 * len(rows) + 1.2)
    names = [r["stage"] for r in rows]
    left = np.zeros(len(rows))
    for key, color in (("kept", "#55a868"), ("dropped", "#c44e52"), ("rejected", "#8172b2")):
        values = np.array([r[key] or 0 for r in rows], float)
        ax.barh(names, values, left=left, color=color, label=key)
        left += values
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    ax.set_xlabel("rows (summed over the stage's runs)")
    return _chart(fig, "funnel") + _table(rows, list(rows[0]))


def _rejects(store: Store) -> str:
    parts = []
    for title, rows, key in (
        ("rejected at ingest, by reason", reporting.rejects(store), "reason"),
        ("dropped by the filter, by rule", reporting.filtered(store), "rule"),
    ):
        parts.append(f"<h3>{title}</h3>")
        parts.append(_bars(rows, key, "n", title) if rows else _empty("none"))
    return "".join(parts)


def _duplicates(store: Store) -> str:
    rows = reporting.duplicates(store)
    if not rows:
        return _empty("no duplicates found (or dedup has not run)")
    examples = reporting.duplicate_examples(store, _text_column(store))
    return (
        _bars(rows, "method", "n", "duplicates per method")
        + _table(rows, ["method", "n", "mean_similarity"])
        + "<h3>examples: the dropped item and the item kept in its place</h3>"
        + _table(examples, ["method", "similarity", "dropped", "kept"])
    )


def _scores(store: Store) -> str:
    hists = reporting.score_histograms(store)
    if not hists:
        return _empty("no scores yet (thresher score)")
    charts = []
    for metric, (counts, edges) in hists.items():
        fig, ax = _figure(4.2, 2.6)
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4c72b0")
        ax.set_title(metric)
        ax.set_ylabel("items")
        charts.append(_chart(fig, f"score {metric}"))
    return "<div class='grid'>" + "".join(charts) + "</div>"


def _selection_sections(store: Store) -> list[str]:
    name = reporting.latest_selection(store)
    return [
        _section("Embedding map", _map(store, name)),
        _section(
            f"Selection {name!r} against the pool" if name else "Selection",
            _composition(store, name) if name else _empty("no selection yet"),
        ),
    ]


def _map(store: Store, selection: str | None) -> str:
    sample = reporting.map_sample(store, selection)
    if sample.num_rows < 3:
        return _empty("fewer than 3 embedded items")
    xy = pca_2d(np.asarray(sample.column("vector").to_pylist(), dtype=np.float32))
    clusters = np.array([-1 if c is None else c for c in sample.column("cluster").to_pylist()])
    chosen = np.array(sample.column("selected").to_pylist(), dtype=bool)
    fig, ax = _figure(7, 5)
    ax.scatter(xy[:, 0], xy[:, 1], c=clusters, cmap="tab10", s=7, alpha=0.8, linewidths=0,
               rasterized=True)  # fmt: skip
    if chosen.any():
        ax.scatter(*xy[chosen].T, s=12, facecolors="none", edgecolors="k", linewidths=0.3,
                   alpha=0.5,
                   rasterized=True,
                   label=f"selected ({selection})")  # fmt: skip
        ax.legend(loc="upper right")
    ax.set_xticks([])
    ax.set_yticks([])
    note = (
        f"<p>{sample.num_rows:,} embedded items (a repeatable sample), first two principal "
        "components, coloured by cluster; circled: in the latest selection.</p>"
    )
    return note + _chart(fig, "embedding map")


def _composition(store: Store, name: str) -> str:
    label = queries.label_column(store)
    rows = reporting.composition(store, name, label)
    if not rows:
        return _empty("no kept items")
    pool, sel = sum(r["pool"] for r in rows), sum(r["selected"] for r in rows)
    fig, ax = _figure(7, 0.3 * len(rows) + 1.2)
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r["pool"] / pool for r in rows], 0.4, label="pool", color="#999999")
    ax.barh(y + 0.2, [r["selected"] / max(sel, 1) for r in rows], 0.4, label=name)
    ax.set_yticks(y, [str(r["grp"]) for r in rows])
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    ax.set_xlabel(f"share per {'label ' + repr(label) if label else 'cluster'}")
    return _chart(fig, "composition") + _table(rows, ["grp", "pool", "selected"])


def _learning(store: Store) -> str:
    curves = reporting.learning_curves(store)
    if not curves:
        return _empty("no learn run recorded a curve")
    fig, ax = _figure(6, 3.5)
    for c in curves:
        labels, accuracy = zip(*c["curve"], strict=True)
        ax.plot(labels, accuracy, marker="o", label=f"run {c['run_id']} {c.get('strategy')}")
    ax.set_xlabel("labels used")
    ax.set_ylabel("accuracy on the pool")
    ax.legend()
    return _chart(fig, "learning curves")


# -- pieces ---------------------------------------------------------------------------------


def _text_column(store: Store) -> str | None:
    try:
        return store.text_column()
    except ThresherError:
        return None


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, min(height, 12)))
    return fig, ax


def _chart(fig: Any, title: str) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg", metadata=NO_METADATA)
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML prolog: the SVG sits inside HTML
    return f"<div class='chart' data-chart='{html.escape(title)}'>{svg}</div>"


def _bars(rows: list[dict[str, Any]], key: str, value: str, title: str) -> str:
    fig, ax = _figure(7, 0.3 * len(rows) + 1.2)
    ax.barh([str(r[key])[:60] for r in rows], [r[value] for r in rows], color="#4c72b0")
    ax.invert_yaxis()
    ax.set_xlabel(value)
    return _chart(fig, title)


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    if not rows:
        return _empty("none")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 300 else text[:297] + "..."


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def _empty(text: str) -> str:
    return f"<p class='empty'>{html.escape(text)}</p>"
