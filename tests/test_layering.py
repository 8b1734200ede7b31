"""Dependencies point one way: algorithms never load the store, the store knows no algorithm.

Each check imports modules in a fresh interpreter and looks at `sys.modules`,
so what another test imported first cannot hide an import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules(folder: str) -> list[str]:
    return sorted(
        f"thresher.{folder}.{p.stem}"
        for p in (ROOT / folder).glob("*.py")
        if p.stem != "__init__" and not p.stem.startswith("_")
    )


def _loaded_after(module: str) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


ALGORITHMS = _modules("scoring") + _modules("selection") + _modules("kernels")
# what every layer may import from storage: the stage contract and the error family
CONTRACT = ("thresher.storage.stage", "thresher.storage.errors")


@pytest.mark.parametrize("module", [*ALGORITHMS, *CONTRACT])
def test_algorithm_modules_load_neither_duckdb_nor_the_store(module: str) -> None:
    loaded = _loaded_after(module)
    assert "duckdb" not in loaded
    store_modules = [m for m in loaded if m.startswith("thresher.storage.") and m not in CONTRACT]
    assert store_modules == []
    assert not [m for m in loaded if m.startswith("thresher.flows")]


@pytest.mark.parametrize("module", CONTRACT)
def test_the_contract_imports_nothing_of_thresher_but_the_errors(module: str) -> None:
    loaded = _loaded_after(module)
    # the package itself loads lazily (its __init__ imports nothing)
    assert [m for m in loaded if m.startswith("thresher.")] == sorted(
        {"thresher.storage", "thresher.storage.errors", module}
    )


@pytest.mark.parametrize(
    "module", [m for m in _modules("storage") if m != "thresher.storage.ray_adapter"]
)
def test_the_store_knows_no_algorithm(module: str) -> None:
    loaded = _loaded_after(module)
    assert not [m for m in loaded if m.startswith(("thresher.scoring", "thresher.selection"))]
