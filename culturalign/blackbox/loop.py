"""The black-box loop shared by DE and every plugin: ask, score, tell, checkpoint, repeat.

Not a Lightning Trainer (a loop without an optimizer step never advances `global_step`), but
Lightning Fabric for processes and loggers: rank 0 asks, the population is broadcast, every rank
scores whole micro-batches of it with the shared fitness, losses are all-gathered, rank 0 tells
and checkpoints. Micro-batch boundaries are the same for any number of ranks, so 1 and N
processes give bit-identical losses, and so identical runs.

With `--survey.sample K` each generation is scored on K readings drawn from the training pool by
(run seed, generation) (common random numbers: every candidate on the same draw, redrawn each
generation). Losses of different generations are then on different draws, so the incumbent is
re-scored with each generation's candidates and kept unless one of them beats it on that draw; the
final report scores the last incumbent on the whole pool.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from culturalign.blackbox.protocol import BlackBoxOptimizer, SearchSetup
from culturalign.blackbox.replay import AskTellRecord
from culturalign.blackbox.space import Projection, Search
from culturalign.checkpoint.format import CONFIG, load_last, save_last, save_prompt
from culturalign.errors import CulturalignError
from culturalign.fit.run import FitContext, format_table, result_summary
from culturalign.model.heap import reused_heap
from culturalign.plots import convergence, dimension_bars
from culturalign.survey.fitness import FitnessResult, SurveyFitness
from culturalign.survey.readings import draw_readings

if TYPE_CHECKING:
    from lightning.fabric import Fabric

METRICS_CSV = "logs/metrics.csv"  # written by the run's Fabric CSVLogger (see culturalign.fit.launch)
HISTORY_COLUMNS = ("generation", "evaluations", "best_loss", "mean_loss", "min_loss", "seconds")


class _StopFlag:
    """SIGINT/SIGTERM finish the generation in flight, save, and exit cleanly; a second SIGINT aborts."""

    def __init__(self, verbose: bool = True) -> None:
        self.signal: int | None = None
        self.verbose = verbose  # only rank 0 talks; every rank of a job usually gets the same signal
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        if self.verbose:
            print(
                f"\n{signal.Signals(signum).name} received: finishing this generation, saving, then stopping "
                "(Ctrl-C again to abort; the last checkpoint stays valid)",
                flush=True,
            )

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def score_population(
    ctx: FitContext, prompts: torch.Tensor, fabric: Fabric | None = None, fitness: SurveyFitness | None = None
) -> np.ndarray:
    """Losses of N prompts under `fitness` (default ctx.fitness), split over ranks by whole micro-batches
    (same boundaries on any world size)."""
    fitness = fitness or ctx.fitness
    N = prompts.shape[0]
    per = max(1, fitness.answering.max_batch_rows // fitness.num_rows)
    chunks = [(a, min(N, a + per)) for a in range(0, N, per)]
    world = 1 if fabric is None else fabric.world_size
    rank = 0 if fabric is None else fabric.global_rank
    mine = chunks[rank::world]
    slots = -(-len(chunks) // world) * per  # equal shapes for all_gather: pad with NaN
    out = torch.full((slots,), float("nan"), dtype=torch.float64)
    pos = 0
    for a, b in mine:
        out[pos : pos + b - a] = fitness(prompts[a:b]).losses.cpu()
        pos += per
    if world == 1:
        gathered = out.unsqueeze(0)
    else:
        gathered = fabric.all_gather(out).cpu().view(world, slots)
    losses = np.full(N, np.nan)
    for r in range(world):
        pos = 0
        for a, b in chunks[r::world]:
            losses[a:b] = gathered[r, pos : pos + b - a].numpy()
            pos += per
    return losses


@dataclass
class _Progress:
    """What a run carries from generation to generation, and what resume restores."""

    best_loss: float
    best_prompt: torch.Tensor
    history: list[list[float]] = field(default_factory=list)
    evaluations: int = 0
    elapsed_before: float = 0.0  # seconds spent before this process (resume)
    record: AskTellRecord = field(default_factory=AskTellRecord)  # the optimizer's whole state; never pickled


def _resume(ctx: FitContext, optimizer: BlackBoxOptimizer, progress: _Progress, fabric: Fabric | None) -> bool:
    """Restore `progress` from <run>/last and replay the optimizer's record; False when there is nothing to resume."""
    resumed = load_last(ctx.run_dir) if ctx.resume in ("auto", True) else None
    if resumed is None:
        return False
    prompt, meta, state = resumed
    if meta.get("optimizer", {}).get("name") != optimizer.name:
        raise CulturalignError(
            f"{ctx.run_dir} holds a {meta.get('optimizer', {}).get('name')} run, not {optimizer.name}; "
            "pass another --run.name or --run.resume false"
        )
    replay_start = time.time()
    progress.record = AskTellRecord.from_state(state, ctx.run_dir / "last")
    progress.record.replay(optimizer, ctx.run_dir)
    progress.history = state["history"].tolist()
    progress.best_prompt, progress.best_loss = prompt, float(meta["best_loss"])
    progress.evaluations, progress.elapsed_before = int(meta["evaluations"]), float(meta["seconds"])
    if fabric is None or fabric.global_rank == 0:
        print(
            f"resuming {ctx.run_dir} at generation {len(progress.history)} ({progress.evaluations} evaluations, "
            f"best loss {progress.best_loss:.3f}; optimizer replayed in {time.time() - replay_start:.1f} s)"
        )
        for row in progress.history:  # a new logger starts a new metrics file: carry the finished generations over
            _log_generation(fabric, row)
    return True


