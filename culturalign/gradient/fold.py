"""One fold of a gradient run: baseline, Lightning Trainer fit (resumable), best prompt, test metrics."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from culturalign.checkpoint.format import load_prompt
from culturalign.errors import CulturalignError
from culturalign.fit.launch import LaunchArgs
from culturalign.fit.run import FitContext
from culturalign.gradient.tasks import DataArgs, Task
from culturalign.model.backbone import Backbone

if TYPE_CHECKING:
    import lightning as L

    from culturalign.data.folds import FoldPlan
    from culturalign.gradient.module import SoftPromptModule
    from culturalign.gradient.optimizer import GD


def precision(gd: GD, backbone: Backbone) -> str:
    """bf16 autocast only where it pays: an fp32 LM on hardware with bf16 arithmetic."""
    if gd.precision != "auto":
        return gd.precision
    from culturalign.model.backbone import bf16_supported

    return "bf16-mixed" if backbone.dtype == torch.float32 and bf16_supported(backbone.device) else "32-true"


def make_module(ctx: FitContext, gd: GD, task: Task, dm: L.LightningDataModule, v0: torch.Tensor) -> SoftPromptModule:
    from culturalign.gradient.module import SoftPromptModule

    return SoftPromptModule(
        ctx.backbone,
        v0,
        task.objective(ctx, dm, gd.wording_dropout),
        gd.lr,
        gd.weight_decay,
        gd.norm_penalty,
        gd.init_penalty,
        decay_steps=gd.max_steps if gd.lr_schedule == "cosine" else 0,
        ema=gd.ema,
    )


def _test_metrics(trainer: L.Trainer, module: SoftPromptModule, dm: L.LightningDataModule) -> dict[str, float]:
    out = trainer.test(module, datamodule=dm, verbose=False)[0]
    return {k.removeprefix("test_"): float(v) for k, v in out.items()}


def _trainer(ctx: FitContext, gd: GD, fold_dir: Path, callbacks: list[Any], common: dict[str, Any]) -> L.Trainer:
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(str(fold_dir), name="logs", version=""), TensorBoardLogger(str(fold_dir), name="tb", version="")]
    return L.Trainer(
        max_epochs=gd.epochs,
        max_steps=gd.max_steps if gd.max_steps else -1,
        max_time=timedelta(seconds=gd.max_time) if gd.max_time else None,
        accumulate_grad_batches=gd.accumulate,
        gradient_clip_val=gd.grad_clip or None,
        callbacks=callbacks,
        logger=loggers,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        log_every_n_steps=1,
        default_root_dir=str(fold_dir),
        **common,
    )


def train_fold(
    ctx: FitContext,
    gd: GD,
    task: Task,
    data: DataArgs,
    plan: FoldPlan | None,
    k: int,
    fold_dir: Path,
    meta: dict[str, Any],
    launch: LaunchArgs,
) -> dict[str, Any]:
    """Train fold k (resuming from its last.ckpt) and return its result record (result.json)."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from culturalign.gradient.callback import SurveyFitnessCallback
    from culturalign.gradient.checkpoint import PromptCheckpoint

    L.seed_everything(ctx.seed + k, verbose=False)
    dm = task.datamodule(ctx, plan, k, gd.batch_size, data)
    common = dict(
        accelerator=launch.accelerator,
        devices=launch.devices,
        num_nodes=launch.num_nodes,
        strategy=launch.strategy,
        precision=precision(gd, ctx.backbone),
    )

    # Baseline: the untrained (init) prompt on the same test rows.
    started = time.time()
    quiet = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, **common)
    baseline = _test_metrics(quiet, make_module(ctx, gd, task, dm, ctx.v0), dm)

    module = make_module(ctx, gd, task, dm, ctx.v0)
    best_ckpt = PromptCheckpoint(fold_dir, ctx.run_dir, {**meta, "fold": k}, k, ctx.backbone.model.config, gd.select)
    last_ckpt = ModelCheckpoint(dirpath=fold_dir, filename="last", save_top_k=0, save_last=True)
    survey_cb = SurveyFitnessCallback(ctx.fitness, {**ctx.heldout, **{f"validation {n}": f for n, f in ctx.validation.items()}})
    trainer = _trainer(ctx, gd, fold_dir, [best_ckpt, last_ckpt, survey_cb], common)
    resume_from = fold_dir / "last.ckpt"
    ckpt_path = str(resume_from) if resume_from.is_file() and ctx.resume is not False else None
    if ckpt_path:
        print(f"fold {k}: resuming from {resume_from}")
        _check_resumable(resume_from)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    train_loss = float(trainer.callback_metrics.get("train_loss_epoch", float("nan")))

    best_ckpt.save_final(trainer, module)
    trainer.strategy.barrier()  # rank 0's files are complete before any rank reads them
    best_prompt, best_meta = load_prompt(fold_dir, ctx.backbone, force=True)
    module.set_eval_prompt(best_prompt)
    return {
        "fold": k,
        "best": {"epoch": best_meta.get("epoch"), "step": best_meta.get("step"), "val_loss": best_meta.get("val_loss")},
        "train_loss": train_loss,
        "test": _test_metrics(trainer, module, dm),
        "baseline": baseline,
        "survey": {
            "before": survey_cb.before,
            "after": survey_cb.score(best_prompt),
            "no_prompt": survey_cb.score(None),
            "history": survey_cb.history,
        },
        "global_step": trainer.global_step,
        "epochs_run": trainer.current_epoch,
        "seconds": round(time.time() - started, 1),
    }


def _check_resumable(path: Path) -> None:
    """Lightning loads last.ckpt with torch.load(weights_only=True); turn a refusal into one line (and not
    torch's hint to retry with weights_only=False, which would run whatever the file contains)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling refused, truncated, not a checkpoint: all mean the same
        raise CulturalignError(
            f"{path} cannot be loaded safely ({type(err).__name__}): it is damaged or was not written by culturalign; "
            "delete it to restart that fold, or pass --run.resume false"
        ) from err
