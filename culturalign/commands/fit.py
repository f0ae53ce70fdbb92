"""`culturalign fit`: train a soft prompt with any registered optimizer.

    culturalign fit --optimizer DE                         # the paper's method, embedded model, Saudi Arabia
    culturalign fit --optimizer CMAES --target USA         # a plugin, another country
    culturalign fit --optimizer GD --data cdeval_ivr       # gradient descent on CDEval, 5-fold CV
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from culturalign.errors import CulturalignError
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
    """A launched Fabric, or None for the plain single-process case."""
    if launch.devices < 1 or launch.num_nodes < 1:
        raise CulturalignError(f"launch.devices={launch.devices}, launch.num_nodes={launch.num_nodes} must be >= 1")
    from lightning.fabric import Fabric
    from lightning.fabric.loggers import CSVLogger

    loggers = [CSVLogger(str(run_dir), name="logs")] if run_dir is not None else []
    strategy = launch.strategy
    if strategy == "auto" and launch.devices * launch.num_nodes > 1:
        strategy = "ddp"
    fabric = Fabric(accelerator=launch.accelerator, devices=launch.devices, strategy=strategy,
                    num_nodes=launch.num_nodes, loggers=loggers)
    if fabric.world_size > 1 or launch.num_nodes > 1:
        fabric.launch()
    return fabric


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
        force: Resume even if the checkpoint was trained on another backbone id.
    """
    from culturalign.model.soft_prompt import init_prompt

    tgt = target.resolve()
    default_name = f"{optimizer.name.lower()}-{(tgt.iso3 or 'custom').lower()}"
    run_dir = prepare_run_dir(run, default_name)
    fabric = make_fabric(launch, run_dir)
    backbone = model.load(device=str(fabric.device) if fabric is not None and launch.accelerator != "auto" else None)
    init_text = prompt.init_text or f"You are a person from {tgt.name}."
    v0 = init_prompt(backbone, prompt.num_virtual_tokens, prompt.init, init_text, run.seed)
    fitness = build_fitness(backbone, survey.wordings(), tgt, scoring, answering)
    heldout = {name: build_fitness(backbone, [load_survey(name)], tgt, scoring, answering) for name in survey.heldout}
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
    ctx = FitContext(backbone, fitness, v0, run_dir, meta, CURRENT_CONFIG_YAML, run.seed, run.resume, heldout)
    if isinstance(optimizer, BlackBoxOptimizer):
        from culturalign.fit.blackbox import run_blackbox

        return run_blackbox(ctx, optimizer, search, fabric)
    runner = getattr(optimizer, "run", None)
    if runner is None:
        raise CulturalignError(f"optimizer {optimizer.name!r} is neither black-box (ask/tell) nor has run(ctx)")
    return runner(ctx, launch=launch)
