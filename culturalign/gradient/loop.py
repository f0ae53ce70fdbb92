"""Gradient descent on the soft prompt: Lightning Trainer, K-fold cross-validation, token sweep.

    culturalign fit --optimizer GD --data cdeval_ivr                 # 5-fold CV on CDEval (indulgence pole)
    culturalign fit --optimizer GD --data synthetic_vsm13            # paraphrases labelled by inverse modelling
    culturalign fit --optimizer GD --data vsm13 --survey.paraphrases 1 2   # the survey loss itself
    culturalign fit --optimizer GD --sweep.num_virtual_tokens 10,20,40     # loss against T (PNG + table)

Run folder:
    <run>/fold<k>/             best prompt of fold k (shared checkpoint format), last.ckpt (Lightning
                               resume point), result.json (written when the fold is done), logs/ (CSV, TensorBoard)
    <run>/folds.json           fold id of every question (seeded), checked on resume
    <run>/adapter_*, meta.json the best fold's prompt (by validation loss) + per-fold and mean +- std results
    <run>/report.md            the results table
Resume (`--run.resume auto`, the default): finished folds (result.json) are skipped, the fold in
progress continues from its last.ckpt.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from statistics import mean, pstdev
from typing import Any

import torch

from culturalign.checkpoint.format import CONFIG, load_prompt, save_prompt, write_json
from culturalign.errors import CulturalignError


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


def _precision(gd: Any, backbone: Any) -> str:
    """bf16 autocast only where it pays: an fp32 LM on hardware with bf16 arithmetic."""
    if gd.precision != "auto":
        return gd.precision
    from culturalign.model.backbone import bf16_supported

    return "bf16-mixed" if backbone.dtype == torch.float32 and bf16_supported(backbone.device) else "32-true"


def _is_main() -> bool:
    """Rank 0 of a multi-process run (or the only process): the one that writes and prints."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def run_gradient(ctx: Any, gd: Any, data: Any, cv: CVArgs, sweep: SweepArgs, launch: Any) -> dict[str, Any]:
    """Entry point for `culturalign fit --optimizer GD`: a CV run, or one per T for a sweep."""
    from culturalign.data.registry import SurveyTask, build_task

    # Lightning's per-Trainer banners (accelerator, tips) would repeat for every fold.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)

    task = build_task(data, ctx)
    if ctx.validation and not isinstance(task, SurveyTask):
        raise CulturalignError(f"--survey.validation {sorted(ctx.validation)} applies to --data vsm13 (the survey loss); "
                               f"--data {data.name} picks checkpoints on its own validation split (--data.val_fraction)")
    if _is_main():
        (ctx.run_dir / CONFIG).write_text(ctx.config_yaml)
    Ts = sweep.values()
    if not Ts:
        return _run_cv(ctx, gd, task, data, cv, launch)
    from culturalign.model.soft_prompt import init_prompt

    rows = []
    for T in Ts:
        sub = replace(ctx, run_dir=ctx.run_dir / f"T{T}", meta={**ctx.meta, "num_virtual_tokens": T},
                      v0=init_prompt(ctx.backbone, T, ctx.meta["init"]["mode"], ctx.meta["init"]["text"], ctx.seed))
        sub.run_dir.mkdir(parents=True, exist_ok=True)
        s = _run_cv(sub, gd, task, data, cv, launch)
        rows.append({"T": T, "train_loss": s["mean"]["train_loss"], "eval_loss": s["mean"]["test_loss"],
                     "eval_loss_std": s["std"]["test_loss"], "run_dir": str(sub.run_dir)})
    return _finish_sweep(ctx, rows)


