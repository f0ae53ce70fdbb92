"""Seeded layouts: the same items rendered with another template, option format, instruction,
label wording, answer order and persona line, plus the train / development / test split of layouts.

A prompt that only holds in the package's own layout has fitted a questionnaire, not a culture
(NOTES.md §7), so training and reporting draw layouts from here:

    layouts = sample_layouts(8, seed=0)            # layouts 0..7, all in the train split
    surveys = [apply(load_survey("vsm13"), L) for L in layouts]

Layout k of `sample_layouts(n, seed)` is `layout_from_seed(seed + k)`: a layout is named by its
seed, and the seed decides its split (`layout_split`). Label wordings keep each scale's direction:
position k of every variant means the same pole as position k of the survey's own labels.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal, Sequence

from culturalign.errors import CulturalignError
from culturalign.survey.definition import Survey, load_survey

Split = Literal["train", "development", "test"]
# Disjoint seed ranges. Nothing is chosen on the test range (nor on vsm13_blocks): it is read once,
# for the report.
SPLITS: dict[str, range] = {"train": range(0, 10_000), "development": range(10_000, 20_000), "test": range(20_000, 2**31)}

# {intro} leads when present; items without an intro lose the blank lines to Survey.render's strip().
TEMPLATES = (
    "{intro}\n\n{question}\n{options}\n{instruction}",
    "{intro}\n\n{question}\n\n{options}\n\n{instruction}",
    "{intro}\n\n{instruction}\n\n{question}\n{options}",
    "{intro}\n\nQuestion: {question}\nOptions:\n{options}\n{instruction}",
    "{intro}\n\n{question}\n\nChoices:\n{options}\n\n{instruction}",
    "{intro}\n\n{instruction}\nQ: {question}\n{options}",
)
# Numbers only: the logits reading scores the answer-number tokens, so letters would not be read.
OPTION_FORMATS = ("{number}. {label}", "({number}) {label}", "{number}) {label}", "{number} - {label}")
INSTRUCTIONS = (
    "Answer with a single number from 1 to {K}.",
    "Give only the number of your answer (1-{K}).",
    "Please respond with one number between 1 and {K}.",
    "Choose one option and write its number, 1 to {K}.",
    "Your answer (a number from 1 to {K}):",
)
PERSONAS = (
    "",
    "You are taking part in an anonymous survey about work and life.",
    "Please answer the following survey question honestly.",
    "This is a questionnaire; there are no right or wrong answers.",
)
# Extra label wordings per VSM13 scale, pole 1 first, as in the survey's own `scales`. Used only
# when a survey's own labels for that scale are vsm13's (so the direction is known to match).
# Written for this package; none is vsm13_blocks' wording (the test layout is never a source).
LABEL_VARIANTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "importance": (
        ("Of utmost importance", "Of great importance", "Of some importance", "Of minor importance", "Of no importance"),
        ("Essential", "Very important", "Somewhat important", "Not very important", "Not important at all"),
        ("Matters a great deal", "Matters a lot", "Matters somewhat", "Matters a little", "Does not matter"),
    ),
    "frequency": (
        ("All the time", "Most of the time", "Some of the time", "Rarely", "At no time"),
        ("Every time", "Often", "Occasionally", "Hardly ever", "Not once"),
        ("Constantly", "Frequently", "Now and then", "Infrequently", "Never at all"),
    ),
    "frequency_yes_no": (
        ("Yes, all the time", "Yes, most of the time", "Some of the time", "No, rarely", "No, at no time"),
        ("Yes, every time", "Yes, often", "Occasionally", "No, hardly ever", "No, not once"),
        ("Yes, constantly", "Yes, frequently", "Now and then", "No, infrequently", "No, not at all"),
    ),
    "health": (
        ("Excellent", "Good", "Average", "Bad", "Very bad"),
        ("Very healthy", "Healthy", "So-so", "Unhealthy", "Very unhealthy"),
        ("Very good health", "Good health", "Fair health", "Poor health", "Very poor health"),
    ),
    "pride": (
        ("Extremely proud", "Quite proud", "A little proud", "Hardly proud", "Not at all proud"),
        ("Very proud indeed", "Proud", "Moderately proud", "Slightly proud", "Not proud"),
        ("Deeply proud", "Rather proud", "Partly proud", "Barely proud", "Without any pride"),
    ),
    "frequency_never_first": (
        ("At no time", "Rarely", "Some of the time", "Most of the time", "All the time"),
        ("Not once", "Hardly ever", "Occasionally", "Often", "Every time"),
        ("Never at all", "Infrequently", "Now and then", "Frequently", "Constantly"),
    ),
    "agreement": (
        ("Completely agree", "Mostly agree", "Undecided", "Mostly disagree", "Completely disagree"),
        ("Agree strongly", "Agree somewhat", "Neutral", "Disagree somewhat", "Disagree strongly"),
        ("Fully agree", "Tend to agree", "Neither agree nor disagree", "Tend to disagree", "Fully disagree"),
    ),
}


@dataclass(frozen=True)
class Layout:
    """One way of laying the survey out. `labels`: (scale, variant) pairs, variant 0 = the survey's own
    labels, v >= 1 = LABEL_VARIANTS[scale][v - 1]. `reverse`: options listed from the last pole."""

    seed: int
    template: str
    option_format: str
    instruction: str
    labels: tuple[tuple[str, int], ...]
    reverse: bool
    persona: str

    def rendering(self) -> tuple:
        """Everything that changes what the model reads (the seed is only a name)."""
        return (self.template, self.option_format, self.instruction, self.labels, self.reverse, self.persona)


def layout_split(seed: int) -> Split:
    """The split a layout seed belongs to: train 0-9999, development 10000-19999, test 20000 and above."""
    for name, seeds in SPLITS.items():
        if seed in seeds:
            return name  # type: ignore[return-value]
    raise CulturalignError(f"layout seed {seed} is outside 0..{2**31 - 1}; use train 0-9999, development 10000-19999 or test 20000+")


def layout_from_seed(seed: int, survey: Survey | None = None) -> Layout:
    """The layout named `seed` (deterministic; independent of Python's hash seed). A survey file's own
    `layouts:` options replace the tables above for the parts it names."""
    layout_split(seed)  # refuses a seed outside every split
    own = survey.layouts if survey is not None else {}
    rng = random.Random(seed)
    return Layout(
        seed=seed,
        template=rng.choice(own.get("templates", TEMPLATES)),
        option_format=rng.choice(own.get("option_formats", OPTION_FORMATS)),
        instruction=rng.choice(own.get("instructions", INSTRUCTIONS)),
        labels=tuple((scale, rng.randrange(len(v) + 1)) for scale, v in sorted(LABEL_VARIANTS.items())),
        reverse=rng.random() < 0.5,
        persona=rng.choice(own.get("personas", PERSONAS)),
    )


def sample_layouts(n: int, seed: int, survey: Survey | None = None) -> list[Layout]:
    """Layouts seed, seed+1, ..., seed+n-1, all in one split (a range that crosses a split is refused)."""
    if n < 0:
        raise CulturalignError(f"number of layouts must be >= 0, got {n}")
    if n == 0:
        return []
    first, last = layout_split(seed), layout_split(seed + n - 1)
    if first != last:
        raise CulturalignError(
            f"layouts {seed}..{seed + n - 1} cross from the {first} split into the {last} "
            f"split; pick a seed with all {n} layouts in one range (train 0-9999, "
            f"development 10000-19999, test 20000+)"
        )
    return [layout_from_seed(seed + k, survey) for k in range(n)]


def apply(survey: Survey, layout: Layout) -> Survey:
    """`survey` rendered in `layout`: same items, formulas and pole order of every scale.

    The answer order is carried by `Survey.reverse_order`, which SurveyFitness undoes when scoring,
    so answers always come back in the survey's own numbering."""
    variants, vsm13 = dict(layout.labels), _vsm13_scales()
    scales = {}
    for name, own in survey.scales.items():
        v = variants.get(name, 0)
        # Substitute only labels whose direction is known: the survey's own must be vsm13's.
        scales[name] = LABEL_VARIANTS[name][v - 1] if v and own == vsm13.get(name) else own
    K = survey.num_answers
    # {K} in an instruction is the number of answers; other braces are left alone.
    template = layout.template if any(it.intro for it in survey.items) else layout.template.replace("{intro}\n\n", "")
    template = f"{layout.persona}\n\n{template}" if layout.persona else template
    return replace(
        survey,
        template=template,
        option_format=layout.option_format,
        instruction=layout.instruction.replace("{K}", str(K)),
        scales=scales,
        reverse_order=layout.reverse,
        wording=f"{survey.wording}+layout{layout.seed}",
    )


@lru_cache(maxsize=1)
def _vsm13_scales() -> dict[str, tuple[str, ...]]:
    return load_survey("vsm13").scales


def check_no_overlap(training: Sequence[Layout], reported: Sequence[Layout], reported_as: str = "held out") -> None:
    """Refuse when a layout trained on is also reported as `reported_as` (same seed or same rendering)."""
    seen = {L.rendering(): L.seed for L in training}
    for L in reported:
        if L.seed in {t.seed for t in training} or L.rendering() in seen:
            other = seen.get(L.rendering(), L.seed)
            raise CulturalignError(
                f"layout {L.seed} ({layout_split(L.seed)}) is reported as {reported_as} but "
                f"training uses layout {other} ({layout_split(other)}) with the same rendering; "
                f"draw the reported layouts from the development or test seed range"
            )


def check_layout_roles(training: Sequence[Layout], validation: Sequence[Layout] = (), reported: Sequence[Layout] = ()) -> None:
    """What a fit over layouts calls before anything is written: a test-range layout is only ever
    reported (never trained on, never used to validate or select), and no layout trained on is also
    validated or reported on (docs/robustness.md)."""
    for role, layouts in (("trained on", training), ("used to validate and select", validation)):
        for L in layouts:
            if layout_split(L.seed) == "test":
                raise CulturalignError(
                    f"layout {L.seed} is in the test range (20000+) and would be {role}; test layouts are "
                    "only reported: train on seeds 0-9999 and validate on 10000-19999"
                )
    check_no_overlap(training, validation, "validation")
    check_no_overlap(training, reported, "held out")
