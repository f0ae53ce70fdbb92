"""Lightning data modules of gradient runs: labelled examples by fold, or survey administrations."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from culturalign.data.choice import ChoiceExample, collate, tokenise_rows
from culturalign.data.folds import FoldPlan
from culturalign.survey.fitness import Answering


class ChoiceDataModule(L.LightningDataModule):
    """Train/val/test loaders for one fold of a `FoldPlan` over `examples`."""

    def __init__(
        self,
        examples: list[ChoiceExample],
        tokenizer: Any,
        plan: FoldPlan,
        fold: int,
        batch_size: int = 8,
        seed: int = 0,
        eval_batch_size: int | None = None,
        answering: Answering | None = None,
    ) -> None:
        super().__init__()
        self.examples, self.plan, self.fold = examples, plan, fold
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size or 2 * batch_size, seed
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # Rows as `answering` asks them (numbered, or cloze with option texts; content-free twins to calibrate).
        self.prefix_ids, self.rows = tokenise_rows(tokenizer, examples, None, answering)
        train, val, test = plan.split(fold)
        by_group: dict[int, list[int]] = {}
        for i, ex in enumerate(examples):
            by_group.setdefault(ex.group, []).append(i)
        pick = lambda groups: [i for g in groups for i in by_group.get(g, [])]  # noqa: E731
        self.index = {"train": pick(train), "val": pick(val), "test": pick(test)}

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        data = [self.rows[i] for i in self.index[stage]]
        gen = torch.Generator().manual_seed(self.seed + self.fold)
        return DataLoader(
            data,
            batch_size=self.batch_size if stage == "train" else self.eval_batch_size,
            shuffle=shuffle,
            generator=gen,
            collate_fn=lambda b: collate(b, self.pad_id),
        )

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
