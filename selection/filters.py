"""Cheap quality rules run before anything expensive, each drop with its reason.

Rules, in the order they are checked (the first that fails is the reason):

- ``min_chars`` / ``max_chars``: length bounds on the stripped text;
- ``drop_regex``: drop a text that matches any of these (``re.search``);
- ``keep_regex``: when given, drop a text that matches none of them;
- ``max_repeated_line_ratio``: fraction of non-empty lines that repeat an
  earlier line (boilerplate, scraped menus);
- ``max_repeated_ngram_ratio``: fraction of word n-grams (``ngram`` words)
  that occur more than once in the text, all their occurrences counted
  (Gopher's repetition rule, on n-grams rather than characters);
- ``languages`` / ``min_language_confidence``: the item's language (from the
  `languages` table, see `thresher.selection.langid`) is not one of these, or
  was identified with less confidence (reason ``language: xx``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from thresher.selection.langid import language_reason
from thresher.storage.errors import ThresherError
from thresher.storage.stage import Resources, Stage


@dataclass(frozen=True)
class Rules:
    min_chars: int = 0
    max_chars: int | None = None
    drop_regex: tuple[str, ...] = ()
    keep_regex: tuple[str, ...] = ()
    max_repeated_line_ratio: float | None = None
    max_repeated_ngram_ratio: float | None = None
    ngram: int = 3
    languages: tuple[str, ...] = ()
    min_language_confidence: float = 0.0

    @property
    def by_language(self) -> bool:
        return bool(self.languages) or self.min_language_confidence > 0

    def compiled(self) -> tuple[list[re.Pattern[str]], list[re.Pattern[str]]]:
        def comp(patterns: tuple[str, ...], key: str) -> list[re.Pattern[str]]:
            out = []
            for p in patterns:
                try:
                    out.append(re.compile(p))
                except re.error as exc:
                    msg = f"[filter] {key}: bad regular expression {p!r}: {exc}"
                    raise ThresherError(msg) from None
            return out

        return comp(self.drop_regex, "drop_regex"), comp(self.keep_regex, "keep_regex")

    @property
    def active(self) -> bool:
        return self != Rules(ngram=self.ngram)


def repeated_line_ratio(text: str) -> float:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (len(lines) - len(set(lines))) / len(lines) if lines else 0.0


def repeated_ngram_ratio(text: str, n: int) -> float:
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    counts = Counter(grams)
    return sum(c for c in counts.values() if c > 1) / len(grams)


def reasons(
    texts: Sequence[str | None],
    rules: Rules,
    languages: Sequence[tuple[str | None, float | None]] | None = None,
) -> list[str | None]:
    """The reason each text is dropped, or None where it passes every rule; `languages`:
    each text's (language, confidence), needed when the rules check languages."""
    drop, keep = rules.compiled()
    if rules.by_language and languages is None:
        raise ThresherError("[filter] languages: the items' languages are needed")
    out: list[str | None] = []
    for i, raw in enumerate(texts):
        found = _reason(raw or "", rules, drop, keep)
        if found is None and languages is not None and rules.by_language:
            lang, conf = languages[i]
            found = language_reason(lang, conf, rules.languages, rules.min_language_confidence)
        out.append(found)
    return out


def _reason(raw: str, rules: Rules, drop, keep) -> str | None:
    text = raw.strip()
    if len(text) < rules.min_chars:
        return f"min_chars: {len(text)} < {rules.min_chars}"
    if rules.max_chars is not None and len(text) > rules.max_chars:
        return f"max_chars: {len(text)} > {rules.max_chars}"
    for p in drop:
        if p.search(text):
            return f"drop_regex: {p.pattern}"
    if keep and not any(p.search(text) for p in keep):
        return "keep_regex: no match"
    limit = rules.max_repeated_line_ratio
    if limit is not None and (r := repeated_line_ratio(text)) > limit:
        return f"max_repeated_line_ratio: {r:.2f} > {limit}"
    limit = rules.max_repeated_ngram_ratio
    if limit is not None and (r := repeated_ngram_ratio(text, rules.ngram)) > limit:
        return f"max_repeated_ngram_ratio: {r:.2f} > {limit}"
    return None


def rule_names(found: Sequence[str | None]) -> dict[str, int]:
    """Dropped rows per rule (the part of each reason before the colon)."""
    names = np.array([r.split(":", 1)[0] for r in found if r is not None])
    uniq, counts = np.unique(names, return_counts=True)
    return dict(zip(uniq.tolist(), counts.tolist(), strict=True))


class FilterStage(Stage):
    """(item_id, batch_id, text[, language, confidence]) -> (item_id, batch_id, reason):
    why each row is dropped, null where it is kept."""

    name = "filter"
    resources = Resources(cpus=1)
    required_columns = ("item_id", "batch_id", "text")

    def __init__(self, rules: Rules) -> None:
        self.rules = rules

    def process(self, batch: pa.Table) -> pa.Table:
        languages = None
        if self.rules.by_language:
            languages = list(
                zip(
                    batch.column("language").to_pylist(),
                    batch.column("confidence").to_pylist(),
                    strict=True,
                )
            )
        found = reasons(batch.column("text").to_pylist(), self.rules, languages)
        return pa.table(
            {
                "item_id": batch.column("item_id"),
                "batch_id": batch.column("batch_id"),
                "reason": pa.array(found, pa.string()),
            }
        )
