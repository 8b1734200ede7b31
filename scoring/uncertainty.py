"""Proxy-model uncertainty: a linear probe on embeddings, and entropy / margin of its output.

The probe is a torch linear layer trained (full batch, Adam, seeded) on the
labelled items' embeddings with an optionally weighted cross-entropy; any
torch module mapping (n, d) float32 to (n, classes) logits can stand in.
`entropy` is normalized to [0, 1] by log(classes); `margin` is the gap
between the two most probable classes (small = uncertain).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa

from thresher.storage.errors import ThresherError
from thresher.storage.stage import Resources, Stage, arrow_to_vectors


def train_probe(
    vectors: np.ndarray,
    labels: np.ndarray,
    classes: int,
    *,
    weights: np.ndarray | None = None,
    epochs: int = 200,
    lr: float = 0.05,
    weight_decay: float = 1e-4,
    seed: int = 0,
    solver: Literal["adam", "lbfgs"] = "adam",
):
    """A torch.nn.Linear(d, classes) fitted to (vectors, labels): `epochs` full-batch Adam
    steps, or with solver "lbfgs" L-BFGS (strong Wolfe line search) to the optimum of the
    same objective (weighted cross-entropy + weight_decay / 2 |params|^2, as Adam's decay;
    at most `epochs` iterations).
    Adam's 200 epochs stop 4-36% above the optimum's loss on 100-600 labelled items
    (digits, summaries); L-BFGS reaches it in under 100 iterations, in less time."""
    import torch

    if len(vectors) != len(labels) or not len(labels):
        raise ThresherError(
            f"need as many labels as vectors (got {len(labels)} and {len(vectors)})"
        )
    torch.manual_seed(seed)
    x = torch.as_tensor(np.asarray(vectors, np.float32))
    y = torch.as_tensor(np.asarray(labels, np.int64))
    w = torch.as_tensor(
        np.ones(len(y), np.float32) if weights is None else weights, dtype=torch.float32
    )
    model = torch.nn.Linear(x.shape[1], classes)

    def objective() -> Any:
        return (torch.nn.functional.cross_entropy(model(x), y, reduction="none") * w).sum() / (
            w.sum()
        )

    if solver == "lbfgs":
        lbfgs = torch.optim.LBFGS(
            model.parameters(),
            max_iter=epochs,
            history_size=20,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-6,
            tolerance_change=1e-9,
        )

        def closure() -> Any:
            lbfgs.zero_grad()
            loss = objective() + 0.5 * weight_decay * sum((p**2).sum() for p in model.parameters())
            loss.backward()
            return loss

        lbfgs.step(closure)
        return model.eval()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        objective().backward()
        opt.step()
    return model.eval()


def predict_proba(model, vectors: np.ndarray, batch: int = 65_536) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(vectors), batch):
            x = torch.as_tensor(np.asarray(vectors[start : start + batch], np.float32))
            out.append(torch.softmax(model(x), dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def entropy_margin(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(normalized entropy in [0, 1], top-1 minus top-2 probability) per row of (n, c) probs."""
    c = probs.shape[1]
    p = np.clip(probs, 1e-12, 1.0)
    entropy = -(p * np.log(p)).sum(axis=1) / (np.log(c) if c > 1 else 1.0)
    top2 = (
        np.sort(probs, axis=1)[:, -2:]
        if c > 1
        else np.concatenate([np.zeros((len(probs), 1)), probs], axis=1)
    )
    return entropy.astype(np.float32), (top2[:, 1] - top2[:, 0]).astype(np.float32)


class ProbeStage(Stage):
    """(item_id, vector, ...) -> (item_id, ..., entropy, margin) of a fitted linear probe.

    Carries the probe as plain arrays (weight (classes, d), bias (classes,)), so
    it pickles small and needs no torch state on the workers."""

    name = "probe"
    resources = Resources(cpus=1)
    required_columns = ("item_id", "vector")

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight, self.bias = np.asarray(weight, np.float32), np.asarray(bias, np.float32)

    @classmethod
    def from_probe(cls, probe: Any) -> ProbeStage:
        return cls(probe.weight.detach().numpy(), probe.bias.detach().numpy())

    def process(self, batch: pa.Table) -> pa.Table:
        x = arrow_to_vectors(batch.column("vector"))
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        logits = x @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        entropy, margin = entropy_margin(probs)
        out = batch.drop_columns(["vector"])  # other columns (ids, flags) pass through
        out = out.append_column("entropy", pa.array(entropy.astype(np.float64)))
        return out.append_column("margin", pa.array(margin.astype(np.float64)))
