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
from dataclasses import replace
from statistics import mean, pstdev
from typing import Any, Callable

import torch

from culturalign.checkpoint.format import CONFIG, load_prompt, save_prompt, write_json
from culturalign.data.folds import FoldPlan
from culturalign.errors import CulturalignError
from culturalign.fit.launch import LaunchArgs
from culturalign.fit.run import FitContext
from culturalign.gradient.fold import train_fold
from culturalign.gradient.optimizer import GD, CVArgs, SweepArgs
from culturalign.gradient.tasks import DataArgs, Task, build_task


def _is_main() -> bool:
    """Rank 0 of a multi-process run (or the only process): the one that writes and prints."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def run_gradient(ctx: FitContext, gd: GD, data: DataArgs, cv: CVArgs, sweep: SweepArgs, launch: LaunchArgs) -> dict[str, Any]:
    """Entry point for `culturalign fit --optimizer GD`: a CV run, or one per T for a sweep."""
    # Lightning's per-Trainer banners (accelerator, tips) would repeat for every fold.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)

    task = build_task(data, ctx.fitness, ctx.seed, sorted(ctx.heldout))
    task.check(ctx)
    if _is_main():
        (ctx.run_dir / CONFIG).write_text(ctx.config_yaml)
    Ts = sweep.values()
    if not Ts:
        return _run_cv(ctx, gd, task, data, cv, launch)
    from culturalign.model.soft_prompt import init_prompt

    rows = []
    for T in Ts:
        sub = replace(
            ctx,
            run_dir=ctx.run_dir / f"T{T}",
            meta={**ctx.meta, "num_virtual_tokens": T},
            v0=init_prompt(ctx.backbone, T, ctx.meta["init"]["mode"], ctx.meta["init"]["text"], ctx.seed),
        )
        sub.run_dir.mkdir(parents=True, exist_ok=True)
        s = _run_cv(sub, gd, task, data, cv, launch)
        rows.append(
            {
                "T": T,
                "train_loss": s["mean"]["train_loss"],
                "eval_loss": s["mean"]["test_loss"],
                "eval_loss_std": s["std"]["test_loss"],
                "run_dir": str(sub.run_dir),
            }
        )
    return _finish_sweep(ctx, rows)


def _finish_sweep(ctx: FitContext, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from culturalign.plots import convergence

    lines = ["| T | train loss (last epoch) | eval loss (test folds, mean ± std) |", "|---|---|---|"]
    lines += [f"| {r['T']} | {r['train_loss']:.4f} | {r['eval_loss']:.4f} ± {r['eval_loss_std']:.4f} |" for r in rows]
    table = "\n".join(lines)
    (ctx.run_dir / "sweep.md").write_text(table + "\n")
    Ts = [r["T"] for r in rows]
    convergence(
        {"train": (Ts, [r["train_loss"] for r in rows]), "eval": (Ts, [r["eval_loss"] for r in rows])},
        ctx.run_dir / "sweep.png",
        xlabel="virtual tokens T",
        ylabel="loss",
        title=f"GD token sweep on {ctx.meta['backbone']['model_id'][:40]}",
    )
    best = min(rows, key=lambda r: r["eval_loss"])
    prompt, meta = load_prompt(best["run_dir"])
    summary = {**meta, "sweep": rows, "best_T": best["T"]}
    save_prompt(ctx.run_dir, prompt, summary, ctx.backbone.model.config)
    print(table)
    return summary


# -- one cross-validated run -------------------------------------------------------------------------


def _fold_plan(ctx: FitContext, task: Task, data: DataArgs, cv: CVArgs) -> FoldPlan | None:
    """The task's folds, recorded in folds.json and checked against it on resume."""
    plan = task.fold_plan(ctx, data, cv.folds)
    if plan is None:
        return None
    path = ctx.run_dir / "folds.json"
    record = {"data": task.name, **plan.to_json()}
    if path.is_file() and json.loads(path.read_text()) != json.loads(json.dumps(record)):
        raise CulturalignError(
            f"{path} was written for other data, folds or seed; pass --run.resume false or another --run.name to start a new run"
        )
    if _is_main():
        write_json(path, record)
    return plan


