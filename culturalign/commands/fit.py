"""`culturalign fit`: train a soft prompt with any registered optimizer.

culturalign fit --optimizer DE                         # the paper's method, embedded model, Saudi Arabia
culturalign fit --optimizer CMAES --target USA         # a plugin, another country
culturalign fit --optimizer GD --data cdeval_ivr       # gradient descent on CDEval, 5-fold CV
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonargparse import lazy_instance

from culturalign.blackbox.de import DE
from culturalign.checkpoint.format import sanitise_run_name
from culturalign.commands.common import (
    ModelArgs,
    PromptArgs,
    SurveyArgs,
    TargetArgs,
    backbone_record,
    build_fitness,
    target_record,
)
from culturalign.commands.invocation import Invocation
from culturalign.errors import CulturalignError
from culturalign.fit.launch import LaunchArgs, make_fabric, rank_zero_run_dir
from culturalign.fit.run import FitContext, RunArgs, refuse_overlap, refuse_test_split
from culturalign.optimizers.base import Optimizer
from culturalign.survey.definition import Survey, load_survey
from culturalign.survey.fitness import Answering, SurveyFitness
from culturalign.survey.readings import Combine
from culturalign.survey.scoring import Scoring
from culturalign.targets import persona


def fit(
    optimizer: Optimizer = lazy_instance(DE),
    model: ModelArgs = ModelArgs(),
    prompt: PromptArgs = PromptArgs(),
    survey: SurveyArgs = SurveyArgs(),
    target: TargetArgs = TargetArgs(),
    scoring: Scoring = Scoring(),
    answering: Answering = Answering(),
    run: RunArgs = RunArgs(),
    launch: LaunchArgs = LaunchArgs(),
    force: bool = False,
    invocation: Invocation = Invocation(),
    **groups: Any,
) -> dict[str, Any]:
    """Train a soft prompt that aligns the backbone with a country's Hofstede profile.

    Args:
        optimizer: Registered optimizer (DE, RS, GD, or an installed plugin such as CMAES, PSO).
        model: Frozen backbone.
        prompt: Soft prompt size and initialisation.
        survey: Survey wordings optimised on and held out.
        target: Country scores to align with.
        scoring: Loss kind, constants and weights.
        answering: How the model answers the survey.
        run: Output folder, seed and resume.
        launch: Devices and processes.
        force: Resume even if the checkpoint was trained on another backbone id.
        invocation: Set by the CLI (the resolved config, and whether argv is this process's command line).
        groups: The optimizer's own option groups (`--search.*` for black-box optimizers; `--data.*`,
            `--cv.*`, `--sweep.*` for GD), as declared by its `fit` signature.
    """
    # Every wording is read once: checked here, then turned into fitnesses once the backbone is loaded.
    wordings = survey.wordings()
    reported = {n: load_survey(n) for n in dict.fromkeys([*survey.heldout, *survey.validation])}
    _check_request(optimizer, survey, wordings, reported)
    ctx = _build_context(optimizer, model, prompt, survey, target, scoring, answering, run, launch, invocation, wordings, reported)
    return optimizer.fit(ctx, launch, **groups)


def _check_request(optimizer: Optimizer, survey: SurveyArgs, wordings: list[Survey], reported: dict[str, Survey]) -> None:
    """Refuse contradictory requests before loading anything."""
    if overlap := set(survey.heldout) & set(survey.validation):
        raise CulturalignError(
            f"--survey.validation {sorted(overlap)} is also in --survey.heldout; a wording that picks "
            "the checkpoint is not held out: list it in one of the two"
        )
    trained = {w.name if w.wording == "base" else f"{survey.name}@{w.wording.removeprefix('paraphrase')}": w for w in wordings}
    refuse_test_split(trained, "trained on")
    refuse_test_split({n: reported[n] for n in survey.validation}, "used to validate and select (--survey.validation)")
    refuse_overlap(trained, reported)
    survey.training_layouts(wordings[0])  # a layout seed outside the train split is refused before loading
    if survey.validation and not optimizer.uses_validation_wordings:
        raise CulturalignError(
            f"--survey.validation {survey.validation} picks a GD checkpoint; {optimizer.name} keeps the "
            "best prompt on the training wordings: use --survey.heldout to report those wordings"
        )


def _build_context(
    optimizer: Optimizer,
    model: ModelArgs,
    prompt: PromptArgs,
    survey: SurveyArgs,
    target: TargetArgs,
    scoring: Scoring,
    answering: Answering,
    run: RunArgs,
    launch: LaunchArgs,
    invocation: Invocation,
    wordings: list[Survey],
    reported: dict[str, Survey],
) -> FitContext:
    """Run folder, backbone, init prompt and fitnesses: what every method starts from."""
    from culturalign.model.soft_prompt import init_prompt

    tgt = target.resolve()
    default_name = f"{optimizer.name.lower()}-{(tgt.iso3 or 'custom').lower()}"
    fabric = make_fabric(launch, Path(run.root).expanduser() / sanitise_run_name(run.name or default_name), invocation.from_command_line)
    run_dir = rank_zero_run_dir(fabric, run, default_name)
    if fabric.global_rank != 0:  # one set of load bars, from rank 0
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    # Each rank holds a full frozen copy on its own device (cuda:<local rank>); single-process runs
    # with accelerator auto keep --model.device.
    on_fabric_device = fabric.world_size > 1 or launch.accelerator != "auto"
    backbone = model.load(device=str(fabric.device) if on_fabric_device else None)
    init_text = prompt.init_text or persona(tgt)
    v0 = init_prompt(backbone, prompt.num_virtual_tokens, prompt.init, init_text, run.seed)
    fitness = build_fitness(backbone, survey.training_surveys(wordings), tgt, scoring, answering, survey.combination())

    def one(name: str, combine: Combine | None = None) -> SurveyFitness:
        return build_fitness(backbone, [reported[name]], tgt, scoring, answering, combine)

    meta = {
        **fitness.describe(),
        "backbone": backbone_record(backbone),
        "num_virtual_tokens": prompt.num_virtual_tokens,
        "init": {"mode": prompt.init, "text": init_text if prompt.init == "text" else None},
        "optimizer": {"name": optimizer.name, "config": optimizer.config()},
        "seed": run.seed,
        "target": target_record(tgt),
        "world_size": fabric.world_size,
        "sample": survey.sample,
    }
    return FitContext(
        backbone,
        fitness,
        v0,
        run_dir,
        meta,
        invocation.config_yaml,
        run.seed,
        run.resume,
        heldout={n: one(n) for n in survey.heldout},
        # Held-out wordings are reported in the standard reading (orders pooled, mean); validation wordings
        # pick the checkpoint, so they are read the way training reads.
        validation={n: one(n, survey.combination()) for n in survey.validation},
        fabric=fabric,
        sample=survey.sample,
    )
