"""The embed stage's encoder per device: rows/s on the CPU and on CUDA, same texts, same run.

    python benchmarks/embed.py [--rows 20000] [--model minilm] [--batch 256] [--texts FILE]

Texts: the first `rows` distinct PyPI summaries of ../shared/data (or FILE, one
text per line). Each device encodes them once after a warm-up batch, with the
settings `thresher embed` uses (`EmbedderConfig`: max_seq_length 128, the given
batch size); the CPU row uses all of torch's threads. Agreement: the cosine
of each row's CUDA vector with its CPU vector (min and mean), so the device
choice (`[embed] device` in a curate config) does not change what dedup and
scoring see. Without CUDA only the CPU row is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import summaries

from thresher.scoring.embedders import EmbedderConfig, TextEmbedder


def encode(texts: list[str], config: EmbedderConfig) -> tuple[np.ndarray, float]:
    """(vectors, seconds) for one pass over texts, after one warm-up batch."""
    embedder = TextEmbedder(config)
    embedder.encode(texts[: config.batch_size])
    if config.device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    vectors = embedder.encode(texts)  # returns NumPy: the GPU work has finished
    return vectors, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--model", default="minilm", help="minilm or a model directory")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--texts", type=Path, help="one text per line instead of the summaries")
    args = parser.parse_args()
    texts = args.texts.read_text().splitlines()[: args.rows] if args.texts else summaries(args.rows)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"\nencoder {args.model}, {len(texts):,} texts, batch {args.batch}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ", no CUDA")
        + "\n"
    )
    print(f"| {'device':<6} | {'rows/s':>10} | {'vs cpu':>7} | {'cos min':>8} | {'cos mean':>8} |")
    print(f"|{'-' * 8}|{'-' * 12}|{'-' * 9}|{'-' * 10}|{'-' * 10}|")
    base: tuple[np.ndarray, float] | None = None
    for device in devices:
        config = EmbedderConfig(model=args.model, batch_size=args.batch, device=device)
        vectors, seconds = encode(texts, config)
        base = base or (vectors, seconds)
        cos = (vectors * base[0]).sum(axis=1)
        print(
            f"| {device:<6} | {len(texts) / seconds:>10,.0f} | {base[1] / seconds:>7.2f} | "
            f"{cos.min():>8.5f} | {cos.mean():>8.5f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
