"""`culturalign fit`: train a soft prompt with any registered optimizer.

    culturalign fit --optimizer DE                         # the paper's method, embedded model, Saudi Arabia
    culturalign fit --optimizer CMAES --target USA         # a plugin, another country
    culturalign fit --optimizer GD --data cdeval_ivr       # gradient descent on CDEval, 5-fold CV
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from culturalign.commands.common import (
    ModelArgs,
    PromptArgs,
    SurveyArgs,
    TargetArgs,
    backbone_record,
    build_fitness,
    target_record,
)
from culturalign.checkpoint.format import sanitise_run_name
from culturalign.data.registry import DataArgs
from culturalign.errors import CulturalignError
from culturalign.fit.gradient import CVArgs, SweepArgs
from culturalign.fit.run import FitContext, RunArgs, prepare_run_dir
from jsonargparse import lazy_instance

from culturalign.optimizers.base import BlackBoxOptimizer, Optimizer
from culturalign.optimizers.de import DE
from culturalign.optimizers.space import Search
from culturalign.survey.definition import load_survey
from culturalign.survey.fitness import Answering
from culturalign.survey.scoring import Scoring

# Set by the CLI to the resolved configuration of this invocation (written as config.yaml).
CURRENT_CONFIG_YAML = ""
# Set by the CLI: False when `cli.run(argv)` was called from Python with an argv that is not this
# process's command line (tests, notebooks). Fabric starts extra ranks by re-running sys.argv, so
# launching from there would start copies of the caller (e.g. pytest), not `culturalign fit`.
ARGV_IS_COMMAND_LINE = True


@dataclass
class LaunchArgs:
    """Processes and devices (Lightning Fabric for black-box runs, Trainer for GD)."""

    accelerator: str = "auto"
    """cpu, gpu, auto."""
    devices: int = 1
    """Processes per node; > 1 splits each population (black-box) or each batch (GD) across them."""
    strategy: str = "auto"
    """auto or ddp (black-box runs never wrap the frozen LM in DDP); fsdp for GD on models larger than one GPU."""
    num_nodes: int = 1
    """Nodes (SLURM or torchrun sets the rank variables)."""


def make_fabric(launch: LaunchArgs, run_dir: Any = None) -> Any:
    """A Fabric, launched when there is more than one process (the frozen LM is never wrapped in DDP).

    Processes come from Lightning: its own launcher re-runs this command line once per extra
    local rank (`culturalign ...` or `python -m culturalign ...`), or torchrun / SLURM `srun`
    start them and Lightning reads their rank variables. Only rank 0 writes (CSVLogger is rank-0-only).
    """
    if launch.devices < 1 or launch.num_nodes < 1:
        raise CulturalignError(f"launch.devices={launch.devices}, launch.num_nodes={launch.num_nodes} must be >= 1")
    from lightning.fabric import Fabric
    from lightning.fabric.loggers import CSVLogger
    from lightning.fabric.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    loggers = [CSVLogger(str(run_dir), name="logs")] if run_dir is not None else []
    strategy = launch.strategy
    if strategy == "auto" and launch.devices * launch.num_nodes > 1:
        strategy = "ddp"
    fabric = Fabric(accelerator=launch.accelerator, devices=launch.devices, strategy=strategy,
                    num_nodes=launch.num_nodes, loggers=loggers)
    if fabric.world_size > 1 or launch.num_nodes > 1:
        launcher = getattr(fabric.strategy, "launcher", None)
        spawns = isinstance(launcher, _SubprocessScriptLauncher) and not launcher.cluster_environment.creates_processes_externally
        if spawns and not ARGV_IS_COMMAND_LINE:
            raise CulturalignError(
                f"launch.devices={launch.devices} starts the other ranks by re-running this process's command line "
                f"({' '.join(sys.argv[:2])} ...), which is not `culturalign fit`; run it from a shell "
                "(`culturalign fit ... --launch.devices N`) or under torchrun/srun"
            )
        fabric.launch()
    return fabric


def _rank_zero_run_dir(fabric: Any, run: RunArgs, default_name: str) -> Path:
    """Rank 0 creates (or, with --run.resume false, empties) the run folder; other ranks only learn its path."""
    if fabric is None or fabric.world_size == 1:
        return prepare_run_dir(run, default_name)
    outcome: tuple[str, str] = ("", "")
    if fabric.global_rank == 0:
        try:
            outcome = ("ok", str(prepare_run_dir(run, default_name)))
        except CulturalignError as err:
            outcome = ("error", str(err))
    outcome = fabric.broadcast(outcome, src=0)
    if outcome[0] == "error":
        raise CulturalignError(outcome[1])
    return Path(outcome[1])


def fit(
    optimizer: Optimizer = lazy_instance(DE),
    model: ModelArgs = ModelArgs(),
    prompt: PromptArgs = PromptArgs(),
    survey: SurveyArgs = SurveyArgs(),
    target: TargetArgs = TargetArgs(),
    scoring: Scoring = Scoring(),
    answering: Answering = Answering(),
    search: Search = Search(),
    run: RunArgs = RunArgs(),
    launch: LaunchArgs = LaunchArgs(),
    data: DataArgs = DataArgs(),
    cv: CVArgs = CVArgs(),
    sweep: SweepArgs = SweepArgs(),
    force: bool = False,
) -> dict[str, Any]:
    """Train a soft prompt that aligns the backbone with a country's Hofstede profile.

    Args:
        optimizer: Registered optimizer (DE, GD, or an installed plugin such as CMAES, PSO).
        model: Frozen backbone.
        prompt: Soft prompt size and initialisation.
        survey: Survey wordings optimised on and held out.
        target: Country scores to align with.
        scoring: Loss kind, constants and weights.
        answering: How the model answers the survey.
        search: Black-box search space, budget and stopping rules.
        run: Output folder, seed and resume.
        launch: Devices and processes.
        data: GD training data (`--data cdeval_ivr`, synthetic_vsm13, vsm13); black-box optimizers ignore it.
        cv: GD cross-validation folds.
        sweep: GD token sweep (train/eval loss against T).
        force: Resume even if the checkpoint was trained on another backbone id.
    """
    from culturalign.model.soft_prompt import init_prompt

    if overlap := set(survey.heldout) & set(survey.validation):
        raise CulturalignError(f"--survey.validation {sorted(overlap)} is also in --survey.heldout; a wording that picks "
                               "the checkpoint is not held out: list it in one of the two")
    if survey.validation and isinstance(optimizer, BlackBoxOptimizer):
        raise CulturalignError(f"--survey.validation {survey.validation} picks a GD checkpoint; {optimizer.name} keeps the "
                               "best prompt on the training wordings: use --survey.heldout to report those wordings")
    tgt = target.resolve()
    default_name = f"{optimizer.name.lower()}-{(tgt.iso3 or 'custom').lower()}"
    fabric = make_fabric(launch, Path(run.root).expanduser() / sanitise_run_name(run.name or default_name))
    run_dir = _rank_zero_run_dir(fabric, run, default_name)
    if fabric.global_rank != 0:  # one set of load bars, from rank 0
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    # Each rank holds a full frozen copy on its own device (cuda:<local rank>); single-process runs
    # with accelerator auto keep --model.device.
    on_fabric_device = fabric.world_size > 1 or launch.accelerator != "auto"
    backbone = model.load(device=str(fabric.device) if on_fabric_device else None)
    init_text = prompt.init_text or f"You are a person from {tgt.name}."
    v0 = init_prompt(backbone, prompt.num_virtual_tokens, prompt.init, init_text, run.seed)
    fitness = build_fitness(backbone, survey.wordings(), tgt, scoring, answering)
    heldout = {name: build_fitness(backbone, [load_survey(name)], tgt, scoring, answering) for name in survey.heldout}
    validation = {name: build_fitness(backbone, [load_survey(name)], tgt, scoring, answering)
                  for name in survey.validation}
    meta = {
        **fitness.describe(),
        "backbone": backbone_record(backbone),
        "num_virtual_tokens": prompt.num_virtual_tokens,
        "init": {"mode": prompt.init, "text": init_text if prompt.init == "text" else None},
        "optimizer": {"name": optimizer.name, "config": optimizer.config()},
        "seed": run.seed,
        "target": target_record(tgt),
        "world_size": 1 if fabric is None else fabric.world_size,
    }
    ctx = FitContext(backbone, fitness, v0, run_dir, meta, CURRENT_CONFIG_YAML, run.seed, run.resume, heldout,
                     validation)
    if isinstance(optimizer, BlackBoxOptimizer):
        from culturalign.fit.blackbox import run_blackbox

        return run_blackbox(ctx, optimizer, search, fabric)
    runner = getattr(optimizer, "run", None)
    if runner is None:
        raise CulturalignError(f"optimizer {optimizer.name!r} is neither black-box (ask/tell) nor has run(ctx)")
    return runner(ctx, launch=launch, data=data, cv=cv, sweep=sweep)
