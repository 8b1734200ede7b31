"""The curate flow: ingest -> filter -> dedup -> embed -> semantic dedup -> score
[-> tokens] [-> pii] -> select -> publish.

Exact and fuzzy dedup run before embedding, so their duplicates (and filtered
rows) are never embedded; semantic dedup needs the vectors and runs after.
Tokens and PII run when their section is enabled (tokens also when `[select]
keep_tokens` sizes the selection), on the items the dedup passes kept.

Each stage is a Prefect task that drives its Ray work through the stage
adapter and commits its own store run, so the store always holds every
finished stage and nothing of an unfinished one. That is what resume rests on:
each task first asks the store what is left to do (source files not ingested,
batches not filtered, items not embedded / checked / scored) and skips when
nothing is, so a rerun after a crash redoes only the stage that was cut off,
and a scheduled run touches only new source files.

Transient failures (anything but a user error, a `ThresherError`) are
retried `[flow] retries` times. Each flow run ends with a `curate` row in
`runs` (the config and the counts per stage) and a Prefect table artifact of
the same counts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect waits 20 s for its ephemeral server to answer, too little on a loaded machine;
# read when prefect is imported, so set here, before (STARTUP_TIMEOUT below)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from thresher.flows import config as cfgmod
from thresher.flows import dedup as dedup_mod
from thresher.flows.decontam import decontaminate
from thresher.flows.embed import embed
from thresher.flows.filter import filter_items
from thresher.flows.langid import identify_languages
from thresher.flows.pii import scan_pii
from thresher.flows.report import build as build_report
from thresher.flows.score import pending_metrics, score
from thresher.flows.select import latest_publication, mirror, publish, select_items
from thresher.flows.tokens import count_item_tokens
from thresher.scoring.embedders import EmbedderConfig
from thresher.selection.filters import Rules
from thresher.storage import queries
from thresher.storage.errors import ThresherError
from thresher.storage.ingest import IngestConfig, expand_sources, ingest, pending_sources
from thresher.storage.store import StageCounts, Store

STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
Update = Callable[[int, int], None]
ProgressFactory = Callable[[str], AbstractContextManager[Update]]


@contextlib.contextmanager
def _no_bar(label: str) -> Iterator[Update]:
    yield lambda done, total: None


# set by `runner.run_config` for the command line; a served deployment has no bars
_bars: ProgressFactory = _no_bar


@contextlib.contextmanager
def progress_bars(bars: ProgressFactory | None) -> Iterator[None]:
    """Stages in this process show `bars` while the block runs."""
    global _bars
    _bars = bars or _no_bar
    try:
        yield
    finally:
        _bars = _no_bar


@dataclass
class StageResult:
    stage: str
    rows_in: int = 0
    kept: int = 0
    dropped: int = 0
    skipped: bool = False
    detail: str = ""
    rejected: int = 0  # rows refused as unreadable (ingest), not dropped by a rule
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "rows_in": self.rows_in,
            "kept": self.kept,
            "dropped": self.dropped,
            "rejected": self.rejected,
            "seconds": round(self.seconds, 1),
            "status": "skipped" if self.skipped else "done",
            "detail": self.detail,
        }


@dataclass
class CurateResult:
    run_id: int
    store: str
    stages: list[StageResult] = field(default_factory=list)
    publication: str | None = None


REPORT = "_report.html"  # beside the Parquet parts; "_": Parquet readers skip it


def per_item_totals(results: list[StageResult]) -> tuple[int, int, int, int]:
    """The curate run's row: each item of this run's sources counted once. Rows in are
    the ingest's; rejected are its unreadable rows; dropped are the items the filter and
    dedup removed this run; kept is the rest. (Selection keeps a fraction of the whole
    pool, old items too, so it is not in these counts; its stage row has it.)"""
    by = {r.stage: r for r in results}
    ingest = by["ingest"]
    dropped = sum(by[s].dropped for s in ("filter", "dedup", "semantic") if s in by)
    kept = max(0, ingest.rows_in - ingest.rejected - dropped)
    return ingest.rows_in, kept, dropped, ingest.rejected


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _transient(task_: Any, task_run: Any, state: Any) -> bool:
    """Retry anything except a user error, which would fail the same way again."""
    return not isinstance(getattr(state, "data", None), ThresherError)


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_task(cfg: cfgmod.CurateConfig) -> StageResult:
    store = Store(cfg.store)
    section = cfg.ingest
    files = expand_sources(list(section.sources), section.format)
    new = pending_sources(store, files)
    if not new:
        return StageResult(
            "ingest", skipped=True, detail=f"{_count(len(files), 'source')} seen before"
        )
    with _bars("ingest") as update:
        report = ingest(
            store,
            [str(p) for p in new],
            IngestConfig(
                id_column=section.id_column,
                text_column=section.text_column,
                label_column=section.label_column,
                embedding_column=section.embedding_column,
                format=section.format,
            ),
            on_progress=update,
        )
    rows = report.kept + report.rejected
    detail = f"{_count(len(new), 'new source file')}"
    return StageResult("ingest", rows, report.kept, 0, detail=detail, rejected=report.rejected)


@task(name="filter", cache_policy=NO_CACHE)
def filter_task(cfg: cfgmod.CurateConfig) -> StageResult:
    """With `languages` or `min_language_confidence`, first identifies the language of
    the items that have none (the langid run; nothing when no item is new)."""
    rules, store = Rules(**vars(cfg.filter)), Store(cfg.store)
    identified = 0
    if rules.by_language:
        with _bars("langid") as update:
            identified = identify_languages(store, on_progress=update).identified
    with _bars("filter") as update:
        report = filter_items(store, rules, on_progress=update)
    if report.run_id is None:
        return StageResult("filter", skipped=True, detail="no new batches")
    detail = ", ".join(f"{v} {k}" for k, v in report.by_rule.items())
    if rules.by_language:
        detail = ", ".join(filter(None, [f"{identified} languages identified", detail]))
    return StageResult(
        "filter", report.checked, report.checked - report.dropped, report.dropped, detail=detail
    )


def _embedder(cfg: cfgmod.CurateConfig) -> EmbedderConfig:
    e = cfg.embed
    device = None if e.device == "auto" else e.device
    return EmbedderConfig(e.model, e.max_seq_length, e.int8, e.batch_size, device)


@task(name="embed", cache_policy=NO_CACHE)
def embed_task(cfg: cfgmod.CurateConfig) -> StageResult:
    with _bars("embed") as update:
        report = embed(Store(cfg.store), _embedder(cfg), on_progress=update)
    return StageResult(
        "embed",
        report.embedded,
        report.embedded,
        skipped=report.embedded == 0,
        detail=f"{report.model}, {report.already} embedded before",
    )


@task(name="dedup", cache_policy=NO_CACHE)
def dedup_task(cfg: cfgmod.CurateConfig) -> StageResult:
    """Exact and fuzzy passes, on text: before embedding, so duplicates are never embedded."""
    store, d = Store(cfg.store), cfg.dedup
    passes = []
    with _bars("dedup") as update:
        if d.exact and _unchecked(store, "exact"):
            passes.append(dedup_mod.dedup_exact(store, update))
        if d.fuzzy is not None and _unchecked(store, "fuzzy"):
            passes.append(dedup_mod.dedup_fuzzy(store, d.fuzzy, update))
    return _dedup_result("dedup", passes)


@task(name="semantic", cache_policy=NO_CACHE)
def semantic_task(cfg: cfgmod.CurateConfig) -> StageResult:
    """The semantic pass, on the vectors the embed stage just wrote."""
    store, d = Store(cfg.store), cfg.dedup
    passes = []
    if d.semantic is not None and _unchecked(store, "semantic"):
        passes.append(
            dedup_mod.dedup_semantic(store, d.semantic, _embedder(cfg).name, d.semantic_keep)
        )
    return _dedup_result("semantic", passes)


def _dedup_result(stage: str, passes: list[dedup_mod.DedupReport]) -> StageResult:
    if not passes:
        return StageResult(stage, skipped=True, detail="no unchecked items")
    checked = max(p.checked for p in passes)
    dups = sum(p.duplicates for p in passes)
    detail = ", ".join(f"{p.duplicates} {p.method}" for p in passes)
    return StageResult(stage, checked, checked - dups, dups, detail=detail)


def _unchecked(store: Store, method: str) -> bool:
    return queries.count(store, queries.dedup_todo(method, None)) > 0


@task(name="score", cache_policy=NO_CACHE)
def score_task(cfg: cfgmod.CurateConfig) -> StageResult:
    """The `[score] metrics` that have something to do (new items, new labels for
    label_issue, a new reference for quality)."""
    store, model, s = Store(cfg.store), _embedder(cfg).name, cfg.score
    metrics = pending_metrics(store, model, s.metrics, s.reference, s.reference_column, s.seed)
    if not metrics:
        return StageResult("score", skipped=True, detail="every kept item is scored")
    with _bars("score") as update:
        report = score(
            store,
            model=model,
            clusters=s.clusters,
            metrics=metrics,
            refit=s.refit,
            seed=s.seed,
            reference=s.reference if "quality" in metrics else None,
            reference_column=s.reference_column,
            on_progress=update,
        )
    n = max(report.scored.values(), default=0)
    detail = ", ".join(f"{v} {m}" for m, v in report.scored.items() if m != "margin")
    if report.clusters:
        detail += f"; {report.clusters} clusters"
    return StageResult("score", n, n, detail=detail)


@task(name="tokens", cache_policy=NO_CACHE)
def tokens_task(cfg: cfgmod.CurateConfig) -> StageResult:
    with _bars("tokens") as update:
        report = count_item_tokens(Store(cfg.store), cfg.tokens.tokenizer, on_progress=update)
    if report.run_id is None:
        return StageResult("tokens", skipped=True, detail="every kept item is counted")
    detail = f"{report.tokens} tokens"
    return StageResult("tokens", report.items, report.items, detail=detail)


@task(name="pii", cache_policy=NO_CACHE)
def pii_task(cfg: cfgmod.CurateConfig) -> StageResult:
    with _bars("pii") as update:
        report = scan_pii(Store(cfg.store), on_progress=update)
    if report.run_id is None:
        return StageResult("pii", skipped=True, detail="every kept item is scanned")
    kinds = ", ".join(f"{n} {kind}" for kind, n in report.by_kind.items())
    detail = f"{report.items_with_pii} items with PII" + (f" ({kinds})" if kinds else "")
    return StageResult("pii", report.scanned, report.scanned, detail=detail)


@task(name="select", cache_policy=NO_CACHE)
def select_task(cfg: cfgmod.CurateConfig) -> StageResult:
    """With `[decontaminate] eval_files`, first checks the batches not yet checked against
    them (nothing when none is new), so the selection leaves out what they contain."""
    s, d = cfg.select, cfg.decontaminate
    found = None
    if d.eval_files:
        found = decontaminate(Store(cfg.store), list(d.eval_files), d.ngram, d.text_column)
    report = select_items(
        Store(cfg.store),
        s.name,
        s.keep,
        policy=s.policy,
        balance=s.balance,
        where=s.where,
        seed=s.seed,
        model=_embedder(cfg).name,
        skip_unchanged=True,
        keep_contaminated=s.keep_contaminated,
        keep_tokens=s.keep_tokens,
        drop_label_issues=s.drop_label_issues,
    )
    size = f"keep {s.keep}" if s.keep_tokens is None else f"{report.tokens} tokens"
    detail = f"{s.name!r} from selection run {report.run_id} ({report.policy}, {size})"
    if found is not None and found.run_id is not None:
        detail += f"; {sum(found.contaminated.values())} contaminated items found"
    return StageResult(
        "select",
        report.candidates,
        report.selected,
        report.candidates - report.selected,
        skipped=not report.new,
        detail=detail,
    )


@task(name="publish", cache_policy=NO_CACHE)
def publish_task(cfg: cfgmod.CurateConfig) -> StageResult:
    store = Store(cfg.store)
    pub = publish(store, cfg.select.name)
    detail = f"version {pub.version}: {pub.path}"
    page = pub.path / REPORT
    if not page.exists():  # also after a run cut short between publishing and the report
        build_report(store, page)
    if cfg.select.publish_uri:  # also after a run cut short between publishing and copying
        detail += f" and {mirror(pub, cfg.select.publish_uri)}"
    return StageResult("publish", pub.rows, pub.rows, skipped=not pub.new, detail=detail)


STAGES = (
    ingest_task,
    filter_task,
    dedup_task,
    embed_task,
    semantic_task,
    score_task,
    tokens_task,
    pii_task,
    select_task,
    publish_task,
)


def stages(cfg: cfgmod.CurateConfig) -> list[Any]:
    """The flow's stages for `cfg`: tokens and PII only where the config asks for them."""
    on = {
        "tokens": cfg.tokens.enabled or cfg.select.keep_tokens is not None,
        "pii": cfg.pii.enabled,
    }
    return [s for s in STAGES if on.get(s.name, True)]


