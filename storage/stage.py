"""The stage contract: a named, resourced transformation of Arrow tables.

A stage wraps a pure algorithm (a typed function over Arrow/NumPy/torch,
tested on its own) with what a runner needs: its resources, a `setup()` that
loads a model or index once per worker, and `process(batch) -> batch`.
`thresher.storage.ray_adapter.run_stage` runs one over Ray: as actors when the
stage has state to set up or wants GPUs, as tasks otherwise.

This module is the whole contract between algorithms and the runtime. It
imports nothing of thresher and never loads DuckDB or the store, so that
importing any algorithm module (`thresher.scoring.*`, `thresher.selection.*`)
stays cheap and usable on a machine with only NumPy, pyarrow and torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from thresher.storage.errors import ThresherError


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs; Ray schedules by it."""

    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.cpus < 0 or self.gpus < 0:
            raise ThresherError(f"resources must be >= 0, got cpus={self.cpus}, gpus={self.gpus}")
        if self.cpus == 0 and self.gpus == 0:
            raise ThresherError("a stage needs some cpus or gpus")


class Stage:
    """Base class: subclasses set `name`, maybe `resources`, and implement `process`."""

    name: ClassVar[str] = "stage"
    resources: Resources = Resources()
    required_columns: Sequence[str] = ()

    def setup(self) -> None:
        """Load models or indexes once per worker; called before the first `process`."""

    def process(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError

    @property
    def stateful(self) -> bool:
        """True when the stage should run as actors (it sets up state or uses GPUs)."""
        return type(self).setup is not Stage.setup or self.resources.gpus > 0

    def check_columns(self, batch: pa.Table) -> None:
        missing = [c for c in self.required_columns if c not in batch.column_names]
        if missing:
            raise ThresherError(
                f"stage {self.name!r} needs column(s) {', '.join(map(repr, missing))}; "
                f"the input has: {', '.join(batch.column_names)}"
            )


def vectors_to_arrow(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """(n, d) float32 -> a fixed-size-list column, without copying."""
    d = vectors.shape[1]
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, d)


def arrow_to_vectors(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A (fixed-size) list column of equal-length vectors -> (n, d) float32."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    n = len(column)
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(n, -1) if n else np.zeros((0, 0), np.float32)


def task_threads() -> int:
    """The threads this process should use: the CPUs of the Ray task or actor that runs
    it (`ray_adapter.fit_threads` sets OMP_NUM_THREADS to them), else every CPU of the machine."""
    return int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1
