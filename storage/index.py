"""FAISS indexes over unit vectors (inner product = cosine): build, add, save, load.

Kinds: ``flat`` (exact; the default up to 50k vectors), ``ivf`` (inverted
lists, nlist ~ 4 sqrt(n), probing 1/8 of the lists), ``hnsw`` (graph, M=32,
efConstruction=128; the default above 50k: on 200k MiniLM vectors it was the
only shortlist fast enough for a 4x funnel, see benchmarks/retrieval.py).
Codes: ``none`` (float32), ``sq8`` (8-bit scalar quantizer) or ``pq``
(product quantizer, 8 bits per sub-vector; IVF only). Ids are the store's
int64 `item_id`s (an `IndexIDMap2` around flat and HNSW indexes). GPU copies
are made when faiss-gpu is installed and a GPU is visible.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from thresher.storage.errors import ThresherError

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]
Codes = Literal["none", "sq8", "pq"]
KINDS: tuple[str, ...] = ("auto", "flat", "ivf", "hnsw")
CODES: tuple[str, ...] = ("none", "sq8", "pq")
FLAT_MAX = 50_000
# above this many vectors `auto` builds IVF with 8-bit codes instead of HNSW: an HNSW graph
# over 10M 128-d float vectors needs ~7.6 GB in one process, IVF-SQ8 ~1.3 GB
HNSW_MAX = 2_000_000


def _check(vectors: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise ThresherError(f"vectors {vectors.shape} and ids {ids.shape} do not match")
    if not np.isfinite(vectors).all():
        raise ThresherError("vectors contain NaN or inf")
    return vectors, ids


def build_index(
    vectors: np.ndarray,
    ids: np.ndarray,
    kind: IndexKind = "auto",
    codes: Codes = "none",
    *,
    seed: int = 0,
) -> faiss.Index:
    """An index over (n, d) unit vectors with the given int64 ids."""
    vectors, ids = _check(vectors, ids)
    index = new_index(vectors.shape[1], len(vectors), kind, codes, train=vectors, seed=seed)
    index.add_with_ids(vectors, ids)
    return index


def new_index(
    d: int,
    n: int,
    kind: IndexKind = "auto",
    codes: Codes = "none",
    *,
    train: np.ndarray,
    seed: int = 0,
) -> faiss.Index:
    """An empty index for about n (d,) unit vectors, trained (IVF, codes) on `train`; fill
    it with `add`, a batch at a time."""
    import faiss

    if kind not in KINDS or codes not in CODES:
        raise ThresherError(
            f"index kind {kind!r} / codes {codes!r}: allowed kinds "
            f"{', '.join(KINDS)}; codes {', '.join(CODES)}"
        )
    vectors = np.ascontiguousarray(train, dtype=np.float32)
    if kind == "auto":
        kind = "flat" if n <= FLAT_MAX else "hnsw" if n <= HNSW_MAX else "ivf"
        if kind == "ivf" and codes == "none":
            codes = "sq8"
    ip = faiss.METRIC_INNER_PRODUCT
    index: Any
    inner: Any
    if kind == "ivf":
        nlist = max(1, min(int(4 * math.sqrt(n)), len(vectors) // 39 or 1))
        quantizer = faiss.IndexFlatIP(d)
        if codes == "pq":
            m = next(m for m in (d // 4, d // 2, d, 1) if m and d % m == 0)
            index = faiss.IndexIVFPQ(quantizer, d, nlist, m, 8, ip)
        elif codes == "sq8":
            index = faiss.IndexIVFScalarQuantizer(
                quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, ip
            )
        else:
            index = faiss.IndexIVFFlat(quantizer, d, nlist, ip)
        index.cp.seed = seed
        index.train(vectors)
        index.nprobe = max(1, nlist // 8)
        return index
    if codes == "pq":
        raise ThresherError("pq codes need --index ivf")
    if kind == "hnsw":
        inner = (
            faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, 32, ip)  # type: ignore[arg-type]  # stub is wrong
            if codes == "sq8"
            else faiss.IndexHNSWFlat(d, 32, ip)
        )
        inner.hnsw.efConstruction = 128
        inner.hnsw.efSearch = 128
        if codes == "sq8":
            inner.train(vectors)
    else:
        inner = (
            faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, ip)
            if codes == "sq8"
            else faiss.IndexFlatIP(d)
        )
        if codes == "sq8":
            inner.train(vectors)
    return faiss.IndexIDMap2(inner)


def add(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray) -> None:
    """Add vectors to an existing index (incremental update)."""
    vectors, ids = _check(vectors, ids)
    if vectors.shape[1] != index.d:
        raise ThresherError(f"vectors have {vectors.shape[1]} dimensions, the index {index.d}")
    index.add_with_ids(vectors, ids)


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (nq, k); missing results have id -1."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != index.d:
        raise ThresherError(
            f"query vectors have shape {queries.shape}; the index expects (n, {index.d})"
        )
    if not np.isfinite(queries).all():
        raise ThresherError("query vector contains NaN or inf")
    return index.search(queries, k)


def set_search_width(index: faiss.Index, width: int) -> None:
    """Let an HNSW index explore at least `width` candidates (efSearch); others as they are."""
    import faiss

    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = max(width, 16)


def save_index(index: faiss.Index, path: Path) -> None:
    """Write atomically: a temporary name, then rename."""
    import faiss

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(to_cpu(index), str(tmp))
    os.replace(tmp, path)


def load_index(path: Path, gpu: bool = False) -> faiss.Index:
    import faiss

    if not path.is_file():
        raise ThresherError(f"index file {path} is missing")
    index = faiss.read_index(str(path))
    return to_gpu(index) if gpu else index


def gpu_available() -> bool:
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def to_gpu(index: faiss.Index) -> faiss.Index:
    import faiss

    if not gpu_available():
        return index
    return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)


def to_cpu(index: faiss.Index) -> faiss.Index:
    import faiss

    return faiss.index_gpu_to_cpu(index) if "Gpu" in type(index).__name__ else index
