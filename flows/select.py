"""Wiring of `thresher select` and `thresher export`: scores in the store -> a selection."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from thresher.scoring.matryoshka import normalize
from thresher.selection.pruning import auto_policy, select
from thresher.storage import queries, uri
from thresher.storage import vectors as vstore
from thresher.storage.sql import read_only_query
from thresher.storage.store import Run, StageCounts, Store

BALANCE = ("cluster", "label", "none")


@dataclass(frozen=True)
class SelectReport:
    run_id: int
    name: str
    policy: str
    candidates: int
    selected: int
    new: bool = True  # False: the latest version already held exactly these items


def write_selection(run: Run, name: str, item_ids: np.ndarray, weights: np.ndarray) -> None:
    """Selection `name` as rows of the `selections` table, in this run."""
    n = len(item_ids)
    run.write_table(
        "selections",
        pa.table(
            {
                "selection": pa.array([name] * n, pa.string()),
                "item_id": pa.array(item_ids, pa.int64()),
                "weight": pa.array(np.asarray(weights, np.float64)),
                "run_id": pa.array(np.full(n, run.run_id), pa.int64()),
            }
        ),
    )


def select_items(
    store: Store,
    name: str,
    keep: float,
    *,
    policy: str = "auto",
    balance: str = "cluster",
    where: str | None = None,
    seed: int = 0,
    model: str | None = None,
    skip_unchanged: bool = False,
) -> SelectReport:
    """Keep a fraction of the kept (non-duplicate) items; write them as selection `name`."""
    if not 0 < keep <= 1:
        raise ValueError(f"--keep must be in (0, 1], got {keep}")
    if balance not in BALANCE:
        raise ValueError(f"balance {balance!r}: allowed {', '.join(BALANCE)}")
    if not name.strip():
        raise ValueError("a selection needs a name")
    # candidates: items that are not duplicates, restricted by --where, in item_id order
    sql = f"SELECT item_id FROM items ANTI JOIN {queries.EXCLUDED} x USING (item_id)"
    if where:
        sql += f" WHERE ({where})"
    ids = np.sort(read_only_query(store, sql).column(0).to_numpy())
    if not len(ids):
        raise ValueError("no candidate items (all are duplicates, or --where matches none)")
    budget = round(keep * len(ids))
    needs_scores = policy in ("auto", "hard", "easy", "ccs")
    scores = (
        _latest(
            store,
            "SELECT item_id, arg_max(value, run_id) FROM scores WHERE metric = "
            "'prototype_distance' GROUP BY item_id",
            ids,
            "prototype_distance",
        )
        if needs_scores
        else None
    )
    groups = None
    if balance == "cluster":
        groups = _latest(
            store,
            "SELECT item_id, arg_max(cluster_id, run_id) FROM clusters GROUP BY item_id",
            ids,
            "cluster",
        )
    elif balance == "label":
        found = queries.labels(store, ids)
        if found is None:
            raise ValueError("--balance label needs one label column (ingest with --label-column)")
        groups = np.asarray([str(v) for v in found])
    vectors = _vectors(store, ids, model) if policy == "kcenter" else None
    picked = select(
        len(ids), budget, policy, scores=scores, vectors=vectors, groups=groups, seed=seed
    )
    if skip_unchanged:
        last = store.query(
            "SELECT item_id, run_id FROM selections WHERE selection = $n AND run_id = "
            "(SELECT max(run_id) FROM selections WHERE selection = $n) ORDER BY item_id",
            {"n": name},
        )
        if last.num_rows and np.array_equal(last.column(0).to_numpy(), np.sort(ids[picked])):
            run_id = last.column(1)[0].as_py()
            return SelectReport(run_id, name, policy, len(ids), len(picked), new=False)
    with store.run(
        "select",
        {
            "name": name,
            "keep": keep,
            "policy": policy,
            "balance": balance,
            "where": where,
            "seed": seed,
        },
    ) as run:
        n = len(picked)
        write_selection(run, name, ids[picked], np.ones(n))
        run.record(StageCounts("select", name, len(ids), n, len(ids) - n, 0))
        run.message = f"{n} of {len(ids)} kept as {name!r} ({policy}"
        run.message += f" = {auto_policy(len(ids), budget, groups)})" if policy == "auto" else ")"
    return SelectReport(run.run_id, name, policy, len(ids), n)


def _latest(store: Store, sql: str, ids: np.ndarray, what: str) -> np.ndarray:
    """(item_id, value) rows of `sql` looked up for each candidate; an error if any lacks one."""
    table = store.query(sql)
    lookup = dict(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))
    missing = sum(1 for i in ids.tolist() if i not in lookup)
    if missing:
        raise ValueError(f"{missing} of {len(ids)} candidates have no {what}: run thresher score")
    return np.asarray([lookup[i] for i in ids.tolist()])


def _vectors(store: Store, ids: np.ndarray, model: str | None) -> np.ndarray:
    model = vstore.pick_model(store, model)
    parts = list(vstore.iter_embeddings(store, model))
    all_ids = np.concatenate([p[0] for p in parts])
    pos = {v: i for i, v in enumerate(all_ids.tolist())}
    missing = [i for i in ids.tolist() if i not in pos]
    if missing:
        raise ValueError(f"{len(missing)} candidates have no {model!r} vector: run thresher embed")
    return normalize(np.concatenate([p[1] for p in parts]))[[pos[i] for i in ids.tolist()]]


def _selection_rows(store: Store, name: str) -> tuple[pa.Table, int]:
    """Selection `name` (its latest run) joined to its items, and that run's id."""
    table = store.query(
        "SELECT i.*, s.weight, s.run_id AS selection_run FROM selections s "
        "JOIN items i USING (item_id) WHERE s.selection = $n AND s.run_id = "
        "(SELECT max(run_id) FROM selections WHERE selection = $n) ORDER BY i.item_id",
        {"n": name},
    )
    if not table.num_rows:
        known = store.query("SELECT DISTINCT selection FROM selections ORDER BY 1").column(0)
        raise ValueError(
            f"no selection named {name!r}; selections: {', '.join(known.to_pylist()) or 'none'}"
        )
    run_id = table.column("selection_run")[0].as_py()
    return table.drop_columns(["selection_run"]), run_id


