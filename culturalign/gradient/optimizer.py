"""Gradient descent on the soft prompt (Lightning Trainer, AdamW); the loop is culturalign.fit.gradient.

`--data` picks what the gradient comes from: CDEval pairs or the synthetic VSM13 set
(cross-entropy on the option-number token, K-fold CV), or `vsm13`, the survey loss itself (the
shared SurveyFitness with gradients; see docs/gradient.md for why it is differentiable).
"""

from __future__ import annotations

from typing import Any, Literal

from culturalign.errors import CulturalignError
from culturalign.optimizers.base import Optimizer


class GD(Optimizer):
    """AdamW on the soft prompt only; the LM stays frozen.

    Args:
        lr: Learning rate.
        epochs: Training epochs per fold.
        max_steps: Stop each fold after this many optimizer steps (0 = no limit; epochs still apply).
        max_time: Stop each fold after this many seconds of training (None = no limit).
        batch_size: Rows per step (labelled data; the survey objective asks the whole survey per step).
        accumulate: Accumulate gradients over this many batches per optimizer step.
        weight_decay: AdamW weight decay on the prompt (decays toward 0, not toward the init).
        grad_clip: Clip the gradient norm to this value (0 = off).
        norm_penalty: Add norm_penalty * mean squared token norm of the prompt.
        init_penalty: Add init_penalty * mean squared per-token distance to the init prompt.
        wording_dropout: Survey objective: drop each training wording from a step with this probability.
        lr_schedule: constant, or cosine: decay the learning rate to 10% of lr over max_steps (needs max_steps),
            so the prompt settles and the last checkpoints stop jumping between wordings' optima.
        ema: Validate, checkpoint and test an exponential moving average of the prompt with this decay per
            step (0 = off; 0.9 averages over about the last 10 steps).
        select: Which prompt a fold returns: best (lowest validation loss) or last (the prompt when training
            stops; validation is still run and reported). One 24-item validation wording is a noisy judge
            between prompts of a settled run; with max_steps, a decaying schedule and ema, last is the settled one.
        precision: auto (bf16 autocast for an fp32 LM on bf16 hardware, else 32-true), 32-true, bf16-mixed.
    """

    name = "GD"

    def __init__(self, lr: float = 0.01, epochs: int = 3, max_steps: int = 0, max_time: float | None = None,
                 batch_size: int = 8, accumulate: int = 1, weight_decay: float = 0.0, grad_clip: float = 0.0,
                 norm_penalty: float = 0.0, init_penalty: float = 0.0, wording_dropout: float = 0.0,
                 lr_schedule: Literal["constant", "cosine"] = "constant", ema: float = 0.0,
                 select: Literal["best", "last"] = "best",
                 precision: Literal["auto", "32-true", "bf16-mixed"] = "auto") -> None:
        if not lr > 0:
            raise CulturalignError(f"optimizer.lr={lr} must be > 0; try 0.01")
        if epochs < 1 or batch_size < 1 or accumulate < 1:
            raise CulturalignError(f"optimizer.epochs={epochs}, optimizer.batch_size={batch_size} and "
                                   f"optimizer.accumulate={accumulate} must be >= 1")
        if max_steps < 0 or (max_time is not None and max_time <= 0):
            raise CulturalignError(f"optimizer.max_steps={max_steps} must be >= 0 and optimizer.max_time={max_time} > 0")
        if min(weight_decay, grad_clip, norm_penalty, init_penalty) < 0:
            raise CulturalignError("optimizer.weight_decay, grad_clip, norm_penalty and init_penalty must be >= 0")
        if not 0 <= wording_dropout < 1:
            raise CulturalignError(f"optimizer.wording_dropout={wording_dropout} must be in [0, 1); try 0.3")
        if not 0 <= ema < 1:
            raise CulturalignError(f"optimizer.ema={ema} must be in [0, 1); try 0.9")
        if lr_schedule not in ("constant", "cosine"):
            raise CulturalignError(f"optimizer.lr_schedule={lr_schedule!r} is unknown; use constant or cosine")
        if lr_schedule == "cosine" and not max_steps:
            raise CulturalignError("optimizer.lr_schedule=cosine decays over optimizer.max_steps; "
                                   "set --optimizer.max_steps N (e.g. 120)")
        if select not in ("best", "last"):
            raise CulturalignError(f"optimizer.select={select!r} is unknown; use best or last")
        if precision not in ("auto", "32-true", "bf16-mixed"):
            raise CulturalignError(f"optimizer.precision={precision!r} is unknown; use auto, 32-true or bf16-mixed")
        self.lr, self.epochs, self.max_steps, self.max_time = lr, epochs, max_steps, max_time
        self.batch_size, self.accumulate, self.weight_decay, self.grad_clip = batch_size, accumulate, weight_decay, grad_clip
        self.norm_penalty, self.init_penalty, self.wording_dropout = norm_penalty, init_penalty, wording_dropout
        self.lr_schedule, self.ema, self.select, self.precision = lr_schedule, ema, select, precision

    def run(self, ctx: Any, launch: Any = None, data: Any = None, cv: Any = None, sweep: Any = None,
            **groups: Any) -> dict[str, Any]:
        from culturalign.commands.fit import LaunchArgs
        from culturalign.data.registry import DataArgs
        from culturalign.fit.gradient import CVArgs, SweepArgs, run_gradient

        return run_gradient(ctx, self, data or DataArgs(), cv or CVArgs(), sweep or SweepArgs(), launch or LaunchArgs())
