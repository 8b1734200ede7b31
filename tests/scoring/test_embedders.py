from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_encoder_loads_with_the_checkout_root_first_on_the_path() -> None:
    """Ray puts the driver's working directory on every worker's path. From a checkout's
    root, thresher's source folder `kernels/` shadowed the PyPI package `kernels` that
    transformers imports, and every embedding task failed (found by CI on a fresh
    install that pulled transformers 5.25)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from thresher.scoring.embedders import EmbedderConfig, TextEmbedder;"
        "v = TextEmbedder(EmbedderConfig()).encode(['a short text']);"
        "print(v.shape); import kernels; print(kernels.__file__);"
        "print(sys.path[0] == sys.argv[1])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    shape, kernels_file, restored = out.stdout.splitlines()[-3:]
    assert shape == "(1, 384)"
    assert not kernels_file.startswith(str(ROOT / "kernels"))  # the PyPI package
    assert restored == "True"  # the path is given back as it was
