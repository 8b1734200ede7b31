"""The curate config: defaults, relative paths, and one-line errors naming the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from thresher.flows import config
from thresher.flows.cli import cli
from thresher.storage.store import Store


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "curate.toml"
    path.write_text(text)
    return path


def test_minimal_config_gets_defaults_and_resolved_paths(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path, 'store = "s"\n[ingest]\nsources = ["data/*.jsonl"]\n'))
    assert cfg.store == str(tmp_path / "s")
    assert cfg.ingest.sources == (str(tmp_path / "data/*.jsonl"),)
    assert cfg.select.policy == "auto" and cfg.select.keep == 0.5
    assert cfg.dedup.fuzzy == 0.8 and cfg.flow.retries == 2


def test_false_turns_an_optional_stage_off(tmp_path: Path) -> None:
    cfg = config.load(
        _write(tmp_path, 'store = "/s"\n[ingest]\nsources = "a.csv"\n[dedup]\nsemantic = false\n')
    )
    assert cfg.dedup.semantic is None and cfg.store == "/s"
    assert cfg.ingest.sources == (str(tmp_path / "a.csv"),)
    assert cfg.select.publish_uri is None


@pytest.mark.parametrize(
    ("given", "resolved"),
    [("s3://bucket/selections", "s3://bucket/selections"), ("out", "{tmp}/out")],
)
def test_publish_uri_keeps_uris_and_resolves_folders(tmp_path: Path, given, resolved) -> None:
    body = f'store = "s"\n[ingest]\nsources = "a"\n[select]\npublish_uri = "{given}"\n'
    cfg = config.load(_write(tmp_path, body))
    assert cfg.select.publish_uri == resolved.format(tmp=tmp_path)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[ingest]\nsources = ['a']\n", "store: required"),
        ('store = "s"\n', r"\[ingest\] sources: required"),
        ('store = "s"\n[ingets]\n', "unknown key 'ingets'; allowed: store, \\[ingest\\]"),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[dedup]\nfuzy = 0.8\n',
            r"\[dedup\] unknown key 'fuzy'; allowed: exact, fuzzy, semantic, semantic_keep",
        ),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[select]\npolicy = "hardest"\n',
            r"\[select\] policy: 'hardest' is not allowed; allowed: auto, hard, easy",
        ),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[select]\npublish_uri = " "\n',
            r"\[select\] publish_uri: empty; give a folder or URI, or false",
        ),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[select]\nkeep = 1.5\n',
            r"\[select\] keep: 1.5 is out of range; allowed: \[0.0001, 1\]",
        ),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[embed]\nbatch_size = "64"\n',
            r"\[embed\] batch_size: expected int, got '64'",
        ),
        ('store = "s"\n[ingest\n', "not valid TOML"),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[score]\nmetrics = ["vibes"]\n',
            r"\[score\] metrics: 'vibes' is not allowed; allowed: prototype, density",
        ),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[score]\nmetrics = ["quality"]\n',
            r'\[score\] metrics "quality" and reference = "FILE" go together',
        ),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[select]\ndrop_label_issues = 0.1\n',
            r'\[select\] drop_label_issues needs "label_issue" in \[score\] metrics',
        ),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[select]\nkeep_tokens = 0\n',
            r"\[select\] keep_tokens: 0 is out of range; allowed: >= 1",
        ),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[tokens]\ntokenizer = "no-such-dir"\n',
            r"\[tokens\] tokenizer: '.*no-such-dir': not 'minilm' \(bundled\) nor a folder",
        ),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[select]\nkeep = nan\n',
            r"\[select\] keep: nan is not a finite number",
        ),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[dedup]\nfuzzy = inf\n',
            r"\[dedup\] fuzzy: inf is not a finite number",
        ),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[select]\nseed = -1\n',
            r"\[select\] seed: -1 is out of range; allowed: \[0, 4294967295\]",
        ),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[score]\nseed = 4294967296\n',
            r"\[score\] seed: 4294967296 is out of range",
        ),
        (
            'store = "s"\n[ingest]\nsources = ["a"]\n[filter]\ndrop_regex = ["(unclosed"]\n',
            r"\[filter\] drop_regex: bad regular expression '\(unclosed'",
        ),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(config.ConfigError, match=message) as info:
        config.load(path)
    assert str(info.value).startswith(str(path))


def test_template_lists_every_key_and_parses_back(tmp_path: Path) -> None:
    text = config.template("store", ["data"])
    raw = tomllib.loads(text)
    assert set(raw) == {"store", *config.SECTIONS}
    cfg = config.parse(raw, tmp_path / "c.toml")
    assert cfg.filter == config.FilterSection()
    assert cfg.select == config.SelectSection()


def test_config_command_prints_a_template_that_loads(tmp_path: Path) -> None:
    import subprocess
    import sys

    thresher = str(Path(sys.executable).with_name("thresher"))
    out = subprocess.run(
        [thresher, "config", "data/*.jsonl", "--store", "my-store"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cfg = config.load(_write(tmp_path, out))
    assert cfg.ingest.sources == (str(tmp_path / "data/*.jsonl"),)
    assert cfg.store == str(tmp_path / "my-store")
    assert cfg.dedup == config.DedupSection()


def test_config_cli_and_stages_share_allowed_values_and_defaults() -> None:
    import click

    from thresher.flows.cli import cli
    from thresher.selection.pruning import BALANCE, POLICIES
    from thresher.selection.semantic import KEEP
    from thresher.storage.readers import FORMATS

    def option(command: str, name: str) -> click.Option:
        params = cli.commands[command].params
        return next(p for p in params if isinstance(p, click.Option) and p.name == name)

    cases = [
        ("dedup", "keep", config.DedupSection, "semantic_keep", KEEP),
        ("select", "policy", config.SelectSection, "policy", POLICIES),
        ("select", "balance", config.SelectSection, "balance", BALANCE),
        ("ingest", "fmt", config.IngestSection, "format", FORMATS),
    ]
    for command, name, section, key, stage_values in cases:
        opt = option(command, name)
        assert isinstance(opt.type, click.Choice)
        assert tuple(opt.type.choices) == config.choices(section, key) == stage_values
        assert opt.default == config.default(section, key)
    assert option("embed", "max_seq_length").default == config.EmbedSection.max_seq_length
    assert option("embed", "batch_size").default == config.EmbedSection.batch_size


def test_ingest_section_takes_an_embedding_column(tmp_path: Path) -> None:
    cfg = config.load(
        _write(
            tmp_path,
            'store = "s"\n[ingest]\nsources = ["a.parquet"]\nembedding_column = "vec"\n',
        )
    )
    assert cfg.ingest.embedding_column == "vec"
    with pytest.raises(config.ConfigError, match=r"\[embed\] device: 'tpu' is not allowed"):
        config.load(
            _write(tmp_path, 'store = "s"\n[ingest]\nsources = ["a"]\n[embed]\ndevice = "tpu"\n')
        )


@pytest.mark.parametrize("model", ["no-such-model", "./missing-folder"])
def test_unknown_embed_model_is_refused_when_the_config_loads(tmp_path: Path, model) -> None:
    path = _write(tmp_path, f'store = "s"\n[ingest]\nsources = ["a"]\n[embed]\nmodel = "{model}"\n')
    with pytest.raises(config.ConfigError, match=rf"\[embed\] model: '{model}'.*minilm"):
        config.load(path)


def test_a_local_model_folder_is_accepted_without_loading_it(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    path = _write(tmp_path, 'store = "s"\n[ingest]\nsources = ["a"]\n[embed]\nmodel = "m"\n')
    assert config.load(path).embed.model == str(tmp_path / "m")


def test_embed_with_an_unknown_model_is_refused_before_anything_runs(tmp_path) -> None:
    store = Store.init(tmp_path / "s")
    result = CliRunner().invoke(cli, ["embed", str(store.root), "--model", "nope"])
    assert result.exit_code == 2
    assert result.output.startswith("thresher: error: ") and result.output.count("\n") == 1
    assert "--model" in result.output and "'nope'" in result.output and "minilm" in result.output
    assert store.query("SELECT count(*) FROM runs").column(0)[0].as_py() == 0


def test_run_with_an_unknown_model_stops_before_ingest(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"text": "hello"}\n')
    store = Store.init(tmp_path / "s")
    path = _write(
        tmp_path, 'store = "s"\n[ingest]\nsources = ["a.jsonl"]\n[embed]\nmodel = "nope"\n'
    )
    result = CliRunner().invoke(cli, ["run", str(path), "-q"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "[embed] model: 'nope'" in result.output and "minilm" in result.output
    assert store.query("SELECT count(*) FROM runs").column(0)[0].as_py() == 0