def _write_dataset(
    table: pa.Table, out: Path | str, filesystem: pafs.FileSystem | None = None
) -> None:
    ds.write_dataset(
        table,
        out,
        filesystem=filesystem,
        format="parquet",
        basename_template="part-{i}.parquet",
        max_rows_per_file=1_000_000,
        max_rows_per_group=65_536,
        existing_data_behavior="error",
    )


def export(store: Store, name: str, out_dir: str) -> int:
    """Write selection `name` (its latest run) joined to its items as a Parquet dataset
    to a local folder or an object-store URI (see thresher.storage.uri)."""
    table, _ = _selection_rows(store, name)
    fs, path = uri.resolve(out_dir)
    with uri.naming(out_dir):
        uri.check_empty(fs, path, out_dir)
        _write_dataset(table, path, fs)
    return table.num_rows


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
    table, selection_run = _selection_rows(store, name)
    latest = latest_publication(store, name)
    if latest is not None and latest.selection_run == selection_run:
        return dataclasses.replace(latest, new=False)
    with store.run("publish", {"name": name, "selection_run": selection_run}) as run:
        rel = uri.version_dir("published", name, run.run_id)
        _write_dataset(table, run.stage_path(rel))
        run.catalog_rows.append(
            (
                "publications",
                {
                    "name": name,
                    "version": run.run_id,
                    "path": rel,
                    "rows": table.num_rows,
                    "selection_run": selection_run,
                },
            )
        )
        run.record(StageCounts("publish", name, table.num_rows, table.num_rows, 0, 0))
        run.message = f"{table.num_rows} rows of {name!r} published as {rel}"
    return Publication(name, run.run_id, store.root / rel, table.num_rows, selection_run)


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
    rows = store.query(
        "SELECT version, path, rows, selection_run FROM publications WHERE name = $n "
        "ORDER BY version DESC LIMIT 1",
        {"n": name},
    ).to_pylist()
    if not rows:
        return None
    r = rows[0]
    return Publication(name, r["version"], store.root / r["path"], r["rows"], r["selection_run"])
