"""Train a small text classifier on a pruned selection, streamed through the trainer feed.

    python examples/train.py STORE [--selection train] [--label topic] [--epochs 5]

Reads the latest published version of the selection with `SelectionFeed`
(shuffled, seeded), trains a hashed bag-of-words classifier with the
importance weights in its loss (sum(w * loss) / sum(w)), and reports accuracy
on the kept items that were not selected. Run `thresher demo --store DIR`
first for a store with a published selection named "train" and a "topic"
label, or publish a selection you made with `thresher publish STORE NAME`.
Selected rows with no label (a partly labelled store) are skipped; the
first epoch says how many.

Distributed data parallel on CPU (gloo), each rank reading its own share of
the rows:

    torchrun --standalone --nproc_per_node 2 examples/train.py STORE
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import zlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from thresher.storage.feed import SelectionFeed
from thresher.storage.store import Store

BUCKETS = 2**16


def hashed_tokens(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (crc32 of each lower-cased word, modulo BUCKETS) and bag offsets."""
    ids: list[int] = []
    offsets: list[int] = []
    for text in texts:
        offsets.append(len(ids))
        ids.extend(zlib.crc32(w.encode()) % BUCKETS for w in text.lower().split())
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


class BagOfWords(nn.Module):
    def __init__(self, classes: int, dim: int = 64) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(BUCKETS, dim, mode="mean")
        self.out = nn.Linear(dim, classes)

    def forward(self, texts: list[str]) -> torch.Tensor:
        return self.out(self.embed(*hashed_tokens(texts)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store")
    ap.add_argument("--selection", default="train")
    ap.add_argument("--label", default=None, help="label column [default: the store's]")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    store = Store(args.store)
    text, label = store.text_column(), args.label
    if label is None:
        names = store.query(
            "SELECT DISTINCT label_column FROM sources WHERE label_column IS NOT NULL"
        ).column(0)
        if len(names) != 1:
            raise SystemExit("give --label: the store has no single label column")
        label = names[0].as_py()
    classes = sorted(
        store.query(f'SELECT DISTINCT "{label}" AS c FROM items WHERE "{label}" IS NOT NULL')
        .column(0)
        .to_pylist()
    )
    code = {c: i for i, c in enumerate(classes)}

    feed = SelectionFeed.from_store(
        store,
        args.selection,
        columns=[text, label],
        batch_size=args.batch,
        shuffle_buffer=4096,
        seed=args.seed,
    )
    model: nn.Module = BagOfWords(len(classes))
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:  # launched by torchrun: the feed reads rank and world size from here
        torch.distributed.init_process_group("gloo")
        model = nn.parallel.DistributedDataParallel(model)
    rank = torch.distributed.get_rank() if distributed else 0
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    loader = feed.loader()
    for epoch in range(args.epochs):
        feed.set_epoch(epoch)
        total, weight_sum, rows, unlabelled = 0.0, 0.0, 0, 0
        # ranks may get one batch more or less: join() keeps DDP from waiting forever
        with model.join() if distributed else _nothing():  # type: ignore[operator]
            for batch in loader:
                # a partly labelled store: selected rows without a label are skipped
                has = [v is not None for v in batch[label]]
                unlabelled += len(has) - sum(has)
                if not any(has):
                    continue
                y = torch.tensor([code[v] for v in batch[label] if v is not None])
                w = batch["weight"][torch.tensor(has)]
                texts = [t for t, keep in zip(batch[text], has, strict=True) if keep]
                loss = (w * loss_fn(model(texts), y)).sum() / w.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * float(w.sum())
                weight_sum += float(w.sum())
                rows += len(y)
        # one write per line: torchrun's ranks share stdout unbuffered, and print() writes
        # the text and its newline separately, so two ranks' lines would run together
        loss_text = f"{total / weight_sum:.4f}" if weight_sum else "-"
        sys.stdout.write(f"rank {rank} epoch {epoch}: {rows} rows, loss {loss_text}\n")
        if epoch == 0 and unlabelled:
            sys.stdout.write(f"rank {rank}: skipped {unlabelled} selected rows with no label\n")
    if rank != 0:
        torch.distributed.destroy_process_group()
        return

    # held out: kept items (no duplicate, no filter drop) outside the selection
    held = store.query(
        f'SELECT i."{text}" AS text, i."{label}" AS label FROM items i '
        "ANTI JOIN (SELECT item_id FROM selections WHERE selection = $s AND run_id = "
        "(SELECT max(run_id) FROM selections WHERE selection = $s)) s USING (item_id) "
        "ANTI JOIN (SELECT item_id FROM duplicates UNION ALL SELECT item_id FROM filtered) x "
        f'USING (item_id) WHERE i."{label}" IS NOT NULL',
        {"s": args.selection},
    )
    net = model.module if distributed else model
    with torch.no_grad():
        pred = net(held.column("text").to_pylist()).argmax(1).numpy()
    truth = np.array([code[v] for v in held.column("label").to_pylist()])
    print(
        f"held-out accuracy: {(pred == truth).mean():.3f} on {len(truth)} items "
        f"({feed.num_rows} training rows from {args.selection!r})"
    )
    if distributed:
        torch.distributed.destroy_process_group()


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    main()
