"""Labelled multiple-choice examples and the LightningDataModule that serves them by fold.

An example is one user message whose answer is an option-number token ("1".."K"): CDEval pairs
(K = 2) and the synthetic VSM13 questions (K = 5) both take this form. Every message goes through
the chat template; the token prefix all rows share (the template head) is cut off once here, so
the model runs it once per batch and reuses its KV cache for every row (see SoftPromptModule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from culturalign.data.folds import FoldPlan
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


class ChoiceDataModule(L.LightningDataModule):
    """Train/val/test loaders for one fold of a `FoldPlan` over `examples`."""

    def __init__(self, examples: list[ChoiceExample], tokenizer: Any, plan: FoldPlan, fold: int,
                 batch_size: int = 8, seed: int = 0, eval_batch_size: int | None = None) -> None:
        super().__init__()
        self.examples, self.plan, self.fold = examples, plan, fold
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size or 2 * batch_size, seed
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.prefix_ids, suffixes = tokenise(tokenizer, examples)
        self.rows = [(s, ex.label, ex.order) for s, ex in zip(suffixes, examples)]
        train, val, test = plan.split(fold)
        by_group: dict[int, list[int]] = {}
        for i, ex in enumerate(examples):
            by_group.setdefault(ex.group, []).append(i)
        pick = lambda groups: [i for g in groups for i in by_group.get(g, [])]  # noqa: E731
        self.index = {"train": pick(train), "val": pick(val), "test": pick(test)}

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        data = [self.rows[i] for i in self.index[stage]]
        gen = torch.Generator().manual_seed(self.seed + self.fold)
        return DataLoader(data, batch_size=self.batch_size if stage == "train" else self.eval_batch_size,
                          shuffle=shuffle, generator=gen, collate_fn=lambda b: collate(b, self.pad_id))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def train_eval_dataloader(self) -> DataLoader:
        """The training rows in eval mode (no shuffle): for the train loss of the best prompt."""
        return self._loader("train", False)


class SurveyDataModule(L.LightningDataModule):
    """The survey objective has no examples: each 'batch' is one administration of the survey.

    `steps_per_epoch` optimizer steps make an epoch; validation and test are one administration.
    """

    def __init__(self, steps_per_epoch: int = 10) -> None:
        super().__init__()
        self.steps_per_epoch = steps_per_epoch

    def _loader(self, n: int) -> DataLoader:
        return DataLoader(list(range(n)), batch_size=1, collate_fn=lambda b: torch.tensor(b))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.steps_per_epoch)

    def val_dataloader(self) -> DataLoader:
        return self._loader(1)

    def test_dataloader(self) -> DataLoader:
        return self._loader(1)
