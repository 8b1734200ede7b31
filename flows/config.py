"""The curate flow's TOML config: sections, defaults, and validation.

Every key is checked before anything runs: an unknown section or key, a value
of the wrong type, or one outside its allowed set is refused with one line that
names the file, the key and what is allowed. Paths in the config are relative
to the config file's folder.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from thresher.scoring.embedders import BUILTIN, Device, model_path
from thresher.selection.pruning import Balance, PolicyChoice
from thresher.selection.semantic import KeepPolicy
from thresher.storage.errors import ConfigError
from thresher.storage.guess import Guess, ThresherError
from thresher.storage.readers import Format
from thresher.storage.uri import check_name

SEED_MAX = 2**32 - 1  # NumPy's and torch's seeds are unsigned 32-bit
# what `thresher score` computes by default, and what it computes when asked
DEFAULT_SCORE_METRICS = ("prototype", "density", "uncertainty")
SCORE_METRICS = (*DEFAULT_SCORE_METRICS, "label_issue", "quality")


def _bounds(lo: float | None, hi: float | None, default: Any) -> Any:
    return field(default=default, metadata={"bounds": (lo, hi)})


def _regexes(default: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"regex": True})


@dataclass(frozen=True)
class IngestSection:
    sources: tuple[str, ...] = ()
    format: Format = "auto"
    id_column: str | None = None
    text_column: str = "text"
    label_column: str | None = None
    embedding_column: str | None = None  # precomputed vectors (a list-of-floats column)


@dataclass(frozen=True)
class FilterSection:
    """Cheap rules run before embedding; a dropped row is counted with its reason."""

    min_chars: int = _bounds(0, None, 0)
    max_chars: int | None = _bounds(1, None, None)
    drop_regex: tuple[str, ...] = _regexes()
    keep_regex: tuple[str, ...] = _regexes()
    max_repeated_line_ratio: float | None = _bounds(0, 1, None)
    max_repeated_ngram_ratio: float | None = _bounds(0, 1, None)
    ngram: int = _bounds(1, 20, 3)
    languages: tuple[str, ...] = ()  # ISO 639-1 codes to keep, e.g. ["en"]; [] keeps all
    min_language_confidence: float = _bounds(0, 1, 0.0)


@dataclass(frozen=True)
class EmbedSection:
    model: str = "minilm"
    max_seq_length: int = _bounds(8, 4096, 128)
    batch_size: int = _bounds(1, None, 64)
    int8: bool = False
    # auto: cuda when the driver sees a GPU; set cuda on a cluster whose head has none
    device: Device = "auto"


@dataclass(frozen=True)
class DedupSection:
    exact: bool = True
    fuzzy: float | None = _bounds(0.05, 1, 0.8)  # Jaccard threshold; none to skip
    semantic: float | None = _bounds(0.5, 1, 0.95)  # cosine threshold; none to skip
    semantic_keep: KeepPolicy = "first"


@dataclass(frozen=True)
class ScoreSection:
    clusters: int | None = _bounds(1, None, None)
    refit: bool = False
    seed: int = _bounds(0, SEED_MAX, 0)
    # also label_issue (with labels) and quality (with a reference file)
    metrics: tuple[str, ...] = DEFAULT_SCORE_METRICS
    reference: str | None = None  # texts of what good looks like, for quality
    reference_column: str | None = None  # its text column; none: guessed


@dataclass(frozen=True)
class SelectSection:
    name: str = "train"
    keep: float = _bounds(0.0001, 1, 0.5)
    policy: PolicyChoice = "auto"
    balance: Balance = "auto"
    where: str | None = None
    seed: int = _bounds(0, SEED_MAX, 0)
    publish_uri: str | None = None  # each published version is also copied here
    keep_contaminated: bool = False  # true: also items `thresher decontaminate` found
    # a budget in tokens instead of keep (`thresher plan` prints one); counts tokens first
    keep_tokens: int | None = _bounds(1, None, None)
    # leave out this fraction of labelled items most likely mislabelled (needs [score]
    # metrics with label_issue)
    drop_label_issues: float = _bounds(0, 0.99, 0.0)


@dataclass(frozen=True)
class TokensSection:
    """Count each kept item's tokens (`thresher tokens`); on when [select] keep_tokens is."""

    enabled: bool = False
    tokenizer: str = "minilm"  # or a local Hugging Face tokenizer folder (tokenizer.json)


@dataclass(frozen=True)
class PiiSection:
    """Find PII spans in the kept items (`thresher pii`), for export --redact-pii."""

    enabled: bool = False


