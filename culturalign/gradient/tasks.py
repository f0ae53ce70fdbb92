"""`--data NAME`: a registry from dataset names to training tasks for gradient descent.

    cdeval_pdi ... cdeval_ivr   CDEval pairs of one dimension (cross-entropy, K = 2, counterbalanced)
    synthetic_vsm13             the survey's paraphrases labelled by inverse modelling (K = 5)
    vsm13                       the survey loss itself (the shared SurveyFitness with gradients)

`--data cdeval_ivr` is the CLI shorthand for `--data.name cdeval_ivr` (LightningCLI would want a
class there; a string resolved here keeps the command as users type it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from culturalign.errors import CulturalignError


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


@dataclass
class ChoiceTask:
    """Labelled multiple-choice examples (see culturalign.data.choice)."""

    name: str
    examples: list[Any]
    num_options: int
    description: dict[str, Any] = field(default_factory=dict)
    order_names: tuple[str, str] = ("order 1-2", "order 2-1")  # what `ChoiceExample.order` 0 / 1 mean, for reports


@dataclass
class SurveyTask:
    """Minimise the shared survey fitness (ctx.fitness) directly."""

    name: str
    description: dict[str, Any] = field(default_factory=dict)


Builder = Callable[[DataArgs, Any], "ChoiceTask | SurveyTask"]
DATASETS: dict[str, Builder] = {}


def register(name: str, builder: Builder) -> None:
    if name in DATASETS:
        raise CulturalignError(f"dataset {name!r} is registered twice")
    DATASETS[name] = builder


def limit_groups(examples: list[Any], limit: int | None, seed: int) -> list[Any]:
    """Keep `limit` questions (all their orders), stratified by the examples' strata."""
    from culturalign.data.folds import interleave

    if limit is None:
        return examples
    strata = {ex.group: ex.stratum for ex in examples}
    keep = set(interleave(strata, seed + 104729)[:limit])
    return [ex for ex in examples if ex.group in keep]


def _cdeval(dimension: str) -> Builder:
    def build(args: DataArgs, ctx: Any) -> ChoiceTask:
        from culturalign.data import cdeval

        rows, source = cdeval.load_rows(args.path)
        rows, quirks = cdeval.clean(rows)
        high = cdeval.preferred_high(dimension, args.prefer, ctx.fitness.target)
        make = cdeval.statements if args.format == "statement" else cdeval.examples
        exs = limit_groups(make(rows, dimension, high), args.limit, ctx.seed)
        names = ("preferred option", "other option") if args.format == "statement" else ("order 1-2", "order 2-1")
        return ChoiceTask(f"cdeval_{dimension.lower()}", exs, 2, {
            "source": source, "dimension": dimension, "prefer": args.prefer, "pole": "high" if high else "low",
            "format": args.format, "questions": len({e.group for e in exs}), "rows": len(exs), "limit": args.limit,
            **quirks}, names)
    return build


def _synthetic(args: DataArgs, ctx: Any) -> ChoiceTask:
    from culturalign.data import synthetic
    from culturalign.data.inverse import implied_indices
    from culturalign.survey.definition import load_survey

    survey = ctx.fitness.survey if any(it.paraphrases for it in ctx.fitness.survey.items) else load_survey("vsm13")
    exs, labels = synthetic.examples(survey, ctx.fitness.target, ctx.fitness.constants)
    exs = limit_groups(exs, args.limit, ctx.seed)
    return ChoiceTask("synthetic_vsm13", exs, survey.num_answers, {
        "survey": survey.origin, "labels": {str(k): v for k, v in labels.items()},
        "label_indices": implied_indices(survey, labels, ctx.fitness.constants),
        "questions": len({e.group for e in exs}), "rows": len(exs), "limit": args.limit}, ("scale as written", "scale reversed"))


def _survey(args: DataArgs, ctx: Any) -> SurveyTask:
    return SurveyTask("vsm13", {"wordings": ctx.fitness.describe()["survey"], "heldout": sorted(ctx.heldout),
                                "steps_per_epoch": args.steps_per_epoch})


for _dim in ("PDI", "IDV", "MAS", "UAI", "LTO", "IVR"):
    register(f"cdeval_{_dim.lower()}", _cdeval(_dim))
register("synthetic_vsm13", _synthetic)
register("vsm13", _survey)


def build_task(args: DataArgs, ctx: Any) -> ChoiceTask | SurveyTask:
    if args.name not in DATASETS:
        raise CulturalignError(f"--data {args.name!r} is unknown; use one of {', '.join(DATASETS)}")
    return DATASETS[args.name](args, ctx)


__all__ = ["DataArgs", "ChoiceTask", "SurveyTask", "DATASETS", "register", "build_task"]
