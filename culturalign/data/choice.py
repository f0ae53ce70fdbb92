"""Labelled multiple-choice examples: one rendering and tokenisation for training and evaluation.

An example is one user message whose answer is an option-number token ("1".."K"): CDEval pairs
(K = 2) and the synthetic VSM13 questions (K = 5) both take this form. Every message goes through
the chat template; the token prefix all rows share (the template head) is cut off once here, so
the model runs it once per batch and reuses its KV cache for every row (see SoftPromptModule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from culturalign.data.folds import interleave, stratified_folds
from culturalign.errors import CulturalignError
from culturalign.model.backbone import Backbone
from culturalign.model.batching import common_prefix_len, pad_rows
from culturalign.model.chat import chat_ids
from culturalign.model.prefix_cache import prefill, suffix_last_logits
from culturalign.model.soft_prompt import prompted_logits


@dataclass(frozen=True)
class ChoiceExample:
    """One labelled question as asked."""

    text: str  # the user message, options included
    label: int  # 0-based index of the correct option number
    group: int  # question id: all orders of one question share it and stay in one split
    order: int  # 0 = options in the source order, 1 = reversed (counterbalancing)
    stratum: str  # CDEval domain or VSM13 item id, for stratified folds


def tokenise(tokenizer: Any, examples: list[ChoiceExample], system: str | None = None) -> tuple[torch.Tensor, list[list[int]]]:
    """(shared prefix ids (P,), per-example suffix ids). At least one suffix token stays per row."""
    rows = [chat_ids(tokenizer, ex.text, system) for ex in examples]
    P = common_prefix_len(rows)
    return torch.tensor(rows[0][:P], dtype=torch.long), [r[P:] for r in rows]


def collate(rows: list[tuple[list[int], int, int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad suffixes so the last position is always a real token. Output shapes: (B, S) and (B,)."""
    ids, mask = pad_rows([r[0] for r in rows], pad_id)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": torch.tensor([r[1] for r in rows]),
        "order": torch.tensor([r[2] for r in rows]),
    }


def option_logits(
    backbone: Backbone, prompt: torch.Tensor | None, prefix_ids: torch.Tensor, batch: dict[str, torch.Tensor], answer_ids: torch.Tensor
) -> torch.Tensor:
    """THE scoring of labelled questions, for GD training and for `evaluate` alike: (B, K) fp32 logits of the
    option-number tokens at the answer position. prompt: (T, d) or None; batch from `collate`."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    B = ids.shape[0]
    p = None if prompt is None else prompt.unsqueeze(0)
    if len(prefix_ids):
        cache, length = prefill(backbone, p, prefix_ids, 1)
        last, _ = suffix_last_logits(backbone, cache, length, B, ids, mask)
    else:  # no shared template head: plain forward
        last = prompted_logits(backbone, None if p is None else p.expand(B, -1, -1), ids, mask)[:, -1]
    return last.index_select(-1, answer_ids.to(last.device)).float()


def limit_groups(examples: list[ChoiceExample], limit: int | None, seed: int) -> list[ChoiceExample]:
    """Keep `limit` questions (all their orders), stratified by the examples' strata (`--data.limit`)."""
    if limit is None:
        return examples
    strata = {ex.group: ex.stratum for ex in examples}
    keep = set(interleave(strata, seed + 104729)[:limit])
    return [ex for ex in examples if ex.group in keep]


def select_questions(
    examples: list[ChoiceExample], limit: int | None, seed: int, folds: int | None = None, fold: int | None = None
) -> list[ChoiceExample]:
    """THE question selection of GD runs and `evaluate`: `--data.limit` first, then test fold `fold` of the
    stratified `folds` (seeded like the run), so `evaluate` sees exactly a GD run's test fold."""
    examples = limit_groups(examples, limit, seed)
    if fold is None:
        return examples
    if folds is None or not 0 <= fold < folds:
        raise CulturalignError(f"--cdeval.fold {fold} must be in 0..{(folds or 1) - 1} (--cdeval.folds {folds})")
    plan = stratified_folds({ex.group: ex.stratum for ex in examples}, folds, seed, 0.0)
    return [ex for ex in examples if plan.fold_of[ex.group] == fold]
