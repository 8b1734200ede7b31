"""The store (Parquet tables + DuckDB catalog), ingest, the stage contract and the Ray adapter.

Submodules load lazily: algorithm modules import `thresher.storage.stage` (the
stage contract) and must not pay for DuckDB or the store by doing so.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thresher.storage.store import Run, StageCounts, Store

__all__ = ["Run", "StageCounts", "Store"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("thresher.storage.store"), name)
    raise AttributeError(f"module 'thresher.storage' has no attribute {name!r}")
