"""Selection names are one safe path segment everywhere: `select`, `[select] name`, `export`,
publish, the mirror to `publish_uri` and the feed, so no name can reach outside a folder."""

from __future__ import annotations

import os
import subprocess

import pyarrow.parquet as pq
import pytest

from thresher.flows import config as cfgmod
from thresher.flows.select import Publication, export, mirror, publish, select_items
from thresher.storage.errors import ConfigError, ThresherError
from thresher.storage.feed import SelectionFeed
from thresher.storage.ingest import IngestConfig, ingest
from thresher.storage.store import Store
from thresher.storage.uri import check_name

from tests.flows.test_cli import THRESHER, records, thresher
from tests.helpers import snapshot, write_jsonl

BAD = ["..", "a/b", ".", "", "...", "a b", "../x", "x" * 101]


@pytest.fixture(scope="module")
def items_store(tmp_path_factory, ray_session) -> Store:
    tmp = tmp_path_factory.mktemp("names")
    write_jsonl(tmp / "a.jsonl", records(30))
    store = Store.init(tmp / "store")
    ingest(store, [str(tmp / "a.jsonl")], IngestConfig(text_column="text"))
    return store


@pytest.mark.parametrize("name", BAD)
def test_check_name_refuses_and_names_the_value(name) -> None:
    with pytest.raises(ThresherError, match="selection name " + repr(name).replace(".", r"\.")):
        check_name(name)


@pytest.mark.parametrize("name", ["train", "v1.2_x-y", "A" * 100])
def test_check_name_keeps_a_valid_name(name) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["..", "a/b", ".", ""])
def test_select_and_export_refuse_a_bad_name(items_store, tmp_path, name) -> None:
    env = {**os.environ, "THRESHER_LOCAL_MAX_ROWS": ""}  # small: no Ray in the subprocess
    before = snapshot(items_store)
    for args in (
        (
            "select",
            items_store.root,
            name,
            "--keep",
            "0.5",
            "--policy",
            "random",
            "--balance",
            "none",
        ),
        ("export", items_store.root, name, tmp_path / "out"),
    ):
        proc = subprocess.run(
            [THRESHER, *map(str, args)], capture_output=True, text=True, timeout=300, env=env
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert lines == [lines[0]] and f"selection name {name!r}" in lines[0], proc.stderr
    assert snapshot(items_store) == before
    assert not (tmp_path / "out").exists()
    assert not [p for p in items_store.root.iterdir() if p.name.startswith("v")]


@pytest.mark.parametrize("name", ["..", "a/b", ".", ""])
def test_library_entry_points_refuse_a_bad_name(items_store, tmp_path, name) -> None:
    pattern = f"selection name {name!r}".replace(".", r"\.")
    calls = [
        lambda: select_items(items_store, name, 0.5, policy="random", balance="none"),
        lambda: export(items_store, name, str(tmp_path / "out")),
        lambda: publish(items_store, name),
        lambda: mirror(Publication(name, 7, tmp_path, 1, 1), str(tmp_path / "m")),
        lambda: SelectionFeed.from_store(items_store, name),
        lambda: SelectionFeed.from_uri(str(tmp_path / "m"), name),
    ]
    for call in calls:
        with pytest.raises(ThresherError, match=pattern):
            call()
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("v*"))


@pytest.mark.parametrize("name", ["..", "a/b", ".", ""])
def test_config_name_is_checked_when_the_config_is_read(tmp_path, name) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'store = "s"\n[ingest]\nsources = ["nope/*.jsonl"]\n[select]\nname = "{name}"\n'
    )
    with pytest.raises(ConfigError, match=r"c\.toml: \[select\] name "):
        cfgmod.load(cfg)
    proc = thresher("run", cfg, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "[select] name" in proc.stderr and not (tmp_path / "s").exists()


def test_a_valid_name_selects_publishes_and_mirrors_inside_its_folders(items_store, tmp_path):
    name = "v1.2_x-y"
    r = select_items(items_store, name, 0.5, policy="random", balance="none")
    pub = publish(items_store, name)
    assert pub.path == items_store.root / "published" / name / f"v{pub.version:06d}"
    dest = mirror(pub, str(tmp_path / "m"))
    assert dest == f"{tmp_path}/m/{name}/v{pub.version:06d}"
    feed = SelectionFeed.from_uri(str(tmp_path / "m"), name)
    assert feed.num_rows == r.selected == pq.read_table(pub.path).num_rows
