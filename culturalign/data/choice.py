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

from culturalign.model.chat import chat_ids


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
    P = min(len(r) for r in rows) - 1
    for j in range(P):
        if any(r[j] != rows[0][j] for r in rows):
            P = j
            break
    return torch.tensor(rows[0][:P], dtype=torch.long), [r[P:] for r in rows]


def collate(rows: list[tuple[list[int], int, int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad suffixes so the last position is always a real token. Output shapes: (B, S) and (B,)."""
    S = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), S), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), S), dtype=torch.long)
    for i, (s, _, _) in enumerate(rows):
        ids[i, S - len(s):] = torch.tensor(s)
        mask[i, S - len(s):] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r[1] for r in rows]),
            "order": torch.tensor([r[2] for r in rows])}
