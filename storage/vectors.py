"""Vector indexes kept in the store: rotation, rotated vectors, and a shortlist index.

One version of a model's index is a row of the catalog table `indexes`
pointing at files under `STORE/indexes/<model>/`:

- ``rotation-r<run>.npy``: the (d, d) orthogonal rotation (see scoring.matryoshka);
- ``part-r<run>.vectors.npy`` / ``.ids.npy``: rotated unit vectors and their
  item_ids, one part per run that added vectors (parts are shared between
  versions: an incremental add writes only its own part);
- ``shortlist-r<run>.faiss``: the FAISS index over the first `shortlist_dim`
  dimensions, whose ids are positions in the concatenated parts.

The `embeddings` table keeps each model's own (unrotated) vectors, so a
rotation can be refit without embedding anything again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import faiss
import numpy as np

from thresher.storage.errors import ThresherError
from thresher.storage.index import load_index, save_index
from thresher.storage.stage import arrow_to_vectors
from thresher.storage.store import Run, Store
from thresher.storage.uri import safe_name


@dataclass(frozen=True)
class IndexInfo:
    model: str
    version: int
    rotation: str
    rotation_file: str
    dims: list[int]
    parts: list[str]
    shortlist_dim: int
    shortlist_file: str
    kind: str
    codes: str
    n_items: int

    @property
    def has_shortlist(self) -> bool:
        """Whether this version has its shortlist index: dedup and density read only the
        rotated vectors, so they leave it to the first search (`update_index`)."""
        return bool(self.shortlist_file)


@dataclass
class LoadedIndex:
    info: IndexInfo
    rotation: np.ndarray  # (d, d)
    vectors: np.ndarray  # (n, d) rotated, unit
    ids: np.ndarray  # (n,) item_id
    shortlist: faiss.Index | None  # None: this version has none (`IndexInfo.has_shortlist`)


def embedding_models(store: Store) -> dict[str, int]:
    """Models with vectors in the store and how many items each has."""
    rows = store.query(
        "SELECT model, count(*) AS n FROM embeddings GROUP BY model ORDER BY model"
    ).to_pylist()
    return {r["model"]: r["n"] for r in rows}


def pick_model(store: Store, model: str | None) -> str:
    models = embedding_models(store)
    if not models:
        raise ThresherError(
            f"store {store.root} has no embeddings: run `thresher embed` first, "
            "or ingest vectors with --embedding-column"
        )
    if model is None:
        if len(models) > 1:
            raise ThresherError(
                f"store has embeddings of several models ({', '.join(models)}); "
                "choose one with --model"
            )
        return next(iter(models))
    if model not in models:
        raise ThresherError(f"no embeddings for model {model!r}; models: {', '.join(models)}")
    return model


def iter_embeddings(
    store: Store, model: str, skip_ids: np.ndarray | None = None, batch_rows: int = 65_536
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, vectors) of a model in the store's file order (the same every time), in
    batches, minus `skip_ids`: streamed, never all vectors at once. Not sorted by item_id
    (a hash, so no order anyone needs): at 10M items DuckDB's ORDER BY over the 1.5 KB
    vectors failed at the 1 GB limit."""
    sql = "SELECT item_id, vector FROM embeddings WHERE model = $m"
    with store.stream(sql, {"m": model}, batch_rows) as reader:
        for batch in reader:
            ids = batch.column(0).to_numpy()
            vectors = arrow_to_vectors(batch.column(1))
            if skip_ids is not None and len(skip_ids):
                keep = ~np.isin(ids, skip_ids)
                ids, vectors = ids[keep], vectors[keep]
            if len(ids):
                yield ids, vectors


def latest_index(store: Store, model: str) -> IndexInfo | None:
    rows = store.query(
        "SELECT * FROM indexes WHERE model = ? ORDER BY version DESC LIMIT 1", [model]
    ).to_pylist()
    if not rows:
        return None
    r = rows[0]
    return IndexInfo(
        r["model"],
        r["version"],
        r["rotation"],
        r["rotation_file"],
        json.loads(r["dims"]),
        json.loads(r["parts"]),
        r["shortlist_dim"],
        r["shortlist_file"],
        r["kind"],
        r["codes"],
        r["n_items"],
    )


