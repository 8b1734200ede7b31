"""The ids an ingest has seen: sorted runs, checked against a Python set."""

from __future__ import annotations

import itertools

import numpy as np

from thresher.storage.validate import IdSet


def test_id_set_answers_like_a_set_over_many_batches() -> None:
    rng = np.random.default_rng(0)
    start = rng.choice(10**6, 500, replace=False)
    ids, truth = IdSet(start), set(start.tolist())
    for _ in range(200):
        batch = rng.integers(0, 10**6, int(rng.integers(0, 300)))
        expected = np.array([v in truth for v in batch.tolist()], dtype=bool)
        assert (ids.contains(batch) == expected).all()
        new = np.unique(batch[~expected])
        ids.add(new)
        truth |= set(new.tolist())
    runs = ids.runs
    assert sum(map(len, runs)) == len(truth)  # each id once
    assert all((np.diff(r) > 0).all() for r in runs)  # each run sorted and distinct
    assert all(len(a) >= 2 * len(b) for a, b in itertools.pairwise(runs))
    assert len(runs) <= 1 + int(np.log2(len(truth)))  # so lookups stay O(log^2 n)


def test_an_empty_id_set() -> None:
    ids = IdSet(np.zeros(0, np.int64))
    assert not ids.contains(np.array([1, 2])).any()
    ids.add(np.zeros(0, np.int64))
    assert ids.runs == []
