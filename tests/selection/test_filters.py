"""Quality rules: each drop names the rule that fired, and clean text passes."""

from __future__ import annotations

import pytest

from thresher.selection.filters import (
    Rules,
    reasons,
    repeated_line_ratio,
    repeated_ngram_ratio,
    rule_names,
)


def test_each_rule_names_itself_and_clean_text_passes() -> None:
    rules = Rules(
        min_chars=10,
        max_chars=200,
        drop_regex=(r"(?i)lorem ipsum",),
        max_repeated_line_ratio=0.3,
        max_repeated_ngram_ratio=0.5,
        ngram=2,
    )
    texts = [
        "a fine sentence about bread",
        "short",
        "x" * 201,
        "Lorem Ipsum dolor sit amet",
        "menu\nmenu\nmenu\nabout us",
        "buy now buy now buy now buy now today",
        None,
    ]
    found = reasons(texts, rules)
    assert found[0] is None
    assert found[1] == "min_chars: 5 < 10"
    assert found[2] == "max_chars: 201 > 200"
    assert found[3] == "drop_regex: (?i)lorem ipsum"
    assert found[4] is not None and found[4].startswith("max_repeated_line_ratio: 0.50")
    assert found[5] is not None and found[5].startswith("max_repeated_ngram_ratio")
    assert found[6] == "min_chars: 0 < 10"
    assert rule_names(found) == {
        "drop_regex": 1,
        "max_chars": 1,
        "max_repeated_line_ratio": 1,
        "max_repeated_ngram_ratio": 1,
        "min_chars": 2,
    }


def test_keep_regex_drops_what_matches_none() -> None:
    found = reasons(["the cat sat", "a dog ran"], Rules(keep_regex=("cat", "bird")))
    assert found == [None, "keep_regex: no match"]


def test_ratios() -> None:
    assert repeated_line_ratio("a\nb\na\n\n") == pytest.approx(1 / 3)
    assert repeated_line_ratio("") == 0.0
    # bigrams of "a b a b": (a b), (b a), (a b): the two (a b) repeat
    assert repeated_ngram_ratio("a b a b", 2) == pytest.approx(2 / 3)
    assert repeated_ngram_ratio("one", 3) == 0.0


def test_bad_pattern_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"\[filter\] drop_regex: bad regular expression '\('"):
        reasons(["x"], Rules(drop_regex=("(",)))
