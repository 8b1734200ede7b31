"""Language ID: ISO 639-1 codes on short sentences in several scripts; the filter rule."""

from __future__ import annotations

import pyarrow as pa

from thresher.selection.filters import Rules, reasons
from thresher.selection.langid import LangIdStage, identify, language_reason

SHORT = {
    "en": "Our dog sleeps under the table",
    "de": "Unser Hund schläft unter dem Tisch",
    "ru": "Она забыла зонт на работе",
    "ar": "ينام كلبنا تحت الطاولة",
    "hi": "हमारा कुत्ता मेज़ के नीचे सोता है",
    "zh": "我们的狗睡在桌子下面",
    "th": "สุนัขของเรานอนอยู่ใต้โต๊ะ",
}


def test_short_sentences_in_several_scripts() -> None:
    found = identify(list(SHORT.values()))
    assert [lang for lang, _ in found] == list(SHORT)
    assert all(0.5 < conf <= 1.0 for _, conf in found)  # observed >= 0.9 on these


def test_text_without_letters_is_undetermined() -> None:
    assert identify([None, "", "  12 345 !!"]) == [("und", 0.0)] * 3


def test_language_reason() -> None:
    assert language_reason("en", 0.9, ("en",), 0.5) is None
    assert language_reason("fr", 0.9, ("en",), 0.0) == "language: fr"
    assert language_reason("en", 0.3, ("en",), 0.5) == "language: en 0.30 < 0.5"
    assert language_reason(None, None, (), 0.0) is None  # no rule: any language passes


def test_filter_rule_uses_the_given_languages() -> None:
    rules = Rules(min_chars=3, languages=("en", "de"))
    found = reasons(["ok text", "x", "bonjour"], rules, [("en", 1.0), ("en", 1.0), ("fr", 0.9)])
    assert found == [None, "min_chars: 1 < 3", "language: fr"]


def test_stage_appends_language_and_confidence() -> None:
    batch = pa.table({"item_id": [7, 8], "text": [SHORT["zh"], None]})
    out = LangIdStage().process(batch)
    assert out.column_names == ["item_id", "language", "confidence"]
    assert out.column("language").to_pylist() == ["zh", "und"]


def test_only_iso_639_1_languages_so_short_english_is_not_pidgin() -> None:
    # the full py3langid model says Nigerian Pidgin (pcm) for this one (0.50); now en (0.79)
    assert identify(["A Python package to get optimal solutiion."])[0][0] == "en"
    from thresher.selection.langid import _identifier

    assert all(
        len(c) == 2 or c in ("ary", "arz", "yue", "wuu", "uzs", "zxx")
        for c in _identifier().nb_classes
    )
