"""The trainer feed: a published selection streamed into PyTorch.

`SelectionFeed` is a torch `IterableDataset` over the Parquet files of a
published selection (or any `thresher export` folder). It yields batches as
dicts of tensors (numbers and fixed-length vectors) and lists (text), with the
importance weights under ``weight``; use it with ``DataLoader(feed,
batch_size=None)`` or, to get a resume state, `feed.loader(...)`.

Exactly once per epoch. The epoch's row order is the files' row groups,
permuted by (seed, epoch) when shuffling. Rank r of R takes the contiguous
slice [r*N/R, (r+1)*N/R) of that order, and DataLoader worker w of W the w-th
contiguous slice of its rank's rows; the slices partition the N rows, so every
row is read once, and ranks differ by at most one row. Reads are whole row
groups (sliced at the slice edges), so workers never read each other's data.

Shuffling: the row groups are permuted, then a buffer of `shuffle_buffer`
rows is shuffled and half of it emitted each time it fills (rows can move
across about two buffers). Seeded, so an epoch's order is reproducible.

Resume: `FeedLoader` (from `feed.loader(...)`) counts the batches it has
handed out; its `state_dict()` is {epoch, batches}. The DataLoader takes
batches from its workers in round-robin, skipping a worker once it is
exhausted, so the batches each worker had produced follow from that count;
after `load_state_dict`, each worker skips exactly those and the epoch goes on
where it stopped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from thresher.storage import redact as redaction
from thresher.storage import uri
from thresher.storage.errors import ThresherError

WEIGHT = "weight"


@dataclass(frozen=True)
class _Group:
    file: int
    group: int
    rows: int


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _split(n: int, parts: int, i: int) -> tuple[int, int]:
    return i * n // parts, (i + 1) * n // parts


def batches_per_worker(rows: Sequence[int], batch_size: int, drop_last: bool) -> list[int]:
    return [r // batch_size if drop_last else -(-r // batch_size) for r in rows]


def round_robin_taken(counts: Sequence[int], consumed: int) -> tuple[list[int], int]:
    """When `consumed` batches came out of a DataLoader that takes them in turn from
    workers with `counts` batches each (skipping exhausted ones): how many each worker
    had produced, and which worker's batch comes next."""
    taken = [0] * len(counts)
    left, pos = consumed, 0
    while left > 0:
        active = [w for w, c in enumerate(counts) if taken[w] < c]
        if not active:
            break
        full = min(min(counts[w] - taken[w] for w in active), left // len(active))
        if full:
            for w in active:
                taken[w] += full
            left -= full * len(active)
            continue
        for w in active[:left]:  # a last partial round
            taken[w] += 1
            pos = w + 1
        left = 0
    n = len(counts)
    nxt = next((w % n for w in range(pos, pos + n) if taken[w % n] < counts[w % n]), 0)
    return taken, nxt


class SelectionFeed(IterableDataset):
    """Batches of a selection's rows for one DDP rank (see the module docstring)."""

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        *,
        filesystem: pafs.FileSystem | None = None,
        columns: Sequence[str] | None = None,
        batch_size: int = 256,
        shuffle_buffer: int = 0,
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        redact_pii: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ThresherError(f"batch_size must be >= 1, got {batch_size}")
        if shuffle_buffer < 0:
            raise ThresherError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.files = [str(f) for f in files]
        if not self.files:
            raise ThresherError("a feed needs at least one Parquet file")
        self.filesystem = filesystem  # None: local paths (or URIs pyarrow resolves itself)
        schema = pq.read_schema(self.files[0], filesystem=filesystem)
        names = schema.names
        if columns is None:
            columns = [n for n in names if n != redaction.SPANS]
        missing = [c for c in columns if c not in names]
        if missing:
            raise ThresherError(
                f"{self.files[0]}: no column {missing[0]!r}; columns: {', '.join(names)}"
            )
        self.columns = list(dict.fromkeys([*columns, *([WEIGHT] if WEIGHT in names else [])]))
        self._redact: str | None = None  # the text column to redact
        self._keep_spans = redaction.SPANS in self.columns
        if redact_pii:
            self._redact = self._text_column(schema)
            self.columns = list(dict.fromkeys([*self.columns, redaction.SPANS]))
        self.batch_size, self.shuffle_buffer, self.seed = batch_size, shuffle_buffer, seed
        self.drop_last = drop_last
        self.rank, self.world_size = _rank_world(rank, world_size)
        if not 0 <= self.rank < self.world_size:
            raise ThresherError(f"rank {self.rank} is not in [0, {self.world_size})")
        metas = [self._open(f).metadata for f in range(len(self.files))]
        self.groups = [
            _Group(f, g, meta.row_group(g).num_rows)
            for f, meta in enumerate(metas)
            for g in range(meta.num_row_groups)
        ]
        self.num_rows = sum(g.rows for g in self.groups)
        self.epoch = 0
        self._skip: tuple[int, int, int] | None = None  # (epoch, batches, num_workers)
        self._array_transport = False  # set by FeedLoader, which makes tensors in the trainer

    def _open(self, f: int) -> pq.ParquetFile:
        return pq.ParquetFile(self.files[f], filesystem=self.filesystem)

    def _text_column(self, schema: pa.Schema) -> str:
        """The text column to redact; its spans must be there and every row scanned."""
        column = (schema.metadata or {}).get(redaction.TEXT_KEY)
        if redaction.SPANS not in schema.names or column is None:
            raise ThresherError(
                f"{self.files[0]}: published without PII spans; run thresher pii STORE, "
                "then select and publish again"
            )
        for f in range(len(self.files)):
            spans = self._open(f).read(columns=[redaction.SPANS])
            if n := redaction.unscanned(spans):
                raise ThresherError(
                    f"{self.files[f]}: {n} rows were never scanned for PII; run thresher pii "
                    "STORE, then select and publish again"
                )
        return column.decode()

    # ----- where to find a selection
    @classmethod
    def from_dir(cls, path: str | os.PathLike[str], **kwargs: Any) -> SelectionFeed:
        """A `thresher export` folder, or any folder of Parquet files: a local path or
        an object-store URI such as s3://bucket/selections/train (see storage/uri.py)."""
        filesystem, files = uri.parquet_files(path)
        return cls(files, filesystem=filesystem, **kwargs)

    @classmethod
    def from_store(
        cls, store: Any, name: str, version: int | None = None, **kwargs: Any
    ) -> SelectionFeed:
        """A selection published by the curate flow (the latest version by default)."""
        uri.check_name(name)
        rows = store.query(
            "SELECT version, path FROM publications WHERE name = $n ORDER BY version DESC",
            {"n": name},
        ).to_pylist()
        if version is not None:
            rows = [r for r in rows if r["version"] == version]
        if not rows:
            what = f"version {version} of " if version is not None else ""
            raise ThresherError(
                f"{store.root}: no published {what}selection {name!r}; publish it with: "
                f"thresher publish {store.root} {name}"
            )
        return cls.from_dir(store.root / rows[0]["path"], **kwargs)

    @classmethod
    def from_uri(
        cls, base: str, name: str, version: int | None = None, **kwargs: Any
    ) -> SelectionFeed:
        """A selection the curate flow copied to `[select] publish_uri` = `base` (a folder
        or an object-store URI): the latest complete version (one with its _SUCCESS
        marker) by default. Needs no access to the store."""
        uri.check_name(name)
        folder = uri.selection_dir(base, name)
        fs, path = uri.resolve(folder)
        listing = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        versions = sorted(
            (i.base_name for i in listing if re.fullmatch(r"v\d{6,}", i.base_name)),
            key=lambda v: int(v[1:]),
            reverse=True,
        )
        if version is not None:
            versions = [v for v in versions if int(v[1:]) == version]
        for v in versions:
            if fs.get_file_info(f"{path}/{v}/{uri.DONE}").type == pafs.FileType.File:
                return cls.from_dir(f"{folder}/{v}", **kwargs)
        what = f"version {version} of " if version is not None else ""
        raise ThresherError(f"{base}: no complete published {what}selection {name!r}")

    # ----- epochs and resume
    def set_epoch(self, epoch: int) -> None:
        """Call before each epoch (as with DistributedSampler): it reseeds the shuffle."""
        self.epoch = epoch

    def loader(self, **kwargs: Any) -> FeedLoader:
        """A DataLoader over this feed that can save and restore its position."""
        return FeedLoader(self, **kwargs)

    # ----- the epoch's plan
    def _order(self) -> list[_Group]:
        if not self.shuffle_buffer:
            return list(self.groups)
        rng = np.random.default_rng([self.seed, self.epoch])
        return [self.groups[i] for i in rng.permutation(len(self.groups))]

    def rank_rows(self) -> int:
        lo, hi = _split(self.num_rows, self.world_size, self.rank)
        return hi - lo

    def worker_ranges(self, num_workers: int) -> list[tuple[int, int]]:
        """[start, end) positions in the epoch order read by each worker of this rank."""
        lo, hi = _split(self.num_rows, self.world_size, self.rank)
        n = hi - lo
        return [
            (lo + a, lo + b) for a, b in (_split(n, num_workers, w) for w in range(num_workers))
        ]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        ranges = self.worker_ranges(workers)
        role, skip = worker, 0
        if self._skip is not None and self._skip[0] == self.epoch:
            if self._skip[2] != workers:
                raise ThresherError(
                    f"resume state was saved with {self._skip[2]} DataLoader workers; "
                    f"this loader has {workers}"
                )
            counts = batches_per_worker([b - a for a, b in ranges], self.batch_size, self.drop_last)
            taken, nxt = round_robin_taken(counts, self._skip[1])
            # the new DataLoader starts its round-robin at worker 0: worker i takes the
            # part of the worker that was i places after the one due next
            role = (nxt + worker) % workers
            skip = taken[role]
        start, end = ranges[role]
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, role])
        for i, table in enumerate(self._batches(self._read(start, end), rng)):
            if i >= skip:
                # a FeedLoader's worker hands over arrays; the trainer makes the tensors
                yield to_arrays(table) if (info and self._array_transport) else to_torch(table)

    def _read(self, start: int, end: int) -> Iterator[pa.Table]:
        """This worker's rows, a row group at a time; the next one is decoded on a thread
        (Parquet decoding releases the GIL) while the current one is turned into tensors."""
        files: dict[int, pq.ParquetFile] = {}
        plan: list[tuple[_Group, int, int]] = []
        pos = 0
        for g in self._order():
            lo, hi = max(start, pos), min(end, pos + g.rows)
            if lo < hi:
                plan.append((g, lo - pos, hi - lo))
            pos += g.rows
            if pos >= end:
                break

        def load(item: tuple[_Group, int, int]) -> pa.Table:
            g, offset, length = item
            if g.file not in files:
                files[g.file] = self._open(g.file)
            table = files[g.file].read_row_group(g.group, columns=self.columns)
            table = table.slice(offset, length)
            if self._redact is not None:
                table = redaction.redact_table(table, self._redact, self._keep_spans)
            return table

        with ThreadPoolExecutor(max_workers=1) as pool:
            ahead = pool.submit(load, plan[0]) if plan else None
            for i in range(len(plan)):
                assert ahead is not None
                table = ahead.result()
                ahead = pool.submit(load, plan[i + 1]) if i + 1 < len(plan) else None
                yield table

    def _batches(self, tables: Iterator[pa.Table], rng: np.random.Generator) -> Iterator[pa.Table]:
        bs, size = self.batch_size, self.shuffle_buffer
        buffer: list[pa.Table] = []
        held = 0
        for table in tables:
            buffer.append(table)
            held += table.num_rows
            if size and held >= size:
                merged = pa.concat_tables(buffer).combine_chunks()
                perm = rng.permutation(held)
                out = (held - size // 2) // bs * bs  # whole batches, keep about half
                yield from _cut(merged.take(perm[:out]), bs)
                buffer, held = [merged.take(perm[out:])], held - out
            elif not size and held >= bs:
                merged = pa.concat_tables(buffer)
                out = held // bs * bs
                yield from _cut(merged.slice(0, out), bs)
                buffer, held = [merged.slice(out)], held - out
        if held:
            rest = pa.concat_tables(buffer)
            if size:
                rest = rest.take(rng.permutation(held))
            for batch in _cut(rest, bs):
                if batch.num_rows == bs or not self.drop_last:
                    yield batch

    # ----- other views of the same files
    def to_ray_dataset(self) -> Any:
        """The selection as a Ray Dataset (Ray Data reads the same Parquet files)."""
        import ray.data

        data = ray.data.read_parquet(self.files, columns=self.columns, filesystem=self.filesystem)
        if self._redact is not None:
            text, keep = self._redact, self._keep_spans
            data = data.map_batches(
                lambda t: redaction.redact_table(t, text, keep), batch_format="pyarrow"
            )
        return data

    def to_hf_dataset(self) -> Any:
        """The selection as a Hugging Face `datasets.Dataset` over the Arrow table in memory."""
        try:
            import datasets
            from datasets.table import InMemoryTable
        except ImportError as exc:
            raise ThresherError("to_hf_dataset needs: pip install datasets") from exc
        table = pa.concat_tables(
            pq.read_table(f, columns=self.columns, filesystem=self.filesystem) for f in self.files
        )
        if self._redact is not None:
            table = redaction.redact_table(table, self._redact, self._keep_spans)
        return datasets.Dataset(InMemoryTable(table))


def _cut(table: pa.Table, bs: int) -> Iterator[pa.Table]:
    for i in range(0, table.num_rows, bs):
        yield table.slice(i, bs)


class _Arrays(dict):
    """A batch as NumPy arrays and lists: what a FeedLoader's worker hands over (a
    contiguous array pickles as one copy; tensors would each go through shared memory)."""


def to_arrays(table: pa.Table) -> _Arrays:
    """Columns as compact NumPy arrays where they are numbers or equal-length number lists
    (2-D), else Python lists; `weight` as float32."""
    out = _Arrays()
    for name, col in zip(table.column_names, table.columns, strict=True):
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        t = arr.type
        if arr.null_count:
            out[name] = arr.to_pylist()
        elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            out[name] = np.array(arr.to_numpy(zero_copy_only=False))  # a writable copy
        elif (pa.types.is_fixed_size_list(t) or pa.types.is_list(t)) and (
            pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)
        ):
            out[name] = _matrix(arr)
        else:
            out[name] = arr.to_pylist()
    if isinstance(out.get(WEIGHT), np.ndarray):
        out[WEIGHT] = out[WEIGHT].astype(np.float32)
    return out


