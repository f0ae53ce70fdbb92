"""`SoftPromptModule`: a LightningModule whose only parameter is the soft prompt V [T, d].

The frozen LM is held by reference inside a `Backbone` (a dataclass, not an nn.Module), so it is
never registered as a submodule: Lightning checkpoints hold V and AdamW's state only (kilobytes),
`model.train()` never switches the LM out of eval mode, and DDP wraps V alone. What the prompt is
trained on is an *objective*:

- `ChoiceObjective`: cross-entropy over the K options of labelled multiple-choice rows (CDEval,
  synthetic VSM13), scored as `--answering` says (`data.choice.option_logits`: the option-number
  tokens, or each option's text as the reply in cloze mode, optionally calibrated). The template
  head shared by every row is run once per batch and its KV cache repeated across the rows.
- `SurveyObjective`: the shared `SurveyFitness` loss with gradients (`grad=True`) over the training
  pool (wordings x layouts x answer orders), on a fresh seeded draw of its readings each step.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from culturalign.data.choice import option_logits
from culturalign.model.backbone import Backbone
from culturalign.survey.fitness import Answering
from culturalign.survey.readings import draw_readings


class ChoiceObjective:
    """Option logits for a batch of rows. Batch: input_ids, attention_mask (B, S), labels, order (B,)."""

    def __init__(
        self,
        backbone: Backbone,
        prefix_ids: torch.Tensor,
        answer_ids: list[int] | None,
        answering: Answering | None = None,
        num_options: int | None = None,
    ) -> None:
        """answer_ids: the option-number tokens (logits mode); cloze mode needs only `num_options`."""
        self.backbone, self.prefix_ids, self.answering = backbone, prefix_ids, answering or Answering()
        self.answer_ids = None if answer_ids is None else torch.tensor(answer_ids, dtype=torch.long)
        self.num_classes = num_options or len(answer_ids or ())

    def logits(self, prompt: torch.Tensor | None, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, K) fp32 option scores (the one scoring `evaluate` uses too); the batch must be tokenised with the same answering."""
        return option_logits(self.backbone, prompt, self.prefix_ids, batch, self.answer_ids, self.answering)

    def loss(self, prompt: torch.Tensor, batch: dict[str, torch.Tensor], stage: str, step: int) -> tuple[torch.Tensor, dict]:
        logits = self.logits(prompt, batch)
        return F.cross_entropy(logits, batch["labels"].to(logits.device)), {"logits": logits}


class SurveyObjective:
    """The training fitness's loss. A training step uses the readings `kept(step)` draws from its pool
    (`sample` of them, or each dropped with probability `dropout`: GD's wording_dropout; see
    culturalign.survey.readings); validation and test score the whole pool.

    `validation` wordings (never trained on), when given, are the validation loss, so the best
    checkpoint is picked by wordings the prompt has not fitted rather than by the training ones.
    """

    num_classes = None

    def __init__(
        self, fitness: Any, dropout: float = 0.0, seed: int = 0, validation: dict[str, Any] | None = None, sample: int = 0
    ) -> None:
        self.fitness, self.dropout, self.seed, self.sample = fitness, dropout, seed, sample
        self.validation = dict(validation or {})

    def kept(self, step: int) -> list[int]:
        """Readings used at this step (seeded by step, so a resumed run draws the same ones); never none."""
        return draw_readings(self.fitness.num_readings, self.seed, step, self.sample, self.dropout)

    def loss(self, prompt: torch.Tensor, batch: Any, stage: str, step: int) -> tuple[torch.Tensor, dict]:
        if stage == "train":
            return self.fitness.subset(self.kept(step))(prompt, grad=True).losses[0].float(), {}
        with torch.no_grad():
            if stage == "val" and self.validation:
                losses = [f(prompt.detach()).losses[0].float() for f in self.validation.values()]
                return torch.stack(losses).mean(), {f"wording/{n}": v for n, v in zip(self.validation, losses)}
            res = self.fitness(prompt.detach())
        names = [n.split(":")[-1] for n in self.fitness.describe()["survey"]]
        return res.losses[0].float(), {f"wording/{n}": v.float() for n, v in zip(names, res.wording_losses[0])}


