"""The token stage: count each kept item's tokens once, and the training budget plan.

Counts go to the `tokens` table; an item with a count is not counted again, so a
rerun counts only new items. All counts of a store come from one tokenizer: a run
with another is refused (counts from two tokenizers would not add up).
"""

from __future__ import annotations

from dataclasses import dataclass

from thresher.flows import runtime
from thresher.flows.runtime import Progress
from thresher.scoring.tokens import TokenStage, optimal_tokens, tokenizer_dir
from thresher.storage import queries, text_queries
from thresher.storage.errors import ThresherError
from thresher.storage.store import StageCounts, Store


@dataclass(frozen=True)
class TokensReport:
    run_id: int | None
    items: int
    tokens: int


def count_item_tokens(
    store: Store, tokenizer: str = "minilm", on_progress: Progress = None
) -> TokensReport:
    """Count the tokens of every kept item that has no count yet."""
    folder = tokenizer_dir(tokenizer)  # a bad folder fails before anything runs
    name = tokenizer if tokenizer == "minilm" else str(folder.resolve())
    used = [t for t in text_queries.token_tokenizers(store) if t != name]
    if used:
        raise ThresherError(
            f"the store's token counts were made with {used[0]}; counts from another "
            "tokenizer would not add up (use that tokenizer)"
        )
    todo = text_queries.tokens_todo(store.text_column())
    if not queries.count(store, todo):
        return TokensReport(None, 0, 0)
    items = total = 0
    with store.run("tokens", {"tokenizer": name}) as run:
        staged = runtime.stage(run, "tokens-todo", todo)
        writer = run.writer("tokens")
        for out in runtime.stream(TokenStage(tokenizer), staged, on_progress=on_progress):
            writer.append(item_id=out.column("item_id"), tokens=out.column("tokens"))
            items += out.num_rows
            total += int(out.column("tokens").to_numpy().sum())
        writer.close()
        run.record(StageCounts("tokens", "items", items, items, 0, 0))
        run.message = f"{total} tokens in {items} items ({name})"
    return TokensReport(run.run_id, items, total)


@dataclass(frozen=True)
class Plan:
    params: int
    optimal: int  # compute-optimal training tokens (Hoffmann et al. 2022)
    kept_items: int
    counted_items: int
    kept_tokens: int
    keep_tokens: int  # what to pass to select --keep-tokens


def plan(store: Store, params: int) -> Plan:
    """The compute-optimal budget for `params` against the store's kept tokens."""
    optimal = optimal_tokens(params)
    kept, counted, total = text_queries.kept_tokens(store)
    return Plan(params, optimal, kept, counted, total, min(optimal, total))
