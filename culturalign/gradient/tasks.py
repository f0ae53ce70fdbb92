"""`--data NAME`: a registry from dataset names to training tasks for gradient descent.

    cdeval_pdi ... cdeval_ivr   CDEval pairs of one dimension (cross-entropy, K = 2, counterbalanced)
    synthetic_vsm13             the survey's paraphrases labelled by inverse modelling (K = 5)
    vsm13                       the survey loss itself (the shared SurveyFitness with gradients)

`--data cdeval_ivr` is the CLI shorthand for `--data.name cdeval_ivr` (LightningCLI would want a
class there; a string resolved here keeps the command as users type it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol

from culturalign.data.choice import ChoiceExample, limit_groups
from culturalign.data.folds import FoldPlan
from culturalign.errors import CulturalignError
from culturalign.fit.run import FitContext, refuse_overlap, refuse_test_split
from culturalign.survey.definition import Survey
from culturalign.survey.fitness import SurveyFitness

if TYPE_CHECKING:
    import lightning as L
    import torch


@dataclass
class DataArgs:
    """Training data for `--optimizer GD` (black-box optimizers ignore it)."""

    name: str = "vsm13"
    """cdeval_pdi|idv|mas|uai|lto|ivr, synthetic_vsm13, or vsm13 (the survey loss itself)."""
    path: str | None = None
    """Local CDEval JSON/CSV (default: $CULTURALIGN_CDEVAL, else the hub dataset Rykeryuhang/CDEval)."""
    format: Literal["pair", "statement"] = "pair"
    """CDEval: pair (both options listed, answer 1 or 2, both orders) or statement (each option judged yes/no)."""
    prefer: Literal["high", "low", "target"] = "high"
    """CDEval pole to learn: high (Option 1: e.g. indulgence), low, or target (the side of 50 of --target's score)."""
    limit: int | None = None
    """Use only this many questions (a seeded, domain-stratified subsample) to keep CPU runs short."""
    val_fraction: float = 0.1
    """Share of each fold's training questions held out for validation (best-checkpoint selection)."""
    steps_per_epoch: int = 10
    """vsm13: optimizer steps (survey administrations) per epoch."""

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 2:
            raise CulturalignError(f"--data.limit {self.limit} must be >= 2 (or omitted for all questions)")
        if self.steps_per_epoch < 1:
            raise CulturalignError(f"--data.steps_per_epoch {self.steps_per_epoch} must be >= 1")


class Task(ABC):
    """What a gradient run trains on. The loop asks the task, never its type, for each part."""

    name: str
    description: dict[str, Any]

    @abstractmethod
    def check(self, ctx: FitContext) -> None:
        """Refuse options that mean nothing for this task (one line)."""

    @abstractmethod
    def fold_plan(self, ctx: FitContext, data: DataArgs, folds: int) -> FoldPlan | None:
        """The cross-validation plan; None: one fold, no split (the survey has no examples)."""

    @abstractmethod
    def datamodule(self, ctx: FitContext, plan: FoldPlan | None, fold: int, batch_size: int, data: DataArgs) -> L.LightningDataModule:
        """The loaders of one fold."""

    @abstractmethod
    def objective(self, ctx: FitContext, dm: L.LightningDataModule, wording_dropout: float) -> Objective:
        """The loss the module minimises, and what it logs."""

    @abstractmethod
    def report(self, ctx: FitContext, results: list[dict[str, Any]], stats: dict[str, tuple[float, float]]) -> str:
        """The Markdown results table (report.md)."""


@dataclass
class ChoiceTask(Task):
    """Labelled multiple-choice examples (see culturalign.data.choice), K-fold cross-validated."""

    name: str
    examples: list[ChoiceExample]
    num_options: int
    description: dict[str, Any] = field(default_factory=dict)
    order_names: tuple[str, str] = ("order 1-2", "order 2-1")  # what `ChoiceExample.order` 0 / 1 mean, for reports
    trained_wordings: dict[str, Survey] = field(default_factory=dict)  # survey wordings the examples are built from

    def check(self, ctx: FitContext) -> None:
        from culturalign.data.choice import check_answering

        check_answering(ctx.fitness.answering)
        refuse_test_split(self.trained_wordings, "trained on")
        refuse_overlap(self.trained_wordings, {n: f.survey for n, f in ctx.heldout.items()})
        if ctx.sample:
            raise CulturalignError(
                f"--survey.sample {ctx.sample} draws survey readings per step of --data vsm13; --data {self.name} "
                "trains on its own examples: drop --survey.sample"
            )
        if ctx.validation:
            raise CulturalignError(
                f"--survey.validation {sorted(ctx.validation)} applies to --data vsm13 (the survey "
                f"loss); --data {self.name} picks checkpoints on its own validation split "
                "(--data.val_fraction)"
            )

    def fold_plan(self, ctx: FitContext, data: DataArgs, folds: int) -> FoldPlan:
        from culturalign.data.folds import stratified_folds

        return stratified_folds({ex.group: ex.stratum for ex in self.examples}, folds, ctx.seed, data.val_fraction)

    def datamodule(self, ctx: FitContext, plan: FoldPlan | None, fold: int, batch_size: int, data: DataArgs) -> L.LightningDataModule:
        from culturalign.gradient.datamodules import ChoiceDataModule

        assert plan is not None  # fold_plan always returns one for labelled data
        return ChoiceDataModule(self.examples, ctx.backbone.tokenizer, plan, fold, batch_size, ctx.seed, answering=ctx.fitness.answering)

    def objective(self, ctx: FitContext, dm: L.LightningDataModule, wording_dropout: float) -> Objective:
        from culturalign.gradient.module import ChoiceObjective
        from culturalign.model.chat import answer_token_ids

        answering = ctx.fitness.answering
        ids = answer_token_ids(ctx.backbone.tokenizer, self.num_options) if answering.mode == "logits" else None
        return ChoiceObjective(ctx.backbone, dm.prefix_ids, ids, answering, self.num_options)

    def report(self, ctx: FitContext, results: list[dict[str, Any]], stats: dict[str, tuple[float, float]]) -> str:
        from culturalign.gradient.report import choice_table

        return choice_table(self.order_names, results, stats)


@dataclass
class SurveyTask(Task):
    """Minimise the shared survey fitness (ctx.fitness) directly: one fold, no examples."""

    name: str
    description: dict[str, Any] = field(default_factory=dict)

    def check(self, ctx: FitContext) -> None:
        return None

    def fold_plan(self, ctx: FitContext, data: DataArgs, folds: int) -> None:
        return None

    def datamodule(self, ctx: FitContext, plan: FoldPlan | None, fold: int, batch_size: int, data: DataArgs) -> L.LightningDataModule:
        from culturalign.gradient.datamodules import SurveyDataModule

        return SurveyDataModule(data.steps_per_epoch)

    def objective(self, ctx: FitContext, dm: L.LightningDataModule, wording_dropout: float) -> Objective:
        from culturalign.gradient.module import SurveyObjective

        if wording_dropout and ctx.sample:
            raise CulturalignError(
                f"--optimizer.wording_dropout {wording_dropout} and --survey.sample {ctx.sample} both thin the "
                "readings of a step; use one of them"
            )
        return SurveyObjective(ctx.fitness, wording_dropout, ctx.seed, ctx.validation, ctx.sample)

    def report(self, ctx: FitContext, results: list[dict[str, Any]], stats: dict[str, tuple[float, float]]) -> str:
        from culturalign.gradient.report import survey_table

        return survey_table(ctx, results[0])


class Objective(Protocol):
    """What SoftPromptModule minimises: loss(prompt, batch, stage, step) -> (loss, values to log)."""

    num_classes: int | None

    def loss(self, prompt: torch.Tensor, batch: Any, stage: str, step: int) -> tuple[torch.Tensor, dict[str, Any]]: ...


# A builder takes the values it needs: the options, the training fitness (its surveys, target and
# constants), the seed, and the names of the held-out wordings.
Builder = Callable[[DataArgs, SurveyFitness, int, list[str]], Task]
DATASETS: dict[str, Builder] = {}


def register(name: str, builder: Builder) -> None:
    if name in DATASETS:
        raise CulturalignError(f"dataset {name!r} is registered twice")
    DATASETS[name] = builder


def _cdeval(dimension: str) -> Builder:
    def build(args: DataArgs, fitness: SurveyFitness, seed: int, heldout: list[str]) -> ChoiceTask:
        from culturalign.data import cdeval

        rows, source = cdeval.load_rows(args.path)
        rows, quirks = cdeval.clean(rows)
        high = cdeval.preferred_high(dimension, args.prefer, fitness.target)
        make = cdeval.statements if args.format == "statement" else cdeval.examples
        exs = limit_groups(make(rows, dimension, high), args.limit, seed)
        names = ("preferred option", "other option") if args.format == "statement" else ("order 1-2", "order 2-1")
        return ChoiceTask(
            f"cdeval_{dimension.lower()}",
            exs,
            2,
            {
                "source": source,
                "dimension": dimension,
                "prefer": args.prefer,
                "pole": "high" if high else "low",
                "format": args.format,
                "questions": len({e.group for e in exs}),
                "rows": len(exs),
                "limit": args.limit,
                **quirks,
            },
            names,
        )

    return build


def _synthetic(args: DataArgs, fitness: SurveyFitness, seed: int, heldout: list[str]) -> ChoiceTask:
    from culturalign.data import synthetic
    from culturalign.data.inverse import implied_indices
    from culturalign.survey.definition import load_survey

    survey = fitness.survey if any(it.paraphrases for it in fitness.survey.items) else load_survey("vsm13")
    exs, labels = synthetic.examples(survey, fitness.target, fitness.constants)
    exs = limit_groups(exs, args.limit, seed)
    return ChoiceTask(
        "synthetic_vsm13",
        exs,
        survey.num_answers,
        {
            "survey": survey.origin,
            "labels": {str(k): v for k, v in labels.items()},
            "label_indices": implied_indices(survey, labels, fitness.constants),
            "questions": len({e.group for e in exs}),
            "rows": len(exs),
            "limit": args.limit,
        },
        ("scale as written", "scale reversed"),
        {
            f"--data synthetic_vsm13 ({survey.name}@{k})": survey.with_paraphrase(k - 1)
            for k in range(1, min(len(it.paraphrases) for it in survey.items) + 1)
        },
    )


def _survey(args: DataArgs, fitness: SurveyFitness, seed: int, heldout: list[str]) -> SurveyTask:
    return SurveyTask(
        "vsm13", {"wordings": fitness.describe()["survey"], "heldout": sorted(heldout), "steps_per_epoch": args.steps_per_epoch}
    )


for _dim in ("PDI", "IDV", "MAS", "UAI", "LTO", "IVR"):
    register(f"cdeval_{_dim.lower()}", _cdeval(_dim))
register("synthetic_vsm13", _synthetic)
register("vsm13", _survey)


def build_task(args: DataArgs, fitness: SurveyFitness, seed: int, heldout: list[str]) -> Task:
    if args.name not in DATASETS:
        raise CulturalignError(f"--data {args.name!r} is unknown; use one of {', '.join(DATASETS)}")
    return DATASETS[args.name](args, fitness, seed, heldout)


__all__ = ["DataArgs", "Task", "Objective", "ChoiceTask", "SurveyTask", "DATASETS", "register", "build_task"]