def _stop_reason(search: Search, progress: _Progress, started: float, stop: _StopFlag) -> str | None:
    """Rank 0's decision before asking the next generation."""
    if search.max_time is not None and progress.elapsed_before + time.time() - started >= search.max_time:
        return "max_time"
    if search.target_loss is not None and progress.best_loss <= search.target_loss:
        return "target_loss"
    return "interrupted" if stop.signal is not None else None


def generation_readings(ctx: FitContext, generation: int) -> list[int] | None:
    """The readings generation g (1-based) is scored on: None for the whole training pool, or `ctx.sample`
    readings drawn from it by (run seed, g) alone, so every rank and a resumed run score it on the same draw."""
    if not ctx.sample:
        return None
    return draw_readings(ctx.fitness.num_readings, ctx.seed, generation, sample=ctx.sample)


def generation_fitness(ctx: FitContext, generation: int) -> SurveyFitness:
    """The fitness generation g is scored with (see generation_readings)."""
    readings = generation_readings(ctx, generation)
    return ctx.fitness if readings is None else ctx.fitness.subset(readings)


def no_prompt_loss(ctx: FitContext, baseline: FitnessResult, generation: int) -> float:
    """The no-prompt loss on generation g's readings, read from the start-up scoring of the whole pool (no
    model call). A sampled generation's losses are on its draw: dividing them by the whole pool's no-prompt
    loss mixes two readings, and with few readings a draw can sit well below or above the pool's mean."""
    readings = generation_readings(ctx, generation)
    loss = baseline.losses if readings is None else ctx.fitness.loss_on(baseline, readings)
    return max(float(loss[0]), 1e-9)


def _score_generation(
    ctx: FitContext, projection: Projection, z: np.ndarray, progress: _Progress, fabric: Fabric | None, started: float
) -> tuple[np.ndarray, bool]:
    """Score one generation on every rank; update best and history. Returns (losses, improved)."""
    prompts = projection.to_prompts(z)
    fitness = generation_fitness(ctx, len(progress.history) + 1)
    if fitness is ctx.fitness:
        losses = score_population(ctx, prompts, fabric)
    else:
        # Common random numbers: every candidate is scored on this generation's draw, and so is the
        # incumbent, in the same batch; its loss on an earlier draw is not comparable, so a candidate
        # replaces it only by beating it here. best_loss is the incumbent's loss on this draw.
        scored = score_population(ctx, torch.cat([prompts, progress.best_prompt.unsqueeze(0).to(prompts)]), fabric, fitness)
        losses, progress.best_loss = scored[:-1], float(scored[-1])
    if not np.isfinite(losses).all():
        raise CulturalignError("fitness returned NaN for some candidates; this is a bug, please report it")
    progress.evaluations += len(losses)
    i = int(np.argmin(losses))
    improved = bool(losses[i] < progress.best_loss)
    if improved:
        progress.best_loss, progress.best_prompt = float(losses[i]), prompts[i].clone()
    seconds = progress.elapsed_before + time.time() - started
    progress.history.append(
        [len(progress.history) + 1, progress.evaluations, progress.best_loss, float(losses.mean()), float(losses[i]), seconds]
    )
    return losses, improved


def _save_generation(ctx: FitContext, progress: _Progress, meta_base: dict[str, Any], improved: bool, fabric: Fabric | None) -> None:
    """Rank 0: best prompt when it improved, the resume point every generation, one metrics row."""
    h = progress.history[-1]
    meta = {
        **meta_base,
        "step": len(progress.history),
        "evaluations": progress.evaluations,
        "best_loss": progress.best_loss,
        "seconds": h[5],
        "optimizer": ctx.meta["optimizer"],
    }
    if improved:
        save_prompt(ctx.run_dir, progress.best_prompt, meta, ctx.backbone.model.config)
    save_last(
        ctx.run_dir,
        progress.best_prompt,
        meta,
        {**progress.record.state(), "history": torch.tensor(progress.history, dtype=torch.float64)},
        ctx.backbone.model.config,
    )
    _log_generation(fabric, h)


