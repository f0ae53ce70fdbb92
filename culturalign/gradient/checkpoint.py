"""Lightning callback: keep a fold's best soft prompt in the shared checkpoint format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from culturalign.checkpoint.format import save_last, save_prompt


class PromptCheckpoint(L.Callback):
    """Save the prompt with the lowest `val_loss` to `fold_dir` (PEFT adapter + meta.json); with
    `select="last"`, the prompt of every validation instead (`save_final` adds the very last step).

    Also refreshes the run-level `last/` marker (so `--run.resume true` finds the run). The best
    score rides in Lightning's checkpoint, so a resumed fold compares against the right value.
    """

    def __init__(self, fold_dir: Path, run_dir: Path, meta: dict[str, Any], fold: int, config: Any = None, select: str = "best") -> None:
        self.fold_dir, self.run_dir, self.meta, self.fold, self.config = Path(fold_dir), Path(run_dir), meta, fold, config
        self.select = select
        self.best = float("inf")
        self.best_epoch = -1
        self.best_step = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val_loss" not in trainer.callback_metrics:
            return
        loss = float(trainer.callback_metrics["val_loss"])
        if loss < self.best or self.select == "last":
            self.best, self.best_epoch, self.best_step = loss, trainer.current_epoch, trainer.global_step
            self._save(trainer, pl_module, {"val_loss": loss})

    def save_final(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After fit: with select="last", or when no validation ran (e.g. max_time hit first), keep the
        prompt as training left it, unless the last validation already saved that very step."""
        saved_this_step = self.best_epoch >= 0 and self.best_step == trainer.global_step
        if (self.select == "last" or self.best_epoch < 0) and not saved_this_step:
            self.best_epoch, self.best_step = trainer.current_epoch, trainer.global_step
            self._save(trainer, pl_module, {})

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule, extra: dict[str, Any]) -> None:
        meta = {**self.meta, "fold": self.fold, "epoch": trainer.current_epoch, "step": trainer.global_step, "select": self.select, **extra}
        prompt = pl_module.eval_prompt.detach().cpu()
        if trainer.is_global_zero:  # DDP: every rank holds the same prompt; one writer
            save_prompt(self.fold_dir, prompt, meta, self.config)
            save_last(self.run_dir, prompt, meta, {"fold": torch.tensor([self.fold])}, self.config)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_step": self.best_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.best_step = int(state.get("best_step", 0))