class SoftPromptModule(L.LightningModule):
    """AdamW on V only. Regularisers: `norm_penalty` * mean squared token norm, `init_penalty` *
    mean squared per-token distance to the init prompt (both relative to the embedding norm scale).
    `decay_steps` > 0: cosine decay of the learning rate to `MIN_LR_FRACTION` of lr over that many steps.
    `ema` > 0: validation, checkpoints and tests use an exponential moving average of the prompt over
    optimizer steps (`eval_prompt`); the survey loss is sharp in V, so single iterates jump between
    wordings' optima while their average sits in a flatter region."""

    MIN_LR_FRACTION = 0.1

    def __init__(
        self,
        backbone: Backbone,
        v0: torch.Tensor,
        objective: Any,
        lr: float = 0.01,
        weight_decay: float = 0.0,
        norm_penalty: float = 0.0,
        init_penalty: float = 0.0,
        decay_steps: int = 0,
        ema: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone  # a dataclass, so not registered: never in state_dict, never moved
        self.objective = objective
        self.prompt = torch.nn.Parameter(v0.detach().clone().float())
        self.register_buffer("v0", v0.detach().clone().float(), persistent=False)
        self.lr, self.weight_decay = lr, weight_decay
        self.norm_penalty, self.init_penalty = norm_penalty, init_penalty
        self.decay_steps, self.ema = decay_steps, ema
        if ema:  # persistent: last.ckpt carries the average, so a resumed run continues it
            self.register_buffer("prompt_ema", v0.detach().clone().float())
        self._ema_step = 0
        K = objective.num_classes
        self.metrics = torch.nn.ModuleDict()
        if K:
            for stage in ("val", "test"):
                for o in (0, 1):
                    self.metrics[f"{stage}_acc_order{o}"] = MulticlassAccuracy(K, average="micro")
                self.metrics[f"{stage}_acc"] = MulticlassAccuracy(K, average="micro")

    @property
    def eval_prompt(self) -> torch.Tensor:
        """The prompt that is validated, saved and tested: the moving average when `ema` is on."""
        return self.prompt_ema if self.ema else self.prompt

    def set_eval_prompt(self, prompt: torch.Tensor) -> None:
        """Load a saved (best) prompt as the one to test."""
        with torch.no_grad():
            self.prompt.copy_(prompt.to(self.prompt.device))
            if self.ema:
                self.prompt_ema.copy_(self.prompt)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # global_step counts optimizer steps, so with gradient accumulation the average moves once per step.
        if self.ema and self.global_step != self._ema_step:
            self._ema_step = self.global_step
            with torch.no_grad():
                self.prompt_ema.mul_(self.ema).add_(self.prompt.detach(), alpha=1 - self.ema)

    def regulariser(self) -> torch.Tensor:
        reg = self.prompt.new_zeros(())
        if self.norm_penalty:
            reg = reg + self.norm_penalty * self.prompt.square().sum(-1).mean()
        if self.init_penalty:
            reg = reg + self.init_penalty * (self.prompt - self.v0).square().sum(-1).mean()
        return reg

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        # One draw key per batch: the optimizer step, and the batch within it when gradients accumulate
        # (so accumulated batches of the survey objective see different draws, not one draw k times).
        accumulate = self.trainer.accumulate_grad_batches
        loss, _ = self.objective.loss(self.prompt, batch, "train", self.global_step * accumulate + batch_idx % accumulate)
        bs = _batch_size(batch)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs)
        reg = self.regulariser()
        if self.norm_penalty or self.init_penalty:
            self.log("train_reg", reg, on_step=True, on_epoch=True, batch_size=bs)
        return loss + reg

    def _eval_step(self, batch: Any, stage: str) -> None:
        loss, extra = self.objective.loss(self.eval_prompt, batch, stage, self.global_step)
        bs = _batch_size(batch)
        # sync_dist: the mean over all ranks' rows, so every rank picks the same best epoch.
        self.log(f"{stage}_loss", loss, prog_bar=True, on_epoch=True, batch_size=bs, sync_dist=True)
        for k, v in extra.items():
            if k != "logits":
                self.log(f"{stage}_{k}", v, on_epoch=True, batch_size=bs, sync_dist=True)
        if "logits" in extra:
            preds, labels, order = extra["logits"].argmax(-1), batch["labels"], batch["order"]
            self.metrics[f"{stage}_acc"](preds, labels)
            self.log(f"{stage}_acc", self.metrics[f"{stage}_acc"], on_epoch=True, batch_size=bs)
            for o in (0, 1):
                sel = order == o
                if sel.any():  # a metric updated with nothing would log NaN for the epoch
                    m = self.metrics[f"{stage}_acc_order{o}"]
                    m(preds[sel], labels[sel])
                    self.log(f"{stage}_acc_order{o}", m, on_epoch=True, batch_size=int(sel.sum()))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW([self.prompt], lr=self.lr, weight_decay=self.weight_decay)
        if not self.decay_steps:
            return opt
        # Stepped per optimizer step; the scheduler's state is in last.ckpt, so a resumed run continues the decay.
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cosine_factor(step, self.decay_steps, self.MIN_LR_FRACTION))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def cosine_factor(step: int, total: int, floor: float) -> float:
    """1 at step 0, `floor` at `total` and after, half a cosine in between."""
    t = min(step, total) / total
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def _batch_size(batch: Any) -> int:
    return int(batch["input_ids"].shape[0]) if isinstance(batch, dict) else 1