def _time_left(search: Search, seconds: float) -> dict[str, str]:
    """The search time left under --search.max_time as m:ss: when time binds, the bar's own estimate
    (from the evaluation budget) says hours where the run has minutes."""
    if search.max_time is None:
        return {}
    minutes, secs = divmod(max(0, round(search.max_time - seconds)), 60)
    return {"left": f"{minutes}:{secs:02d}"}


@reused_heap()  # every generation allocates the same activation blocks again: keep them (culturalign.model.heap)
def run_blackbox(ctx: FitContext, optimizer: BlackBoxOptimizer, search: Search) -> dict[str, Any]:
    """Run (or resume) a black-box fit on ctx.fabric's ranks; returns the final summary written to meta.json."""
    from tqdm.auto import tqdm

    fabric = ctx.fabric
    is_main = fabric is None or fabric.global_rank == 0
    emb_std = float(ctx.backbone.model.get_input_embeddings().weight.float().std())
    projection = Projection(search, ctx.v0, emb_std, ctx.seed)
    optimizer.setup(SearchSetup(dim=projection.dim, budget=search.budget, sigma=search.sigma, seed=ctx.seed))
    baseline, init = ctx.fitness(None), ctx.fitness(ctx.v0)
    ctx.fitness.require_answers([baseline, init], f"{ctx.backbone.model_id} (with and without the init prompt)")
    progress = _Progress(float(init.losses[0]), ctx.v0.clone())
    resumed = _resume(ctx, optimizer, progress, fabric)
    meta_base = {
        **ctx.meta,
        "baseline": result_summary(ctx.fitness, baseline),
        "init_prompt": result_summary(ctx.fitness, init),
        "search": {"space": search.space, "dim": projection.dim, "sigma": search.sigma, "budget": search.budget, "sample": ctx.sample},
    }
    if is_main:
        (ctx.run_dir / CONFIG).write_text(ctx.config_yaml)
        if not resumed:
            save_prompt(
                ctx.run_dir,
                progress.best_prompt,
                {**meta_base, "step": 0, "best_loss": progress.best_loss, "evaluations": 0},
                ctx.backbone.model.config,
            )
    started, stop_reason = time.time(), "budget"
    resumed_at, last_seconds = len(progress.history), progress.elapsed_before
    # A context manager closes the bar on any exit, so an error line never lands on a half-drawn bar.
    with (
        _StopFlag(verbose=is_main) as stop,
        tqdm(
            total=search.budget, initial=progress.evaluations, desc=optimizer.name, unit="eval", disable=not is_main, dynamic_ncols=True
        ) as bar,
    ):
        while progress.evaluations < search.budget:
            # Clocks and signals differ between ranks: rank 0 decides, and sends its decision with
            # the population, so every rank leaves the loop after the same generation.
            reason = _stop_reason(search, progress, started, stop) if is_main else None
            z = optimizer.ask() if is_main and reason is None else None
            if fabric is not None and fabric.world_size > 1:
                reason, z = fabric.broadcast((reason, z), src=0)
            if reason is not None:
                stop_reason = reason
                break
            losses, improved = _score_generation(ctx, projection, z, progress, fabric, started)
            seconds = progress.history[-1][5]
            if is_main:
                optimizer.tell(z, losses)
                progress.record.add(z, losses)
                _save_generation(ctx, progress, meta_base, improved, fabric)
                bar.update(len(losses))
                bar.set_postfix(
                    gen=len(progress.history),
                    best=f"{progress.best_loss:.2f}",
                    ratio=f"{progress.best_loss / no_prompt_loss(ctx, baseline, len(progress.history)):.2f}x",
                    mean=f"{losses.mean():.2f}",
                    evals_s=f"{len(losses) / max(1e-9, seconds - last_seconds):.2f}",
                    **_time_left(search, seconds),
                    **optimizer.progress(),
                )
            last_seconds = seconds
    if stop_reason == "budget" and resumed and len(progress.history) == resumed_at:
        stop_reason = "already complete"
    summary = _finish(ctx, progress, meta_base, baseline, init, stop_reason, optimizer.progress()) if is_main else {}
    if stop_reason == "interrupted":  # on ranks > 0 without a signal of their own: a clean exit
        raise SystemExit(130 if stop.signal == signal.SIGINT else 0)
    return summary