def _finish_sweep(ctx: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from culturalign.plots import convergence

    lines = ["| T | train loss (last epoch) | eval loss (test folds, mean ± std) |", "|---|---|---|"]
    lines += [f"| {r['T']} | {r['train_loss']:.4f} | {r['eval_loss']:.4f} ± {r['eval_loss_std']:.4f} |" for r in rows]
    table = "\n".join(lines)
    (ctx.run_dir / "sweep.md").write_text(table + "\n")
    Ts = [r["T"] for r in rows]
    convergence({"train": (Ts, [r["train_loss"] for r in rows]), "eval": (Ts, [r["eval_loss"] for r in rows])},
                ctx.run_dir / "sweep.png", xlabel="virtual tokens T", ylabel="loss",
                title=f"GD token sweep on {ctx.meta['backbone']['model_id'][:40]}")
    best = min(rows, key=lambda r: r["eval_loss"])
    prompt, meta = load_prompt(best["run_dir"])
    summary = {**meta, "sweep": rows, "best_T": best["T"]}
    save_prompt(ctx.run_dir, prompt, summary, ctx.backbone.model.config)
    print(table)
    return summary


# -- one cross-validated run -------------------------------------------------------------------------

def _fold_plan(ctx: Any, task: Any, data: Any, cv: CVArgs) -> Any:
    from culturalign.data.folds import stratified_folds

    strata = {ex.group: ex.stratum for ex in task.examples}
    plan = stratified_folds(strata, cv.folds, ctx.seed, data.val_fraction)
    path = ctx.run_dir / "folds.json"
    record = {"data": task.name, **plan.to_json()}
    if path.is_file() and json.loads(path.read_text()) != json.loads(json.dumps(record)):
        raise CulturalignError(f"{path} was written for other data, folds or seed; pass --run.resume false "
                               "or another --run.name to start a new run")
    if _is_main():
        write_json(path, record)
    return plan


def _run_cv(ctx: Any, gd: Any, task: Any, data: Any, cv: CVArgs, launch: Any) -> dict[str, Any]:
    from culturalign.data.registry import SurveyTask

    meta = {**ctx.meta, "data": {"name": task.name, **task.description},
            "cv": {"folds": 1 if isinstance(task, SurveyTask) else cv.folds, "seed": ctx.seed,
                   "val_fraction": data.val_fraction}}
    if isinstance(task, SurveyTask):
        plan, K = None, 1
    else:
        plan = _fold_plan(ctx, task, data, cv)
        K = plan.k
    results = []
    for k in range(K):
        fold_dir = ctx.run_dir / f"fold{k}"
        done = fold_dir / "result.json"
        if done.is_file() and ctx.resume is not False:
            print(f"fold {k}: already finished, skipping ({done})")
            results.append(json.loads(done.read_text()))
            continue
        fold_dir.mkdir(parents=True, exist_ok=True)
        result = _train_fold(ctx, gd, task, data, plan, k, fold_dir, meta, launch)
        if _is_main():
            write_json(done, result)
        results.append(result)
    return _finish_cv(ctx, task, meta, results)


def _make_module(ctx: Any, gd: Any, task: Any, v0: torch.Tensor, prefix_ids: torch.Tensor | None) -> Any:
    from culturalign.data.registry import SurveyTask
    from culturalign.model.chat import answer_token_ids
    from culturalign.model.module import ChoiceObjective, SoftPromptModule, SurveyObjective
    from culturalign.survey.fitness import SurveyFitness

    if isinstance(task, SurveyTask):
        f = ctx.fitness
        fits = [SurveyFitness(ctx.backbone, [s], f.target, f.scoring, f.answering) for s in f.surveys]
        objective: Any = SurveyObjective(fits, [n.split(":")[-1] for n in f.describe()["survey"]], gd.wording_dropout,
                                         ctx.seed, ctx.validation)
    else:
        objective = ChoiceObjective(ctx.backbone, prefix_ids, answer_token_ids(ctx.backbone.tokenizer, task.num_options))
    return SoftPromptModule(ctx.backbone, v0, objective, gd.lr, gd.weight_decay, gd.norm_penalty, gd.init_penalty,
                            decay_steps=gd.max_steps if gd.lr_schedule == "cosine" else 0, ema=gd.ema)


def _test_metrics(trainer: Any, module: Any, dm: Any) -> dict[str, float]:
    out = trainer.test(module, datamodule=dm, verbose=False)[0]
    return {k.removeprefix("test_"): float(v) for k, v in out.items()}


def _train_fold(ctx: Any, gd: Any, task: Any, data: Any, plan: Any, k: int, fold_dir: Path, meta: dict[str, Any],
                launch: Any) -> dict[str, Any]:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from culturalign.data.choice import ChoiceDataModule, SurveyDataModule
    from culturalign.data.registry import SurveyTask
    from culturalign.fit.prompt_checkpoint import PromptCheckpoint
    from culturalign.survey.callback import SurveyFitnessCallback

    L.seed_everything(ctx.seed + k, verbose=False)
    survey_task = isinstance(task, SurveyTask)
    if survey_task:
        dm: Any = SurveyDataModule(data.steps_per_epoch)
        prefix = None
    else:
        dm = ChoiceDataModule(task.examples, ctx.backbone.tokenizer, plan, k, gd.batch_size, ctx.seed)
        prefix = dm.prefix_ids
    precision = _precision(gd, ctx.backbone)
    common = dict(accelerator=launch.accelerator, devices=launch.devices, num_nodes=launch.num_nodes,
                  strategy=launch.strategy, precision=precision)

    # Baseline: the untrained (init) prompt on the same test rows.
    started = time.time()
    base_module = _make_module(ctx, gd, task, ctx.v0, prefix)
    quiet = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      **common)
    baseline = _test_metrics(quiet, base_module, dm)

    module = _make_module(ctx, gd, task, ctx.v0, prefix)
    best_ckpt = PromptCheckpoint(fold_dir, ctx.run_dir, {**meta, "fold": k}, k, ctx.backbone.model.config, gd.select)
    last_ckpt = ModelCheckpoint(dirpath=fold_dir, filename="last", save_top_k=0, save_last=True)
    survey_cb = SurveyFitnessCallback(ctx.fitness, {**ctx.heldout, **{f"validation {n}": f for n, f in ctx.validation.items()}})
    loggers = [CSVLogger(str(fold_dir), name="logs", version=""), TensorBoardLogger(str(fold_dir), name="tb", version="")]
    trainer = L.Trainer(
        max_epochs=gd.epochs, max_steps=gd.max_steps if gd.max_steps else -1,
        max_time=timedelta(seconds=gd.max_time) if gd.max_time else None,
        accumulate_grad_batches=gd.accumulate, gradient_clip_val=gd.grad_clip or None,
        callbacks=[best_ckpt, last_ckpt, survey_cb], logger=loggers, num_sanity_val_steps=0,
        enable_model_summary=False, log_every_n_steps=1, default_root_dir=str(fold_dir), **common)
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
    test = _test_metrics(trainer, module, dm)
    result = {"fold": k, "best": {"epoch": best_meta.get("epoch"), "step": best_meta.get("step"),
                                  "val_loss": best_meta.get("val_loss")},
              "train_loss": train_loss, "test": test, "baseline": baseline,
              "survey": {"before": survey_cb.before, "after": survey_cb.score(best_prompt), "history": survey_cb.history},
              "global_step": trainer.global_step, "epochs_run": trainer.current_epoch,
              "seconds": round(time.time() - started, 1)}
    if survey_task:
        result["survey"]["no_prompt"] = survey_cb.score(None)
    return result


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


