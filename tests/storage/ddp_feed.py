"""Run by torchrun from test_feed: one DDP rank reads its share of a feed with 2 workers.

torchrun --standalone --nproc_per_node 2 ddp_feed.py OUT_DIR FILE...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

from thresher.storage.feed import SelectionFeed

if __name__ == "__main__":
    out, files = Path(sys.argv[1]), sys.argv[2:]
    dist.init_process_group("gloo")
    feed = SelectionFeed(files, columns=["item_id"], batch_size=32, shuffle_buffer=128, seed=5)
    ids = [i for batch in feed.loader(num_workers=2) for i in batch["item_id"].tolist()]
    (out / f"rank{dist.get_rank()}.json").write_text(
        json.dumps({"rank": feed.rank, "world": feed.world_size, "ids": ids})
    )
    dist.barrier()
    dist.destroy_process_group()