@dataclass(frozen=True)
class DecontaminateSection:
    """Eval files whose texts the training data must not contain (`thresher decontaminate`);
    checked before select, which leaves the contaminated items out."""

    eval_files: tuple[str, ...] = ()
    ngram: int = _bounds(1, 100, 13)
    text_column: str | None = None  # the eval files' text column; none: guessed


@dataclass(frozen=True)
class FlowSection:
    retries: int = _bounds(0, 10, 2)
    retry_delay_s: float = _bounds(0, 3600, 5.0)
    name: str = "thresher-curate"


@dataclass(frozen=True)
class CurateConfig:
    store: str
    ingest: IngestSection
    filter: FilterSection = FilterSection()
    embed: EmbedSection = EmbedSection()
    dedup: DedupSection = DedupSection()
    score: ScoreSection = ScoreSection()
    decontaminate: DecontaminateSection = DecontaminateSection()
    tokens: TokensSection = TokensSection()
    pii: PiiSection = PiiSection()
    select: SelectSection = SelectSection()
    flow: FlowSection = FlowSection()
    path: str = ""  # the file it was read from

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("path")
        return out


SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(CurateConfig)[f.name]
    for f in dataclasses.fields(CurateConfig)
    if f.name not in ("store", "path")
}


def default(section: type, key: str) -> Any:
    """A key's default, for the command line's options of the same name."""
    return {f.name: f.default for f in dataclasses.fields(section)}[key]


def choices(section: type, key: str) -> tuple[str, ...]:
    """The values a `Literal` key allows, for the command line's `click.Choice`."""
    hint = typing.get_type_hints(section)[key]
    return tuple(typing.get_args(hint))