def _stat(results: list[dict[str, Any]], get: Any) -> tuple[float, float]:
    vals = [get(r) for r in results]
    vals = [v for v in vals if v is not None and v == v]
    return (mean(vals), pstdev(vals)) if vals else (float("nan"), float("nan"))


def _finish_cv(ctx: Any, task: Any, meta: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """meta.json (per fold + mean ± std), report.md, and the best fold's prompt as the run's adapter."""
    keys = {"test_loss": lambda r: r["test"].get("loss"), "test_acc": lambda r: r["test"].get("acc"),
            "test_acc_order0": lambda r: r["test"].get("acc_order0"), "test_acc_order1": lambda r: r["test"].get("acc_order1"),
            "baseline_loss": lambda r: r["baseline"].get("loss"), "baseline_acc": lambda r: r["baseline"].get("acc"),
            "baseline_acc_order0": lambda r: r["baseline"].get("acc_order0"),
            "baseline_acc_order1": lambda r: r["baseline"].get("acc_order1"),
            "train_loss": lambda r: r.get("train_loss"),
            "survey_before": lambda r: r["survey"]["before"]["loss"], "survey_after": lambda r: r["survey"]["after"]["loss"]}
    stats = {name: _stat(results, get) for name, get in keys.items()}
    best = min(results, key=lambda r: r["best"]["val_loss"] if r["best"]["val_loss"] is not None else float("inf"))
    best_dir = ctx.run_dir / f"fold{best['fold']}"
    prompt, _ = load_prompt(best_dir, ctx.backbone, force=True)
    summary = {**meta, "folds": results, "mean": {k: v[0] for k, v in stats.items()},
               "std": {k: v[1] for k, v in stats.items()}, "best_fold": best["fold"],
               "best_loss": best["survey"]["after"]["loss"], "seconds": sum(r["seconds"] for r in results)}
    table = _table(ctx, task, results, stats)
    summary["table"] = table
    if not _is_main():  # DDP: the other ranks computed the same results; rank 0 writes and prints
        return summary
    save_prompt(ctx.run_dir, prompt, summary, ctx.backbone.model.config)
    (ctx.run_dir / "report.md").write_text(table + "\n")
    print(table)
    nan_none = lambda v: None if v != v else round(v, 4)  # noqa: E731 - JSON has no NaN
    print(json.dumps({"run_dir": str(ctx.run_dir), "best_fold": best["fold"],
                      "mean_test_loss": nan_none(stats["test_loss"][0]), "mean_test_acc": nan_none(stats["test_acc"][0]),
                      "seconds": round(summary["seconds"], 1)}))
    return summary


def _fmt(v: Any, digits: int = 3) -> str:
    return "-" if v is None or v != v else f"{v:.{digits}f}"


def _table(ctx: Any, task: Any, results: list[dict[str, Any]], stats: dict[str, tuple[float, float]]) -> str:
    from culturalign.data.registry import SurveyTask

    if isinstance(task, SurveyTask):
        r = results[0]
        s = r["survey"]
        names = list(s["after"]["heldout"])
        # Validation wordings (--survey.validation) picked the checkpoint, so they are not called held-out.
        head = "| prompt | training wordings loss | " + " | ".join(
            n if n.startswith("validation ") else f"held-out {n}" for n in names) + " |"
        lines = [head, "|---|---|" + "---|" * len(names)]
        for label, row in (("no prompt", s["no_prompt"]), ("init prompt", s["before"]), ("GD best", s["after"])):
            lines.append(f"| {label} | {row['loss']:.2f} | " + " | ".join(f"{row['heldout'][n]:.2f}" for n in names) + " |")
        from culturalign.fit.run import format_table

        f = ctx.fitness
        dims = format_table({"no prompt": s["no_prompt"], "init prompt": s["before"], "GD best": s["after"]},
                            f.survey.dimensions, f.target, f.scoring.loss)
        return "\n".join(lines) + "\n\nDimensions (training wordings, mean):\n\n" + dims
    o0, o1 = task.order_names
    lines = [f"| fold | best epoch | test loss | test acc | acc {o0} | acc {o1} | untrained acc {o0} / {o1} | "
             "VSM13 loss before → after |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        t, b = r["test"], r["baseline"]
        lines.append(f"| {r['fold']} | {r['best']['epoch']} | {_fmt(t.get('loss'))} | {_fmt(t.get('acc'))} | "
                     f"{_fmt(t.get('acc_order0'))} | {_fmt(t.get('acc_order1'))} | {_fmt(b.get('acc_order0'))} / "
                     f"{_fmt(b.get('acc_order1'))} | {r['survey']['before']['loss']:.1f} → {r['survey']['after']['loss']:.1f} |")
    ms = lambda k: f"{_fmt(stats[k][0])} ± {_fmt(stats[k][1])}"  # noqa: E731
    lines.append(f"| mean ± std | | {ms('test_loss')} | {ms('test_acc')} | {ms('test_acc_order0')} | "
                 f"{ms('test_acc_order1')} | {_fmt(stats['baseline_acc_order0'][0])} / {_fmt(stats['baseline_acc_order1'][0])} | "
                 f"{stats['survey_before'][0]:.1f} → {stats['survey_after'][0]:.1f} |")
    return "\n".join(lines)