@flow(name="thresher-curate", log_prints=True)
def curate(config_path: str) -> dict[str, Any]:
    """Run every stage of the curate flow for the config file at `config_path`."""
    cfg = cfgmod.load(config_path)
    store = Store.init(cfg.store)  # creates it on the first run
    retry = {
        "retries": cfg.flow.retries,
        "retry_delay_seconds": cfg.flow.retry_delay_s,
        "retry_condition_fn": _transient,
    }
    started = dt.datetime.now(dt.UTC)
    results: list[StageResult] = []
    for stage in stages(cfg):
        t0 = time.perf_counter()
        results.append(stage.with_options(**retry)(cfg))
        results[-1].seconds = time.perf_counter() - t0
    with store.run("curate", {"config_path": cfg.path, **cfg.as_dict()}, started) as run:
        for r in results:
            key = "skipped" if r.skipped else ""
            run.record(
                StageCounts(r.stage, key, r.rows_in, r.kept, r.dropped, r.rejected, r.seconds)
            )
        run.totals = per_item_totals(results)
        run.message = "; ".join(
            f"{r.stage}: {r.detail or ('skipped' if r.skipped else 'done')}" for r in results
        )
    rows = [r.row() for r in results]
    pub = latest_publication(store, cfg.select.name)
    page = f"; [report]({(pub.path / REPORT).as_uri()})" if pub else ""
    create_table_artifact(
        table=rows,
        key="thresher-curate-"
        + "".join(c if c.isalnum() else "-" for c in cfg.select.name.lower()),
        description=f"thresher curate run {run.run_id} of store {store.root}{page}",
    )
    return {"run_id": run.run_id, "store": str(store.root), "stages": rows}
