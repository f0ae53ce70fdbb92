"""CDEval two-option questions, asked in both option orders (the paper's Table 1(a) layout).

Every CDEval row has a question and two options; Option 1 is always the dimension's high pole
(high PDI, individualism, masculinity, high UAI, long-term, indulgence). Asked in that fixed order
a prompt that learnt "answer 1" would look like a high-pole culture, so each question is asked
twice: high pole first, then low pole first. Accuracy is the share of questions whose more likely
option is the target country's pole (high if its score is >= 50, else low), per order and averaged.

Questions are rendered, selected and scored by the same functions as GD training on CDEval
(`culturalign.data.cdeval.examples`, `culturalign.data.choice.select_questions` and
`option_logits`), in the `--answering.mode` (logits or cloze; generate mode reads the
option-number probabilities, as logits does) with `--answering.calibrate`, so
`--cdeval.fold k --cdeval.folds K --cdeval.seed S --cdeval.data_limit N` sees exactly the test fold k of a GD run made with
`--cv.folds K --run.seed S --data.limit N`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from culturalign.data import cdeval as data
from culturalign.data.choice import ChoiceExample, ChoiceRow, collate, limit_groups, option_logits, select_questions, tokenise_rows
from culturalign.errors import CulturalignError
from culturalign.evaluate.candidates import Candidate
from culturalign.model.backbone import Backbone
from culturalign.model.chat import answer_token_ids
from culturalign.survey.fitness import Answering
from culturalign.targets import Target

POLES = {
    "PDI": ("high power distance", "low power distance"),
    "IDV": ("individualist", "collectivist"),
    "MAS": ("masculine", "feminine"),
    "UAI": ("high uncertainty avoidance", "low uncertainty avoidance"),
    "LTO": ("long-term", "short-term"),
    "IVR": ("indulgent", "restrained"),
}


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
    data_limit: int | None = None
    """As `--data.limit` of the GD run: the questions it kept before making folds (None = all)."""
    seed: int = 0
    """Seeds the folds and the subsample, as `--run.seed` of the GD run."""
    batch_rows: int = 32
    """Rows (question x order) per forward. CDEval rows are long and, in cloze mode, every option's
    logits are kept: 32 rows peaked at 1.83 GiB and ran faster than the survey's 192 (5.49 GiB) on
    2 CPU cores (docs/gradient.md); raise it on a GPU."""

    def __post_init__(self) -> None:
        # Checked when the command line is read, before the model is loaded.
        if self.batch_rows < 1:
            raise CulturalignError(f"--cdeval.batch_rows must be >= 1, got {self.batch_rows}")

    def resolved_path(self) -> Path | None:
        p = self.path or os.environ.get(data.ENV)
        return Path(p).expanduser() if p else None


def load_cdeval(path: str | Path) -> list[dict[str, str]]:
    """Cleaned rows of a local CDEval file (the data module's loader: list numbers stripped, duplicates dropped)."""
    if not Path(path).is_file():
        raise CulturalignError(f"--cdeval.path {str(path)!r} is not a file; pass a local CDEval.json (or set ${data.ENV})")
    rows, _ = data.load_rows(str(path))
    return data.clean(rows)[0]


def select(rows: list[dict[str, str]], args: CdevalArgs) -> dict[str, list[ChoiceExample]]:
    """Per dimension: both option orders of the chosen questions (label = the high pole's number).

    The questions are chosen by the one selection GD uses (`data.choice.select_questions`: `--data.limit`,
    then the test fold), then a domain-stratified `limit` of them for speed."""
    out: dict[str, list[ChoiceExample]] = {}
    for dim in args.dimensions:
        d = dim.upper()
        if d not in data.DIMENSIONS:
            raise CulturalignError(f"--cdeval.dimensions has {dim!r}; use some of {', '.join(data.DIMENSIONS)}")
        exs = data.examples(rows, d, True)
        if not exs:
            raise CulturalignError(f"the CDEval file has no {d} rows; check --cdeval.path")
        exs = select_questions(exs, args.data_limit, args.seed, args.folds, args.fold)
        out[d] = limit_groups(exs, args.limit or None, args.seed)
    return out


class CdevalEval:
    """Ask candidates a CDEval subset in both option orders, scored exactly as GD training scores it."""

    def __init__(self, backbone: Backbone, subset: dict[str, list[ChoiceExample]], answering: Answering, batch_rows: int) -> None:
        self.batch_rows = batch_rows
        # Decoding two options gives a coin flip, not a probability: generate mode reads them as logits does.
        self.answering = replace(answering, mode="logits") if answering.mode == "generate" else answering
        self.backbone, self.subset = backbone, subset
        self.examples = [ex for exs in subset.values() for ex in exs]
        ids = answer_token_ids(backbone.tokenizer, 2) if self.answering.mode == "logits" else None
        self.answer_ids = None if ids is None else torch.tensor(ids, dtype=torch.long)
        tok = backbone.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self._rows: dict[str | None, tuple[torch.Tensor, list[ChoiceRow]]] = {}

    def describe(self) -> dict[str, Any]:
        """How the options were scored (generate mode is read as logits)."""
        a = self.answering
        cloze = {"show_options": a.show_options, "length_norm": a.length_norm} if a.mode == "cloze" else {}
        return {"mode": a.mode, "calibrate": a.calibrate, **cloze}

    @torch.no_grad()
    def probabilities(self, prompt: torch.Tensor | None, instruction: str | None) -> torch.Tensor:
        """(rows, 2) option probabilities of every example, in micro-batches of `batch_rows`."""
        if instruction not in self._rows:
            self._rows[instruction] = tokenise_rows(self.backbone.tokenizer, self.examples, instruction, self.answering)
        prefix, rows = self._rows[instruction]
        p = None if prompt is None else prompt.to(self.backbone.device, self.backbone.dtype)
        step = self.batch_rows
        parts = []
        for a in range(0, len(rows), step):
            batch = collate(rows[a : a + step], self.pad_id)
            batch = {k: v.to(self.backbone.device) for k, v in batch.items()}
            logits = option_logits(self.backbone, p, prefix.to(self.backbone.device), batch, self.answer_ids, self.answering)
            parts.append(logits.softmax(-1))
        return torch.cat(parts).cpu()

    def __call__(self, cand: Candidate) -> dict[str, Any]:
        """Per dimension: P(high pole) per order, P(answer position 1), n."""
        probs = self.probabilities(cand.prompt, cand.instruction or self.answering.instruction)
        out: dict[str, Any] = {}
        start = 0
        for dim, exs in self.subset.items():
            mine = probs[start : start + len(exs)]
            start += len(exs)
            # order 0: high pole listed first; order 1: listed second. label = the high pole's number.
            p_high = [[float(mine[i, ex.label]) for i, ex in enumerate(exs) if ex.order == o] for o in (0, 1)]
            out[dim] = {"n": len({ex.group for ex in exs}), "p_high": p_high, "p_position1": float(mine[:, 0].mean())}
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
        out[dim] = {
            "pole": POLES[dim][0 if high else 1],
            "high_first": accs[0],
            "low_first": accs[1],
            "mean": (accs[0] + accs[1]) / 2,
            "p_high": float(torch.tensor(r["p_high"]).mean()),
            "p_position1": r["p_position1"],
            "n": r["n"],
        }
    return out
