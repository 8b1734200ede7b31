from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from thresher.selection.exact import ContentHash, content_hash, exact_duplicates, normalize_text


def test_normalization_is_documented_behaviour() -> None:
    texts = pa.array(["Hello  World\n", "hello world", "Ｈｅｌｌｏ world", "Hello, World", None])
    assert normalize_text(texts).to_pylist() == [
        "hello world",
        "hello world",
        "hello world",
        "hello, world",
        None,
    ]
    h = content_hash(texts)
    assert h[0] == h[1] == h[2] and h[3] != h[0] and h.dtype == np.int64


def brute_force(hashes: list[int]) -> dict[int, int]:
    first: dict[int, int] = {}
    out = {}
    for i, h in enumerate(hashes):
        if h in first:
            out[i] = first[h]
        else:
            first[h] = i
    return out


@given(st.lists(st.integers(-3, 3), max_size=60))
def test_exact_duplicates_keep_the_first_of_each_group(values) -> None:
    dup, kept = exact_duplicates(np.array(values, dtype=np.int64))
    assert dict(zip(dup.tolist(), kept.tolist(), strict=True)) == brute_force(values)


def test_content_hash_stage_appends_a_column() -> None:
    out = ContentHash("text").process(pa.table({"text": ["a", "A "]}))
    assert out.column_names == ["text", "content_hash"]
    assert out.column("content_hash")[0] == out.column("content_hash")[1]
