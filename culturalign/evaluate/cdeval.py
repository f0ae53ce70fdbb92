"""CDEval two-option questions, asked in both option orders (the paper's Table 1(a) layout).

Every CDEval row has a question and two options; Option 1 is always the dimension's high pole
(high PDI, individualism, masculinity, high UAI, long-term, indulgence). Asked in that fixed order
a prompt that learnt "answer 1" would look like a high-pole culture, so each question is asked
twice: high pole first, then low pole first. Accuracy is the share of questions whose more likely
option is the target country's pole (high if its score is >= 50, else low), per order and averaged.

Rows come from the data module (`culturalign.data.cdeval`: same loader, cleaning and message
template as GD training on CDEval). `--cdeval.fold k` picks the test fold of the data module's
stratified folds, which is a GD run's test fold when that run used the same seed and number of
folds and no `--data.limit`. The questions are administered through the one survey fitness: a
CDEval subset is a small survey whose every item has its own two-label scale, and the fitness's
`debias` mode asks both orders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from culturalign.data import cdeval as data
from culturalign.data.folds import interleave, stratified_folds
from culturalign.errors import CulturalignError
from culturalign.evaluate.candidates import Candidate
from culturalign.model.backbone import Backbone
from culturalign.survey.definition import Item, Survey
from culturalign.survey.fitness import Answering, SurveyFitness
from culturalign.survey.scoring import Scoring
from culturalign.targets import Target

POLES = {"PDI": ("high power distance", "low power distance"), "IDV": ("individualist", "collectivist"),
         "MAS": ("masculine", "feminine"), "UAI": ("high uncertainty avoidance", "low uncertainty avoidance"),
         "LTO": ("long-term", "short-term"), "IVR": ("indulgent", "restrained")}
# Renders exactly as `culturalign.data.cdeval.TEMPLATE` (what GD prompts were trained on).
INSTRUCTION = "Answer with a single number, 1 or 2."


@dataclass
class CdevalArgs:
    """CDEval evaluation (skipped unless a local CDEval file is given)."""

    path: str | None = None
    """Local CDEval JSON/CSV (default: $CULTURALIGN_CDEVAL; unset = skip CDEval, nothing is downloaded)."""
    dimensions: list[str] = field(default_factory=lambda: ["IDV", "IVR"])
    """Dimensions evaluated (the paper's Table 1(a) reports IDV and IVR)."""
    limit: int = 40
    """Questions per dimension (domain-stratified subsample, after the fold); 0 = all."""
    fold: int | None = None
    """Evaluate on this test fold (0-based) of `folds` (a GD run's test fold); None = all questions."""
    folds: int = 5
    """Number of folds, as `--cv.folds` of the GD run."""
    seed: int = 0
    """Seeds the folds and the subsample, as `--run.seed` of the GD run."""

    def resolved_path(self) -> Path | None:
        p = self.path or os.environ.get(data.ENV)
        return Path(p).expanduser() if p else None


@dataclass(frozen=True)
class Row:
    dimension: str
    question: str
    high: str  # Option 1: the high pole
    low: str  # Option 2: the low pole
    domain: str = ""


def load_cdeval(path: str | Path) -> list[dict[str, str]]:
    """Cleaned rows of a local CDEval file (the data module's loader: list numbers stripped, duplicates dropped)."""
    if not Path(path).is_file():
        raise CulturalignError(f"--cdeval.path {str(path)!r} is not a file; pass a local CDEval.json (or set ${data.ENV})")
    rows, _ = data.load_rows(str(path))
    return data.clean(rows)[0]


def select(rows: list[dict[str, str]], args: CdevalArgs) -> dict[str, list[Row]]:
    """Per dimension: the fold's questions (if any), then a domain-stratified `limit` of them.

    Group ids are the question's index among its dimension's rows, as in `data.cdeval.examples`.
    """
    out: dict[str, list[Row]] = {}
    for dim in args.dimensions:
        d = dim.upper()
        if d not in data.DIMENSIONS:
            raise CulturalignError(f"--cdeval.dimensions has {dim!r}; use some of {', '.join(data.DIMENSIONS)}")
        mine = [r for r in rows if r["Dimension"] == d]
        if not mine:
            raise CulturalignError(f"the CDEval file has no {d} rows; check --cdeval.path")
        strata = {g: r["Domain"] for g, r in enumerate(mine)}
        if args.fold is not None:
            if not 0 <= args.fold < args.folds:
                raise CulturalignError(f"--cdeval.fold {args.fold} must be in 0..{args.folds - 1}")
            plan = stratified_folds(strata, args.folds, args.seed, 0.0)
            strata = {g: s for g, s in strata.items() if plan.fold_of[g] == args.fold}
        groups = sorted(interleave(strata, args.seed + 104729)[:args.limit] if args.limit > 0 else strata)
        out[d] = [Row(d, mine[g]["Question"], mine[g]["Option 1"], mine[g]["Option 2"], mine[g]["Domain"])
                  for g in groups]
    return out


def as_survey(rows: Sequence[Row]) -> Survey:
    """A two-answer survey, one item per question with its own scale (high pole listed first)."""
    items = tuple(Item(i + 1, r.question, f"q{i + 1}") for i, r in enumerate(rows))
    return Survey(
        name="cdeval", framework="cdeval", template="{question}\n{options}\n{instruction}",
        option_format="{number}. {label}", instruction=INSTRUCTION,
        scales={f"q{i + 1}": (r.high, r.low) for i, r in enumerate(rows)}, items=items,
        # No indices are computed from CDEval answers; the fitness needs one formula to exist.
        formulas={"POLE": ((0.0, 1, 1),)}, origin="cdeval",
    )


class CdevalEval:
    """Ask candidates a CDEval subset in both option orders."""

    def __init__(self, backbone: Backbone, subset: dict[str, list[Row]], answering: Answering) -> None:
        self.backbone, self.subset = backbone, subset
        self.answering = replace(answering, debias=True)  # group 0: high pole first; group 1: low pole first
        self.rows = [r for rows in subset.values() for r in rows]
        self.survey = as_survey(self.rows)
        self._fitness: dict[str | None, SurveyFitness] = {}

    def __call__(self, cand: Candidate) -> dict[str, Any]:
        """Per dimension: P(high pole) per order, P(answer position 1), n."""
        instr = cand.instruction or self.answering.instruction
        if instr not in self._fitness:
            self._fitness[instr] = SurveyFitness(self.backbone, [self.survey], {"POLE": 0.0}, Scoring(),
                                                 replace(self.answering, instruction=instr))
        dist = self._fitness[instr](cand.prompt).distributions[0].float().cpu()  # (2, I, 2) as asked
        high_first = dist[0, :, 0]  # P(high) when the high pole is option 1
        low_first = dist[1, :, 1]  # P(high) when the high pole is option 2
        out: dict[str, Any] = {}
        start = 0
        for dim, rows in self.subset.items():
            sl = slice(start, start + len(rows))
            start += len(rows)
            out[dim] = {"n": len(rows),
                        "p_high": [high_first[sl].tolist(), low_first[sl].tolist()],
                        "p_position1": float(torch.cat([dist[0, sl, 0], dist[1, sl, 0]]).mean())}
        return out


def accuracy(per_dim: dict[str, Any], target: Target) -> dict[str, dict[str, float]]:
    """Share of questions where the target's pole is the more likely option, per order and mean."""
    out = {}
    for dim, r in per_dim.items():
        if dim not in target.scores:
            continue
        high = target.scores[dim] >= 50
        accs = []
        for p in r["p_high"]:
            t = torch.tensor(p)
            hits = (t > 0.5) if high else (t < 0.5)
            accs.append(float(hits.float().mean()))
        out[dim] = {"pole": POLES[dim][0 if high else 1], "high_first": accs[0], "low_first": accs[1],
                    "mean": (accs[0] + accs[1]) / 2,
                    "p_high": float(torch.tensor(r["p_high"]).mean()), "p_position1": r["p_position1"], "n": r["n"]}
    return out
