"""Reading rows of memory-mapped index parts (`vectors.VectorParts.take`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from thresher.storage import vectors


def _parts(tmp_path, sizes: list[int], d: int = 8) -> tuple[vectors.VectorParts, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((n, d)).astype(np.float32) for n in sizes]
    parts = vectors.VectorParts.__new__(vectors.VectorParts)
    for i, a in enumerate(arrays):
        np.save(tmp_path / f"p{i}.npy", a)
    parts.parts = [np.load(tmp_path / f"p{i}.npy", mmap_mode="r") for i in range(len(sizes))]
    parts.starts = np.cumsum([0, *sizes])
    return parts, np.concatenate(arrays)


def test_take_reads_rows_across_parts_in_the_order_asked(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(vectors, "READ_ROWS", 7)  # runs of consecutive rows in several reads
    parts, whole = _parts(tmp_path, [50, 3, 120])
    rows = np.random.default_rng(1).choice(len(whole), 100, replace=False)
    rows = np.concatenate([rows, rows[:5]])  # repeated rows too
    np.testing.assert_array_equal(parts.take(rows), whole[rows])
    np.testing.assert_array_equal(parts.take(np.arange(60, 150)), whole[60:150])  # one part
    np.testing.assert_array_equal(parts.take(np.arange(40, 60)), whole[40:60])  # runs, 3 parts
    np.testing.assert_array_equal(parts.take(np.zeros(0, np.int64)), whole[:0])


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc")
def test_take_maps_no_page_of_the_part(tmp_path) -> None:
    parts, whole = _parts(tmp_path, [320_000], d=64)  # an 82 MB part
    rows = np.arange(0, 320_000, 4)  # every page of it, 20 MB out
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := RSS now
    before = _status("VmRSS")
    got = parts.take(rows)
    assert _status("VmHWM") - before < 20 * 2**20 + 16 * 2**20  # the output, not the part
    np.testing.assert_array_equal(got, whole[rows])
    del got
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS")
    assert float(np.asarray(parts.parts[0]).sum()) == float(whole.sum())  # a plain read
    assert _status("VmHWM") - before > 70 * 2**20  # maps the whole part