def tensors(arrays: dict[str, Any]) -> dict[str, Any]:
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in arrays.items()}


def to_torch(table: pa.Table) -> dict[str, Any]:
    """Columns as tensors where they are numbers or equal-length number lists, else lists."""
    return tensors(to_arrays(table))


def _matrix(arr: pa.Array) -> Any:
    if pa.types.is_fixed_size_list(arr.type):
        width = arr.type.list_size
    else:
        lengths = np.diff(arr.offsets.to_numpy())
        if len(lengths) and (lengths != lengths[0]).any():
            return arr.to_pylist()
        width = int(lengths[0]) if len(lengths) else 0
    values = arr.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(arr), width).copy()


def _as_is(batch: Any) -> Any:
    return batch


class FeedLoader(DataLoader):
    """A DataLoader over a `SelectionFeed` that counts what it handed out, so a
    training job can save its position with the checkpoint and resume there."""

    def __init__(self, feed: SelectionFeed, **kwargs: Any) -> None:
        kwargs.setdefault("batch_size", None)
        if kwargs["batch_size"] is not None:
            raise ThresherError("the feed makes its own batches: leave DataLoader batch_size unset")
        if kwargs.get("persistent_workers"):
            raise ThresherError(
                "persistent_workers: the feed's epoch and resume state reach its workers only "
                "when they start; leave it off"
            )
        if "collate_fn" in kwargs:
            raise ThresherError("the feed makes its own batches: no collate_fn")
        feed._array_transport = kwargs.get("num_workers", 0) > 0
        kwargs["collate_fn"] = _as_is
        super().__init__(feed, **kwargs)
        self.feed = feed
        self.batches = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        pending = self.feed._skip
        resuming = pending is not None and pending[0] == self.feed.epoch
        self.batches = pending[1] if pending is not None and resuming else 0
        for batch in super().__iter__():
            self.batches += 1
            yield tensors(batch) if isinstance(batch, _Arrays) else batch
        self.feed._skip = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.feed.epoch, "batches": self.batches, "seed": self.feed.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.feed.seed) != self.feed.seed:
            raise ThresherError(f"resume state has seed {state['seed']}, the feed {self.feed.seed}")
        self.feed.set_epoch(state["epoch"])
        self.feed._skip = (state["epoch"], state["batches"], max(self.num_workers, 1))
        self.batches = state["batches"]