def load(path: str | Path) -> CurateConfig:
    """Read and validate a config file."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return parse(raw, file)


def parse(raw: dict[str, Any], file: Path) -> CurateConfig:
    base = file.parent.absolute()

    def fail(msg: str) -> ConfigError:
        return ConfigError(f"{file}: {msg}")

    unknown = sorted(set(raw) - set(SECTIONS) - {"store"})
    if unknown:
        raise fail(
            f"unknown key {unknown[0]!r}; allowed: store, {', '.join(f'[{s}]' for s in SECTIONS)}"
        )
    store = raw.get("store")
    if not isinstance(store, str) or not store.strip():
        raise fail("store: required, the path of the thresher store (a string)")
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        given = raw.get(name, {})
        if not isinstance(given, dict):
            raise fail(f"[{name}] must be a table, got {given!r}")
        sections[name] = _section(name, cls, given, fail)
    ingest = sections["ingest"]
    if not ingest.sources:
        raise fail("[ingest] sources: required, a list of files, folders or globs")
    sections["ingest"] = dataclasses.replace(
        ingest, sources=tuple(_resolve(base, s) for s in ingest.sources)
    )
    sections["embed"] = _embed_model(sections["embed"], base, fail)
    bad = [c for c in sections["filter"].languages if not re.fullmatch(r"[a-z]{2,3}", c)]
    if bad:
        raise fail(
            f"[filter] languages: {bad[0]!r} is not a language code; "
            'give ISO 639-1 codes in lower case, e.g. ["en", "fr"]'
        )
    sections["select"] = _select(sections["select"], base, fail)
    sections["tokens"] = _tokens(sections["tokens"], base, fail)
    sections["score"] = _score(sections["score"], sections["select"], base, fail)
    decon = sections["decontaminate"]
    sections["decontaminate"] = dataclasses.replace(
        decon, eval_files=tuple(_resolve(base, f) for f in decon.eval_files)
    )
    return CurateConfig(store=_resolve(base, store), path=str(file.absolute()), **sections)


def _select(section: SelectSection, base: Path, fail) -> SelectSection:
    """`[select]` with its name and where checked (as the command line checks them)
    and its publish_uri resolved."""
    from thresher.storage.sql import parse_condition  # loads DuckDB: only when a config is read

    try:
        check_name(section.name, "[select] name")
        if section.where is not None:
            parse_condition(section.where, "[select] where")
    except ThresherError as exc:
        raise fail(str(exc)) from None
    target = section.publish_uri
    if target is None:
        return section
    if not target.strip():
        raise fail("[select] publish_uri: empty; give a folder or URI, or false")
    return dataclasses.replace(section, publish_uri=_resolve(base, target))


def _score(section: ScoreSection, select: SelectSection, base: Path, fail) -> ScoreSection:
    """`[score]` metrics checked against each other and `[select]`; reference resolved."""
    bad = [m for m in section.metrics if m not in SCORE_METRICS]
    if bad:
        allowed = ", ".join(SCORE_METRICS)
        raise fail(f"[score] metrics: {bad[0]!r} is not allowed; allowed: {allowed}")
    if ("quality" in section.metrics) != (section.reference is not None):
        raise fail('[score] metrics "quality" and reference = "FILE" go together')
    if select.drop_label_issues and "label_issue" not in section.metrics:
        raise fail('[select] drop_label_issues needs "label_issue" in [score] metrics')
    if section.reference is None:
        return section
    return dataclasses.replace(section, reference=_resolve(base, section.reference))


def _tokens(section: TokensSection, base: Path, fail) -> TokensSection:
    """A tokenizer folder resolved and checked (not loaded)."""
    from thresher.scoring.tokens import DEFAULT_TOKENIZER, tokenizer_dir

    if section.tokenizer == DEFAULT_TOKENIZER:
        return section
    folder = _resolve(base, section.tokenizer)
    try:
        tokenizer_dir(folder)
    except ThresherError as exc:
        raise fail(f"[tokens] tokenizer: {exc}".replace("--tokenizer ", "", 1)) from None
    return dataclasses.replace(section, tokenizer=folder)


def _embed_model(embed: EmbedSection, base: Path, fail) -> EmbedSection:
    """A bundled model name as it is; a folder resolved and checked (not loaded)."""
    model = embed.model if embed.model in BUILTIN else _resolve(base, embed.model)
    try:
        model_path(model)
    except ThresherError as exc:
        raise fail(
            f"[embed] model: {str(exc).replace(repr(model), repr(embed.model), 1)}"
        ) from None
    return dataclasses.replace(embed, model=model)


def _resolve(base: Path, value: str) -> str:
    if "://" in value or Path(value).expanduser().is_absolute():
        return value
    return str(base / value)


def _section(name: str, cls: type, given: dict[str, Any], fail) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in given.items():
        if key not in fields:
            raise fail(f"[{name}] unknown key {key!r}; allowed: {', '.join(fields)}")
        values[key] = _check(f"[{name}] {key}", hints[key], fields[key].metadata, value, fail)
    return cls(**values)


def _check(where: str, hint: Any, meta: Any, value: Any, fail) -> Any:
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    kind = next((a for a in args if a is not type(None)), hint) if optional else hint
    if optional and (value is False or value == "none"):
        return None
    if typing.get_origin(kind) is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(f"{where}: expected a list of strings, got {value!r}")
        if meta.get("regex"):
            _check_regexes(where, value, fail)
        return tuple(value)
    if typing.get_origin(kind) is Literal:
        allowed = typing.get_args(kind)
        if value not in allowed:
            raise fail(f"{where}: {value!r} is not allowed; allowed: {', '.join(allowed)}")
        return value
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[kind]
    if not ok:
        none = " or false" if optional else ""
        raise fail(f"{where}: expected {kind.__name__}{none}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise fail(f"{where}: {value!r} is not a finite number")
    if "bounds" in meta:
        lo, hi = meta["bounds"]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise fail(f"{where}: {value!r} is out of range; allowed: {span}")
    return float(value) if kind is float else value


def _check_regexes(where: str, patterns: list[str], fail) -> None:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise fail(f"{where}: bad regular expression {pattern!r}: {exc}") from None


def template(store: str, sources: list[str], guess: Guess | None = None) -> str:
    """A commented config with every key at its default (for `thresher config`); with
    `guess` (the first source's columns), the [ingest] roles are its columns, each
    with a comment saying why, or what to check."""
    lines = [f'store = "{store}"', ""]
    for name, cls in SECTIONS.items():
        lines.append(f"[{name}]")
        for f in dataclasses.fields(cls):
            value: Any = f.default
            if name == "ingest" and f.name == "sources":
                value = sources
            note = ""
            if name == "ingest" and guess is not None and f.name in ROLE_KEYS:
                value, note = _guessed(f.name, value, guess)
            lines.append(f"{f.name} = {_toml(value)}{note}")
        lines.append("")
    return "\n".join(lines)


ROLE_KEYS = ("id_column", "text_column", "label_column")


def _guessed(key: str, default: Any, guess: Guess) -> tuple[Any, str]:
    if key in guess.roles:
        return guess.roles[key], f"  # guessed from {guess.source}: {guess.why[key]}"
    if key == "text_column":
        return default, f"  # CHECK: {guess.source} has columns {', '.join(guess.columns)}"
    return default, ""


def _toml(value: Any) -> str:
    if value is None:
        return "false"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
