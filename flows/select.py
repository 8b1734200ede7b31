"""Wiring of `thresher select` and `thresher export`: scores in the store -> a selection."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from thresher.flows import runtime
from thresher.scoring.matryoshka import normalize
from thresher.selection.budget import fit_tokens
from thresher.selection.cleaning import drop_worst
from thresher.selection.pruning import BALANCE, auto_balance, auto_policy, select
from thresher.storage import queries, text_queries, uri
from thresher.storage import redact as redaction
from thresher.storage import vectors as vstore
from thresher.storage.errors import ThresherError
from thresher.storage.ray_adapter import run_task
from thresher.storage.sql import check_condition
from thresher.storage.stage import arrow_to_vectors
from thresher.storage.store import Run, StageCounts, Store, write_rows


@dataclass(frozen=True)
class SelectReport:
    run_id: int
    name: str
    policy: str
    candidates: int
    selected: int
    new: bool = True  # False: the latest version already held exactly these items
    tokens: int | None = None  # the selection's tokens, when sized by --keep-tokens
    dropped: int = 0  # candidates left out as likely mislabelled (--drop-label-issues)
    balance: str = "none"  # how the budget was split (auto resolved)


def write_selection(run: Run, name: str, item_ids: np.ndarray, weights: np.ndarray) -> None:
    """Selection `name` as rows of the `selections` table, in this run."""
    uri.check_name(name)
    run.append("selections", selection=name, item_id=item_ids, weight=weights)


def select_items(
    store: Store,
    name: str,
    keep: float,
    *,
    policy: str = "auto",
    balance: str = "auto",
    where: str | None = None,
    seed: int = 0,
    model: str | None = None,
    skip_unchanged: bool = False,
    keep_contaminated: bool = False,
    keep_tokens: int | None = None,
    drop_label_issues: float = 0.0,
) -> SelectReport:
    """Keep a fraction of the kept (non-duplicate) items; write them as selection `name`.
    With `keep_tokens`, the policy's pick holding at most that many tokens (and at least
    95% of it when the pool has that many; `selection.budget`) instead of `keep`. With
    `drop_label_issues` F, the worst F of the labelled candidates by `label_issue` are
    left out first (`selection.cleaning`); `keep` stays a fraction of all candidates.

    The candidates (id, score, group, and for kcenter the vector) are staged by
    DuckDB and the policy runs in a Ray task that writes the selection's file:
    the driver never holds them."""
    if not 0 < keep <= 1:
        raise ThresherError(f"--keep must be in (0, 1], got {keep}")
    if balance not in BALANCE:
        raise ThresherError(f"balance {balance!r}: allowed {', '.join(BALANCE)}")
    uri.check_name(name)
    if where:  # one read-only condition on the items' columns, checked before it is staged
        check_condition(store, where)
    drop_worst(np.zeros(0), drop_label_issues)  # a bad fraction fails before anything runs
    if drop_label_issues and not queries.has_scores(store, "label_issue"):
        raise ThresherError(
            "--drop-label-issues needs label issue scores: run thresher score STORE "
            "--metrics label_issue (with a label column)"
        )
    if balance == "auto":
        balance = auto_balance(policy, keep, keep_tokens is not None, queries.has_labels(store))
    if balance == "label" and not queries.has_labels(store):
        raise ThresherError("--balance label needs one label column (ingest with --label-column)")
    pool = queries.selection_pool(
        where,
        score=policy in ("auto", "hard", "easy", "ccs"),
        group=None if balance == "none" else balance,
        label_column=queries.label_column(store),
        model=vstore.pick_model(store, model) if policy == "kcenter" else None,
        keep_contaminated=keep_contaminated,
        tokens=keep_tokens is not None,
        label_issue=drop_label_issues > 0,
    )
    config = {"name": name, "keep": keep, "policy": policy, "balance": balance}
    config.update(keep_contaminated=keep_contaminated, keep_tokens=keep_tokens)
    config["drop_label_issues"] = drop_label_issues
    with store.run("select", {**config, "where": where, "seed": seed}) as run:
        staged = runtime.stage(run, "select-pool", pool)
        if not staged.rows:
            raise ThresherError(
                "no candidate items (all are duplicates, filtered or contaminated, or --where "
                "matches none)"
            )
        last = (
            runtime.stage(run, "select-last", queries.latest_selection(name))
            if skip_unchanged
            else runtime.Staged([], 0)
        )
        out = run.reserve("selections")
        picked: _Picked = run_task(
            _select_step,
            staged.paths,
            last.paths,
            name,
            keep,
            keep_tokens,
            drop_label_issues,
            policy,
            seed,
            run.run_id,
            str(out),
            rows=staged.rows,
        )
        if not picked.changed:
            run.discard()
        else:
            n, total = picked.selected, staged.rows
            run.adopt("selections", out)
            run.record(StageCounts("select", name, total, n, total - n, 0))
            run.message = f"{n} of {total} kept as {name!r} ({policy}"
            run.message += f" = {picked.policy}" if policy == "auto" else ""
            run.message += ")" if balance == "none" else f", {balance}-balanced)"
            if picked.dropped:
                run.message += f", {picked.dropped} likely mislabelled left out first"
            if picked.tokens is not None:
                run.message += f", {picked.tokens} tokens of --keep-tokens {keep_tokens}"
    ran = f"auto = {picked.policy}" if policy == "auto" else policy
    if not picked.changed:
        run_id = queries.latest_selection_run(store, name)
        assert run_id is not None
        return SelectReport(
            run_id,
            name,
            ran,
            staged.rows,
            picked.selected,
            False,
            picked.tokens,
            picked.dropped,
            balance,
        )
    return SelectReport(
        run.run_id,
        name,
        ran,
        staged.rows,
        picked.selected,
        True,
        picked.tokens,
        picked.dropped,
        balance,
    )


@dataclass(frozen=True)
class _Picked:
    selected: int
    policy: str  # the policy that ran (what auto chose)
    changed: bool  # False: the same items as the selection's latest version
    tokens: int | None = None  # their tokens, when sized in tokens
    dropped: int = 0  # candidates left out as likely mislabelled


def _select_step(
    pool: list[str],
    last: list[str],
    name: str,
    keep: float,
    keep_tokens: int | None,
    drop_label_issues: float,
    policy: str,
    seed: int,
    run_id: int,
    out_path: str,
) -> _Picked:
    table = pa.concat_tables([pq.read_table(p) for p in pool])
    n_candidates, dropped = table.num_rows, 0
    if drop_label_issues:
        issue = table.column("label_issue").to_numpy(zero_copy_only=False).astype(np.float64)
        stays = drop_worst(issue, drop_label_issues)  # null (unlabelled) reads as NaN
        table, dropped = table.filter(pa.array(stays)), int((~stays).sum())
    ids = table.column("item_id").to_numpy()
    scores = _column(table, "score", "prototype_distance", "thresher score")
    groups = _column(table, "grp", "cluster", "thresher score")
    vectors = None
    if "vector" in table.column_names:
        column = table.column("vector")
        if column.null_count:
            raise ThresherError(
                f"{column.null_count} candidates have no vector for kcenter: run thresher embed"
            )
        vectors = normalize(arrow_to_vectors(column))

    def choose(budget: int) -> np.ndarray:
        return select(
            len(ids), budget, policy, scores=scores, vectors=vectors, groups=groups, seed=seed
        )

    total = None
    if keep_tokens is None:
        budget = min(round(keep * n_candidates), len(ids))
        picked = choose(budget)
    else:
        tokens = _column(table, "tokens", "token count", "thresher tokens")
        assert tokens is not None  # staged with the pool when sizing in tokens
        picked, budget = fit_tokens(choose, tokens, keep_tokens, seed)
        total = int(tokens[picked].sum())
    chosen = np.sort(ids[picked])
    if not len(chosen):  # a version with no rows would hide the last real one from export
        raise ThresherError(
            f"--keep {keep} of {len(ids)} candidates keeps no item; nothing was recorded "
            f"(keep at least {1 / len(ids):.2g})"
            if keep_tokens is None
            else f"--keep-tokens {keep_tokens}: every candidate has more tokens; nothing was "
            "recorded"
        )
    ran = auto_policy(len(ids), budget, groups) if policy == "auto" else policy
    if last:
        before = pa.concat_tables([pq.read_table(p) for p in last]).column("item_id").to_numpy()
        if np.array_equal(before, chosen):
            return _Picked(len(chosen), ran, False, total, dropped)
    write_rows(out_path, "selections", run_id, selection=name, item_id=chosen, weight=1.0)
    return _Picked(len(chosen), ran, True, total, dropped)


def _column(table: pa.Table, column: str, what: str, fix: str) -> np.ndarray | None:
    """A candidates column as NumPy; an error naming how many candidates lack a value."""
    if column not in table.column_names:
        return None
    values = table.column(column)
    if column == "grp" and pa.types.is_string(values.type):
        return np.asarray(values.to_pylist(), dtype=str)
    if values.null_count:
        raise ThresherError(
            f"{values.null_count} of {len(values)} candidates have no {what}: run {fix}"
        )
    return values.to_numpy()


def _selection_version(store: Store, name: str) -> tuple[int, int]:
    """(run id, rows) of the latest version of selection `name`."""
    run_id = queries.latest_selection_run(store, name)
    if run_id is None:
        known = queries.selection_names(store)
        raise ThresherError(
            f"no selection named {name!r}; selections: {', '.join(known) or 'none'}"
        )
    rows = queries.selection_size(store, name, run_id)
    if not rows:
        raise ThresherError(f"selection {name!r} (run {run_id}) holds no items: nothing to write")
    return run_id, rows


def _write_selection(
    store: Store, name: str, run_id: int, out: str, spans: bool = False, redact: bool = False
) -> None:
    """One version of selection `name` joined to its items, streamed from DuckDB into a
    Parquet dataset at `out` (a folder or an object-store URI). `spans`: with each row's
    `pii_spans` and the text column's name in the schema metadata (for the feed's
    redaction); `redact`: the text with its spans replaced, and no spans column."""
    if spans or redact:
        query = text_queries.selection_items_with_spans(name, run_id)
    else:
        query = queries.selection_items(name, run_id)
    fs, path = uri.resolve(out)
    with uri.naming(out), store.stream(query.sql, query.params) as reader:
        if spans or redact:
            reader = _with_spans(reader, store.text_column(), redact)
        uri.write_parquet_dataset(reader, path, fs)


def _with_spans(
    reader: pa.RecordBatchReader, text_column: str, redact: bool
) -> pa.RecordBatchReader:
    meta = {**(reader.schema.metadata or {}), redaction.TEXT_KEY: text_column.encode()}
    if not redact:
        return pa.RecordBatchReader.from_batches(reader.schema.with_metadata(meta), reader)
    schema = reader.schema.remove(reader.schema.get_field_index(redaction.SPANS))

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            table = redaction.redact_table(pa.Table.from_batches([batch]), text_column)
            yield from table.cast(schema).to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


@dataclass(frozen=True)
class Exported:
    name: str
    version: int  # the run that wrote this version of the selection
    rows: int


def export(store: Store, name: str, out_dir: str, redact_pii: bool = False) -> Exported:
    """Write selection `name` (its latest run) joined to its items as a Parquet dataset
    to a local folder or an object-store URI (see thresher.storage.uri); `redact_pii`:
    with the spans `thresher pii` found replaced by placeholders such as ``<EMAIL>``."""
    uri.check_name(name)
    run_id, rows = _selection_version(store, name)
    if redact_pii and (n := text_queries.unscanned_in_selection(store, name, run_id)):
        raise ThresherError(
            f"{n} of {rows} items of selection {name!r} were never scanned for PII: "
            f"run thresher pii {store.root} first"
        )
    fs, path = uri.resolve(out_dir)
    with uri.naming(out_dir):
        uri.check_empty(fs, path, out_dir)
    # written by one task: the rows stream through a worker, not this process
    run_task(_write_selection, store, name, run_id, out_dir, redact=redact_pii, rows=rows)
    return Exported(name, run_id, rows)


@dataclass(frozen=True)
class Publication:
    name: str
    version: int  # the publishing run's id
    path: Path
    rows: int
    selection_run: int
    new: bool = True


def publish(store: Store, name: str) -> Publication:
    """Publish the latest version of selection `name` as Parquet under
    STORE/published/NAME/vRUN; a version already published is not written again."""
    uri.check_name(name)
    selection_run, rows = _selection_version(store, name)
    latest = latest_publication(store, name)
    if latest is not None and latest.selection_run == selection_run:
        return dataclasses.replace(latest, new=False)
    with store.run("publish", {"name": name, "selection_run": selection_run}) as run:
        rel = uri.version_dir("published", name, run.run_id)
        target = str(run.stage_path(rel))
        spans = text_queries.pii_scanned(store)  # the feed can redact what was scanned
        run_task(_write_selection, store, name, selection_run, target, spans=spans, rows=rows)
        run.catalog_rows.append(
            (
                "publications",
                {
                    "name": name,
                    "version": run.run_id,
                    "path": rel,
                    "rows": rows,
                    "selection_run": selection_run,
                },
            )
        )
        run.record(StageCounts("publish", name, rows, rows, 0, 0))
        run.message = f"{rows} rows of {name!r} published as {rel}"
    return Publication(name, run.run_id, store.root / rel, rows, selection_run)


def mirror(pub: Publication, base: str) -> str:
    """Copy published version `pub` to BASE/NAME/vVERSION (a folder or an object-store
    URI), then write its _SUCCESS marker; a version with the marker is not copied again,
    one without (a copy cut short) is copied over."""
    dest = uri.version_dir(base, pub.name, pub.version)
    fs, path = uri.resolve(dest)
    with uri.naming(dest):
        if fs.get_file_info(f"{path}/{uri.DONE}").type == pafs.FileType.File:
            return dest
        fs.create_dir(path, recursive=True)
        pafs.copy_files(
            str(pub.path),
            path,
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=fs,
        )
        with fs.open_output_stream(f"{path}/{uri.DONE}") as out:
            done = {"name": pub.name, "version": pub.version, "rows": pub.rows}
            out.write(json.dumps(done).encode())
    return dest


def latest_publication(store: Store, name: str) -> Publication | None:
    r = queries.latest_publication(store, name)
    if r is None:
        return None
    return Publication(name, r["version"], store.root / r["path"], r["rows"], r["selection_run"])
