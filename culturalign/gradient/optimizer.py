"""Gradient descent on the soft prompt (Lightning Trainer, AdamW); the loop is culturalign.gradient.loop.

`--data` picks what the gradient comes from: CDEval pairs or the synthetic VSM13 set
(cross-entropy on the option-number token, K-fold CV), or `vsm13`, the survey loss itself (the
shared SurveyFitness with gradients; see docs/gradient.md for why it is differentiable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from culturalign.errors import CulturalignError
from culturalign.fit.launch import LaunchArgs
from culturalign.gradient.tasks import DataArgs
from culturalign.optimizers.base import Optimizer

if TYPE_CHECKING:
    from culturalign.fit.run import FitContext


@dataclass
class CVArgs:
    """Cross-validation for GD on labelled data."""

    folds: int = 5
    """K folds (stratified by CDEval domain / VSM13 item); 1 = one train/val split (see --data.val_fraction)."""


@dataclass
class SweepArgs:
    """Train once per prompt length and plot train/eval loss against T (the paper's appendix)."""

    num_virtual_tokens: str = ""
    """Comma-separated T values, e.g. 10,20,40,60,100 (empty: no sweep, use --prompt.num_virtual_tokens)."""

    def values(self) -> list[int]:
        text = str(self.num_virtual_tokens).strip().strip("[]")
        if not text:
            return []
        try:
            values = [int(x) for x in text.replace(" ", "").split(",") if x]
        except ValueError:
            raise CulturalignError(f"--sweep.num_virtual_tokens {text!r} must be integers separated by commas, e.g. 10,20,40") from None
        if any(v < 1 for v in values) or len(set(values)) != len(values):
            raise CulturalignError(f"--sweep.num_virtual_tokens {values} must be distinct integers >= 1")
        return values


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
        wording_dropout: Survey objective: drop each training reading (a wording in a layout; with --survey.reading
            per_order, one answer order of it) from a step with this probability (or draw --survey.sample K per step).
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
    uses_validation_wordings = True

    def __init__(
        self,
        lr: float = 0.01,
        epochs: int = 3,
        max_steps: int = 0,
        max_time: float | None = None,
        batch_size: int = 8,
        accumulate: int = 1,
        weight_decay: float = 0.0,
        grad_clip: float = 0.0,
        norm_penalty: float = 0.0,
        init_penalty: float = 0.0,
        wording_dropout: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        ema: float = 0.0,
        select: Literal["best", "last"] = "best",
        precision: Literal["auto", "32-true", "bf16-mixed"] = "auto",
    ) -> None:
        if not lr > 0:
            raise CulturalignError(f"optimizer.lr={lr} must be > 0; try 0.01")
        if epochs < 1 or batch_size < 1 or accumulate < 1:
            raise CulturalignError(
                f"optimizer.epochs={epochs}, optimizer.batch_size={batch_size} and optimizer.accumulate={accumulate} must be >= 1"
            )
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
            raise CulturalignError("optimizer.lr_schedule=cosine decays over optimizer.max_steps; set --optimizer.max_steps N (e.g. 120)")
        if select not in ("best", "last"):
            raise CulturalignError(f"optimizer.select={select!r} is unknown; use best or last")
        if precision not in ("auto", "32-true", "bf16-mixed"):
            raise CulturalignError(f"optimizer.precision={precision!r} is unknown; use auto, 32-true or bf16-mixed")
        self.lr, self.epochs, self.max_steps, self.max_time = lr, epochs, max_steps, max_time
        self.batch_size, self.accumulate, self.weight_decay, self.grad_clip = batch_size, accumulate, weight_decay, grad_clip
        self.norm_penalty, self.init_penalty, self.wording_dropout = norm_penalty, init_penalty, wording_dropout
        self.lr_schedule, self.ema, self.select, self.precision = lr_schedule, ema, select, precision

    def fit(
        self,
        ctx: FitContext,
        launch: LaunchArgs,
        data: DataArgs = DataArgs(),
        cv: CVArgs = CVArgs(),  # noqa: B008
        sweep: SweepArgs = SweepArgs(),
    ) -> dict[str, Any]:  # noqa: B008
        """A cross-validated run (or one per T for a sweep); `data`, `cv`, `sweep` are GD-only option groups."""
        from culturalign.gradient.loop import run_gradient

        return run_gradient(ctx, self, data, cv, sweep, launch)
