"""Token counts with the bundled tokenizer, parameter sizes, and the budget."""

from __future__ import annotations

import pyarrow as pa
import pytest

from thresher.scoring.tokens import (
    TokenStage,
    count_tokens,
    load_tokenizer,
    optimal_tokens,
    parse_params,
    tokenizer_dir,
)


def test_bundled_tokenizer_counts_without_special_tokens() -> None:
    tok = load_tokenizer(tokenizer_dir("minilm"))
    # BERT WordPiece: "the cat sat on the mat." -> 7 tokens (the full stop is one)
    assert count_tokens(tok, ["The cat sat on the mat.", "", None]).tolist() == [7, 0, 0]
    long = " ".join(["word"] * 1000)  # no truncation at the model's 256/512
    assert count_tokens(tok, [long]).tolist() == [1000]


def test_stage() -> None:
    stage = TokenStage()
    stage.setup()
    out = stage.process(pa.table({"item_id": [5, 6], "text": ["hello world", "a"]}))
    assert out.to_pylist() == [{"item_id": 5, "tokens": 2}, {"item_id": 6, "tokens": 1}]


@pytest.mark.parametrize(
    ("text", "value"),
    [("125M", 125_000_000), ("1.3B", 1_300_000_000), ("7e9", 7_000_000_000), ("70000", 70_000)],
)
def test_params(text: str, value: int) -> None:
    assert parse_params(text) == value
    assert optimal_tokens(value) == 20 * value  # Hoffmann et al. 2022


@pytest.mark.parametrize("text", ["", "1.3X", "-5", "0", "big"])
def test_bad_params(text: str) -> None:
    with pytest.raises(ValueError, match="--params"):
        parse_params(text)


def test_unknown_tokenizer_folder(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        tokenizer_dir(str(tmp_path))
