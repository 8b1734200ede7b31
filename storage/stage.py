"""The stage contract: a named, resourced transformation of Arrow tables.

A stage wraps a pure algorithm (a typed function over Arrow/NumPy/torch,
tested on its own) with what a runner needs: its resources, a `setup()` that
loads a model or index once per worker, and `process(batch) -> batch`.
`thresher.storage.ray_adapter.run_stage` runs one over Ray: as actors when the
stage has state to set up or wants GPUs, as tasks otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs; Ray schedules by it."""

    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.cpus < 0 or self.gpus < 0:
            raise ValueError(f"resources must be >= 0, got cpus={self.cpus}, gpus={self.gpus}")
        if self.cpus == 0 and self.gpus == 0:
            raise ValueError("a stage needs some cpus or gpus")


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
            raise ValueError(
                f"stage {self.name!r} needs column(s) {', '.join(map(repr, missing))}; "
                f"the input has: {', '.join(batch.column_names)}"
            )