def load(store: Store, info: IndexInfo, vectors_too: bool = True) -> LoadedIndex:
    """The index version; without `vectors_too` its vectors are an empty (0, d) array (an
    incremental add needs only the ids, the rotation and the shortlist index)."""
    root = store.root
    vectors = [np.load(root / f"{p}.vectors.npy") for p in info.parts] if vectors_too else []
    ids = [np.load(root / f"{p}.ids.npy") for p in info.parts]
    return LoadedIndex(
        info,
        np.load(root / info.rotation_file),
        np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32),
        np.concatenate(ids) if ids else np.zeros(0, np.int64),
        load_index(root / info.shortlist_file) if info.has_shortlist else None,
    )


READ_ROWS = 8192  # most rows one read asks for (a run of consecutive rows is one read)


def _read_rows(part: np.memmap, local: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows `local` (sorted, unique) of a `.npy` part, read with `preadv` straight into the
    result, one read per run of consecutive rows: nothing of the part is mapped into this
    process. Reading through the memory map instead faulted in up to 16 pages around each
    scattered row and handed them back after: 261 ms for 30,000 random rows of a 13 GB part,
    a quarter of it in the kernel, against 72 ms read this way (54 and 53 ms on a 1.3 GB
    part). Into `out` (C-contiguous, len(local) rows) when given."""
    width = part.strides[0]
    if out is None:
        out = np.empty((len(local), *part.shape[1:]), part.dtype)
    view = out.data.cast("B")
    breaks = np.flatnonzero(np.diff(local) != 1) + 1
    firsts = np.concatenate([[0], breaks]).astype(np.int64).tolist()
    lasts = np.concatenate([breaks, [len(local)]]).astype(np.int64).tolist()
    at = (part.offset + local.astype(np.int64) * width).tolist()
    assert part.filename is not None, "a part is a file opened as a memory map"
    fd = os.open(part.filename, os.O_RDONLY)
    try:
        for first, last in zip(firsts, lasts, strict=True):
            for lo in range(first, last, READ_ROWS):
                hi = min(last, lo + READ_ROWS)
                if os.preadv(fd, [view[lo * width : hi * width]], at[lo]) != (hi - lo) * width:
                    raise ThresherError(f"{part.filename}: short read at byte {at[lo]}")
    finally:
        os.close(fd)
    return out


class VectorParts:
    """A model's rotated vectors, part by part (`.npy` files, opened as memory maps for
    their shape only): `take` reads only the rows asked for, so a task holds what it works
    on, not the whole index, and no page of a part stays in its memory."""

    def __init__(self, store: Store, info: IndexInfo) -> None:
        root = store.root
        self.parts = [np.load(root / f"{p}.vectors.npy", mmap_mode="r") for p in info.parts]
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])

    def ids(self, store: Store, info: IndexInfo) -> np.ndarray:
        parts = [np.load(store.root / f"{p}.ids.npy") for p in info.parts]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), d) float32 of global row numbers `rows`, in their order, each part
        read front to back (`_read_rows`)."""
        d = self.parts[0].shape[1] if self.parts else 0
        out = np.empty((len(rows), d), np.float32)
        part = np.searchsorted(self.starts, rows, side="right") - 1
        if len(rows) and (part[0] == part[-1]) and (np.diff(rows) > 0).all():
            return _read_rows(self.parts[part[0]], rows - self.starts[part[0]], out)
        for p in np.unique(part).tolist():
            mine = np.flatnonzero(part == p)
            local, back = np.unique(rows[mine] - self.starts[p], return_inverse=True)
            out[mine] = _read_rows(self.parts[p], local)[back]
        return out

    def take_prefix(self, rows: np.ndarray, m: int, chunk: int = 65_536) -> np.ndarray:
        """The first m dimensions of `take(rows)`, renormalized to unit length (the
        Matryoshka prefix, as `scoring.matryoshka.prefix` computes it), a chunk at a time:
        never all full vectors at once."""
        out = np.empty((len(rows), m), np.float32)
        for start in range(0, len(rows), chunk):
            head = np.ascontiguousarray(self.take(rows[start : start + chunk])[:, :m])
            norms = np.linalg.norm(head, axis=1, keepdims=True)
            out[start : start + chunk] = head / np.maximum(norms, 1e-12)
        return out


