"""The store (Parquet tables + DuckDB catalog), ingest, the stage contract and the Ray adapter."""

from thresher.storage.store import Run, StageCounts, Store

__all__ = ["Run", "StageCounts", "Store"]