def _finish(
    ctx: FitContext,
    progress: _Progress,
    meta_base: dict[str, Any],
    baseline: Any,
    init: Any,
    stop_reason: str,
    counters: dict[str, int],
) -> dict[str, Any]:
    """Final report: rescore the best prompt, write meta.json, table, plots; `counters` are the optimizer's (restarts)."""
    best_prompt, history, evaluations = progress.best_prompt, progress.history, progress.evaluations
    best = ctx.fitness(best_prompt)
    rows = {
        "no prompt": result_summary(ctx.fitness, baseline),
        "init prompt": result_summary(ctx.fitness, init),
        "best": result_summary(ctx.fitness, best),
    }
    reported: list[str] = []  # keys of the reported-wording rows (named by split: `test vsm13_blocks`)
    for name, fit in ctx.heldout.items():
        label = ctx.reported_label(name)
        for key, prompt in ((f"best on {label}", best_prompt), (f"no prompt on {label}", None)):
            rows[key] = result_summary(fit, fit(prompt))
            reported.append(key)
    for name, fit in _other_order(ctx).items():  # the training wording, but answer positions it was not fitted on
        rows[f"best, {name}"] = result_summary(fit, fit(best_prompt))
        rows[f"no prompt, {name}"] = result_summary(fit, fit(None))
    dims = ctx.fitness.survey.dimensions
    table = format_table(rows, dims, ctx.fitness.target, ctx.fitness.scoring.loss)
    seconds = history[-1][5] if history else 0.0
    summary = {
        **meta_base,
        "step": len(history),
        "evaluations": evaluations,
        "best_loss": rows["best"]["loss"],
        "best": rows["best"],
        "heldout": {k: rows[k] for k in reported},
        "both_orders": {k: v for k, v in rows.items() if "both answer orders" in k},
        "seconds": seconds,
        "stop_reason": stop_reason,
        **counters,
    }
    save_prompt(ctx.run_dir, best_prompt, summary, ctx.backbone.model.config)
    (ctx.run_dir / "report.md").write_text(table + "\n")
    if history:
        evals = [h[1] for h in history]
        curves = {ctx.meta["optimizer"]["name"]: (evals, [h[2] for h in history])}
        if ctx.sample:  # each point is the incumbent on its generation's draw: show no prompt on the same draw
            curves["no prompt, same draw"] = (evals, [no_prompt_loss(ctx, baseline, int(h[0])) for h in history])
        convergence(
            curves,
            ctx.run_dir / "convergence.png",
            ylabel="best loss on the generation's draw" if ctx.sample else "best loss",
            baselines={"no prompt, whole pool" if ctx.sample else "no prompt": rows["no prompt"]["loss"]},
            title=f"{ctx.meta['optimizer']['name']} on {ctx.meta['backbone']['model_id']}",
        )
    dimension_bars(
        dims,
        {k: [v["dimensions"][d] for d in dims] for k, v in rows.items() if k not in reported and "answer orders" not in k},
        ctx.fitness.target,
        ctx.run_dir / "dimensions.png",
        title=f"target: {ctx.meta['target']['name']}",
    )
    print(table)
    ratio = rows["best"]["loss"] / max(rows["no prompt"]["loss"], 1e-9)
    print(
        json.dumps(
            {
                "run_dir": str(ctx.run_dir),
                "best_loss": rows["best"]["loss"],
                "no_prompt_loss": rows["no prompt"]["loss"],
                "ratio": round(ratio, 4),
                "init_loss": rows["init prompt"]["loss"],
                "evaluations": evaluations,
                "seconds": round(seconds, 1),
                "stop_reason": stop_reason,
                **counters,
            }
        )
    )
    return summary


def _other_order(ctx: FitContext) -> dict[str, SurveyFitness]:
    """The training wordings read with both answer orders averaged, when the run asked one order only: what
    the prompt does once the option positions move (reported beside the held-out wordings, never optimised)."""
    f = ctx.fitness
    if f.answering.debias:
        return {}
    both = SurveyFitness(ctx.backbone, f.surveys, f.target, f.scoring, replace(f.answering, debias=True))
    return {"training wordings read in both answer orders": both}


def _log_generation(fabric: Fabric | None, row: list[float]) -> None:
    """One row per generation in the run's one metrics log (logs/metrics.csv and TensorBoard), flushed now
    so that an interrupted run keeps every generation it finished."""
    if fabric is None or not fabric.loggers:
        return
    fabric.log_dict({k: float(v) for k, v in zip(HISTORY_COLUMNS, row)}, step=int(row[0]))
    for logger in fabric.loggers:
        logger.save()


def read_history(run_dir: Path) -> list[dict[str, float]]:
    """The per-generation metrics of a black-box run (logs/metrics.csv), one dict per generation."""
    import csv

    path = Path(run_dir) / METRICS_CSV
    if not path.is_file():
        return []
    with open(path) as f:
        rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
    by_generation = {int(r["generation"]): r for r in rows if "generation" in r}  # a resumed run may repeat one
    return [by_generation[g] for g in sorted(by_generation)]


__all__ = ["run_blackbox", "score_population", "generation_fitness", "generation_readings", "no_prompt_loss", "read_history"]
