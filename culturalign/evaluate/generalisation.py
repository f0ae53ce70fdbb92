"""The wordings a prompt is asked with, and administering them through the one survey fitness.

A prompt tuned on the exact 24 sentences of the base wording may not transfer. Every candidate is
therefore also asked the same items in the 5 synthetic paraphrases, in other wording files (the
structurally different `vsm13_blocks` by default, and `--survey FILE`), and with the answer scale
listed in reverse order (the labels flip, the numbers do not: a prompt that learnt "answer 1"
instead of a culture shows up there). Indices are always computed in the survey's own scale
direction, so every wording is comparable with the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from culturalign.errors import CulturalignError
from culturalign.evaluate.candidates import Candidate
from culturalign.model.backbone import Backbone
from culturalign.survey.definition import Survey, load_survey
from culturalign.survey.fitness import Answering, SurveyFitness
from culturalign.survey.scoring import Scoring, indices, target_loss
from culturalign.targets import Target

BASE = "base"
REVERSED = "reversed scale"


@dataclass
class WordingArgs:
    """Survey wordings asked (`--survey FILE` is short for `--survey.name FILE`)."""

    name: str | None = None
    """A wording file (or built-in name) asked in addition, as a generalisation row."""
    base: str = "vsm13"
    """The main wording: the Table 1(b) rows (built-in name or YAML file)."""
    paraphrases: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    """Synthetic paraphrase wordings of the base survey (1..5) asked as generalisation rows."""
    heldout: list[str] = field(default_factory=lambda: ["vsm13_blocks"])
    """Other wordings of the same framework (built-in name or file)."""
    reverse: bool = True
    """Also ask the base wording with the scale labels in reverse order."""


@dataclass(frozen=True)
class Wording:
    """One way of asking the survey. `reverse`: labels listed K..1, answers mapped back as K + 1 - r."""

    label: str
    survey: Survey
    reverse: bool = False
    kind: str = "base"  # base | paraphrase | heldout | reversed


def reversed_scales(survey: Survey) -> Survey:
    return replace(survey, scales={k: tuple(reversed(v)) for k, v in survey.scales.items()}, wording="reversed")


def build_wordings(args: WordingArgs, debias: bool = False) -> list[Wording]:
    """Base first, then paraphrases, held-out files, the user file, and the reversed scale.

    With `debias` every wording is already asked in both orders, so no separate reversed row.
    """
    base = load_survey(args.base)
    out = [Wording(BASE, base)]
    for k in args.paraphrases:
        if not 1 <= k <= 5:
            raise CulturalignError(f"--survey.paraphrases has {k}; paraphrase wordings are numbered 1..5")
        out.append(Wording(f"paraphrase {k}", base.with_paraphrase(k - 1), kind="paraphrase"))
    for name in [*args.heldout, *([args.name] if args.name else [])]:
        other = load_survey(name)
        if other.formulas != base.formulas or len(other.items) != len(base.items):
            raise CulturalignError(
                f"wording {name!r} is not a wording of {args.base!r} (other items or formulas); "
                f"pass it as --survey.base {name} to evaluate on it instead"
            )
        out.append(Wording(name, other, kind="heldout"))
    if args.reverse and not debias:
        out.append(Wording(REVERSED, reversed_scales(base), reverse=True, kind="reversed"))
    return out


class Administer:
    """Ask candidates the survey in each wording; one fitness per (wording, system turn), built once."""

    def __init__(self, backbone: Backbone, scoring: Scoring, answering: Answering) -> None:
        self.backbone, self.scoring, self.answering = backbone, scoring, answering
        self._fitness: dict[tuple[str, str | None], SurveyFitness] = {}

    def fitness(self, wording: Wording, instruction: str | None) -> SurveyFitness:
        key = (wording.label, instruction)
        if key not in self._fitness:
            ans = replace(self.answering, instruction=instruction)
            # The loss inside the fitness is not used (targets are applied afterwards, several at once).
            neutral = {d: 50.0 for d in wording.survey.dimensions}
            self._fitness[key] = SurveyFitness(self.backbone, [wording.survey], neutral, self.scoring, ans)
        return self._fitness[key]

    def __call__(self, cand: Candidate, wording: Wording) -> dict[str, Any]:
        """answers (I,) in the survey's direction, distributions (G, I, K) as asked, indices {dim: value}."""
        fit = self.fitness(wording, cand.instruction or self.answering.instruction)
        res = fit(cand.prompt)
        K = fit.K
        answers = res.answers[0, 0].double().cpu()
        if wording.reverse:
            answers = K + 1 - answers
        idx = indices(answers.unsqueeze(0), wording.survey, fit.constants)[0]
        return {
            "answers": answers,
            "distributions": res.distributions[0].float().cpu(),
            "indices": {d: float(v) for d, v in zip(wording.survey.dimensions, idx)},
            "invalid": int(res.invalid[0]),
            "failed": bool(res.failed[0]),
            "constants": fit.constants,
        }


def losses(dimension_values: dict[str, float], target: Target, scoring: Scoring) -> dict[str, float]:
    """L1 and L2 of one set of indices to one target (with the scoring's per-dimension weights)."""
    dims = tuple(dimension_values)
    x = torch.tensor([[dimension_values[d] for d in dims]], dtype=torch.float64)
    return {kind: float(target_loss(x, dims, target.scores, replace(scoring, loss=kind))[0]) for kind in ("l1", "l2")}


def mean_over(rows: Sequence[dict[str, float]]) -> float:
    return sum(rows) / len(rows) if rows else float("nan")