class PartWriter:
    """This run's part of `model`'s rotated vectors, (n, d) float32 `.npy`, written a batch
    at a time by appending (not a memory map, whose written pages would count in the
    process's memory); pass `new_vectors=None` to `write_version` then."""

    def __init__(self, run: Run, model: str, n: int, d: int) -> None:
        path = run.stage_path(f"indexes/{safe_name(model)}/part-r{run.run_id:06d}.vectors.npy")
        self._fh = open(path, "wb")  # noqa: SIM115  # closed by close()
        header = {"descr": "<f4", "fortran_order": False, "shape": (n, d)}
        np.lib.format.write_array_header_1_0(self._fh, header)
        self._left = n

    def write(self, rows: np.ndarray) -> None:
        assert len(rows) <= self._left, "more rows than the part was opened for"
        self._fh.write(np.ascontiguousarray(rows, dtype="<f4").tobytes())
        self._left -= len(rows)

    def close(self) -> None:
        assert self._left == 0, f"{self._left} rows of the part were never written"
        self._fh.close()


def _save_npy(run: Run, relative: str, array: np.ndarray) -> None:
    with open(run.stage_path(relative), "wb") as fh:
        np.save(fh, array)


def write_version(
    run: Run,
    model: str,
    previous: IndexInfo | None,
    *,
    rotation_kind: str,
    rotation: np.ndarray | None,
    dims: list[int],
    shortlist_dim: int,
    new_ids: np.ndarray,
    new_vectors: np.ndarray | None,
    shortlist: faiss.Index | None,
    kind: str,
    codes: str,
) -> IndexInfo:
    """Stage a new index version: a new part, maybe a new rotation, a new shortlist index
    (None: none, until a search builds it)."""
    folder = f"indexes/{safe_name(model)}"
    tag = f"r{run.run_id:06d}"
    if rotation is not None:
        rotation_file = f"{folder}/rotation-{tag}.npy"
        _save_npy(run, rotation_file, rotation)
        parts: list[str] = []
    else:
        assert previous is not None, "an incremental add needs a previous version"
        rotation_file, parts = previous.rotation_file, list(previous.parts)
    if len(new_ids):
        part = f"{folder}/part-{tag}"
        if new_vectors is not None:  # else written through `PartWriter`
            _save_npy(run, f"{part}.vectors.npy", new_vectors.astype(np.float32))
        _save_npy(run, f"{part}.ids.npy", new_ids.astype(np.int64))
        parts.append(part)
    shortlist_file = f"{folder}/shortlist-{tag}.faiss" if shortlist is not None else ""
    if shortlist is not None:
        save_index(shortlist, run.stage_path(shortlist_file))
    n_items = (0 if rotation is not None or previous is None else previous.n_items) + len(new_ids)
    info = IndexInfo(
        model,
        (previous.version + 1) if previous else 1,
        rotation_kind,
        rotation_file,
        dims,
        parts,
        shortlist_dim,
        shortlist_file,
        kind,
        codes,
        n_items,
    )
    run.catalog_rows.append(
        (
            "indexes",
            {
                "model": model,
                "version": info.version,
                "rotation": rotation_kind,
                "rotation_file": rotation_file,
                "dims": json.dumps(dims),
                "parts": json.dumps(parts),
                "shortlist_dim": shortlist_dim,
                "shortlist_file": shortlist_file,
                "kind": kind,
                "codes": codes,
                "n_items": n_items,
                "run_id": run.run_id,
            },
        )
    )
    return info