def _run_cv(ctx: FitContext, gd: GD, task: Task, data: DataArgs, cv: CVArgs, launch: LaunchArgs) -> dict[str, Any]:
    plan = _fold_plan(ctx, task, data, cv)
    K = 1 if plan is None else plan.k
    meta = {
        **ctx.meta,
        "data": {"name": task.name, **task.description},
        "cv": {"folds": K, "seed": ctx.seed, "val_fraction": data.val_fraction},
    }
    results = []
    for k in range(K):
        fold_dir = ctx.run_dir / f"fold{k}"
        done = fold_dir / "result.json"
        if done.is_file() and ctx.resume is not False:
            print(f"fold {k}: already finished, skipping ({done})")
            results.append(json.loads(done.read_text()))
            continue
        fold_dir.mkdir(parents=True, exist_ok=True)
        result = train_fold(ctx, gd, task, data, plan, k, fold_dir, meta, launch)
        if _is_main():
            write_json(done, result)
        results.append(result)
    return _finish_cv(ctx, task, meta, results)


def _stat(results: list[dict[str, Any]], get: Callable[[dict[str, Any]], Any]) -> tuple[float, float]:
    vals = [get(r) for r in results]
    vals = [v for v in vals if v is not None and v == v]
    return (mean(vals), pstdev(vals)) if vals else (float("nan"), float("nan"))


def _finish_cv(ctx: FitContext, task: Task, meta: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """meta.json (per fold + mean ± std), report.md, and the best fold's prompt as the run's adapter."""
    keys = {
        "test_loss": lambda r: r["test"].get("loss"),
        "test_acc": lambda r: r["test"].get("acc"),
        "test_acc_order0": lambda r: r["test"].get("acc_order0"),
        "test_acc_order1": lambda r: r["test"].get("acc_order1"),
        "baseline_loss": lambda r: r["baseline"].get("loss"),
        "baseline_acc": lambda r: r["baseline"].get("acc"),
        "baseline_acc_order0": lambda r: r["baseline"].get("acc_order0"),
        "baseline_acc_order1": lambda r: r["baseline"].get("acc_order1"),
        "train_loss": lambda r: r.get("train_loss"),
        "survey_before": lambda r: r["survey"]["before"]["loss"],
        "survey_after": lambda r: r["survey"]["after"]["loss"],
    }
    stats = {name: _stat(results, get) for name, get in keys.items()}
    best = min(results, key=lambda r: r["best"]["val_loss"] if r["best"]["val_loss"] is not None else float("inf"))
    best_dir = ctx.run_dir / f"fold{best['fold']}"
    prompt, _ = load_prompt(best_dir, ctx.backbone, force=True)
    summary = {
        **meta,
        "folds": results,
        "mean": {k: v[0] for k, v in stats.items()},
        "std": {k: v[1] for k, v in stats.items()},
        "best_fold": best["fold"],
        "best_loss": best["survey"]["after"]["loss"],
        "seconds": sum(r["seconds"] for r in results),
    }
    table = task.report(ctx, results, stats)
    summary["table"] = table
    if not _is_main():  # DDP: the other ranks computed the same results; rank 0 writes and prints
        return summary
    save_prompt(ctx.run_dir, prompt, summary, ctx.backbone.model.config)
    (ctx.run_dir / "report.md").write_text(table + "\n")
    print(table)
    nan_none = lambda v: None if v != v else round(v, 4)  # noqa: E731 - JSON has no NaN
    print(
        json.dumps(
            {
                "run_dir": str(ctx.run_dir),
                "best_fold": best["fold"],
                "mean_test_loss": nan_none(stats["test_loss"][0]),
                "mean_test_acc": nan_none(stats["test_acc"][0]),
                "seconds": round(summary["seconds"], 1),
            }
        )
    )
    return summary
