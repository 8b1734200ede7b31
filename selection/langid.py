"""Language identification of each text: an ISO 639-1 code and a confidence.

The model is restricted to the languages that have an ISO 639-1 code (116 of
py3langid 0.4's 142, plus Egyptian/Moroccan Arabic, Cantonese, Wu and
Southern Uzbek under their macrolanguage's code). The 20 others are mostly
regional languages and English- or French-based creoles, and on short English
text they win too often: of the first 20,000 PyPI summaries the full model
called 84.6% English (Nigerian Pidgin ``pcm`` took 5.9% of the first 5,000:
"A Python package to get optimal solutiion."), the restricted one 89.8%,
with the same accuracy (0.95) on the check sentences of `benchmarks/langid.py`.

The model is py3langid's (Lui & Baldwin 2012, "langid.py: An Off-the-shelf
Language Identification Tool": naive Bayes over byte n-grams),
shipped inside its wheel, so it works offline. Chosen by `benchmarks/langid.py`
(README, Design notes): on short sentences in 10 languages and 6 scripts it
reaches 0.95 at ~30k rows/s on one core, where lingua is more accurate (0.98)
but 20x slower and needs 1.3 GB per worker.

`confidence` is py3langid's normalized probability (a softmax over its
languages, tempered by the text's length). A text with no letters (empty,
digits, punctuation only) has language ``und`` (ISO 639-2 "undetermined") and
confidence 0.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.storage.errors import ThresherError
from thresher.storage.stage import Resources, Stage

UNDETERMINED = "und"
# py3langid codes with an ISO 639-1 macrolanguage (Egyptian/Moroccan Arabic, Cantonese,
# Wu, Southern Uzbek), and its "no linguistic content"; the model knows only these and
# the two-letter ones (`_identifier`)
_TO_639_1 = {"ary": "ar", "arz": "ar", "yue": "zh", "wuu": "zh", "uzs": "uz", "zxx": UNDETERMINED}


@functools.cache
def _identifier() -> Any:
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        raise ThresherError("language ID needs py3langid: pip install py3langid") from None
    model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    model.set_languages([c for c in model.nb_classes if len(c) == 2 or c in _TO_639_1])
    # set_languages leaves the (features, languages) table column-major, which makes
    # each text's lookup of its feature rows 1.7x slower (measured)
    model.nb_ptc = np.ascontiguousarray(model.nb_ptc)
    return model


def identify(texts: Sequence[str | None]) -> list[tuple[str, float]]:
    """(language, confidence) of each text; nulls are undetermined."""
    model = _identifier()
    out = []
    for text in texts:
        if not text or not any(c.isalpha() for c in text):
            out.append((UNDETERMINED, 0.0))
            continue
        lang, conf = model.classify(text)
        out.append((_TO_639_1.get(lang, str(lang)), float(conf)))
    return out


def language_reason(
    language: str | None, confidence: float | None, allowed: Sequence[str], min_confidence: float
) -> str | None:
    """Why an item is dropped for its language (None: kept): not one of `allowed` (any
    language when empty), or identified with less than `min_confidence`."""
    lang = language or UNDETERMINED
    if allowed and lang not in allowed:
        return f"language: {lang}"
    if (confidence or 0.0) < min_confidence:
        return f"language: {lang} {confidence or 0.0:.2f} < {min_confidence}"
    return None


class LangIdStage(Stage):
    """(item_id, text) -> (item_id, language, confidence)."""

    name = "langid"
    resources = Resources(cpus=1)
    required_columns = ("item_id", "text")

    def setup(self) -> None:
        _identifier()

    def process(self, batch: pa.Table) -> pa.Table:
        found = identify(batch.column("text").to_pylist())
        return pa.table(
            {
                "item_id": batch.column("item_id"),
                "language": pa.array([f[0] for f in found], pa.string()),
                "confidence": pa.array([f[1] for f in found], pa.float64()),
            }
        )
