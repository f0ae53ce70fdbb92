"""The one survey fitness every optimizer shares: soft prompts in, loss to a country out.

`SurveyFitness(prompts)` administers the survey (one or several wordings, optionally both scale
orders) to N candidate prompts in batched forwards and returns one loss per candidate. The
default `logits` mode reads the next-token distribution over the answer tokens "1".."5" and uses
the expected answer, which makes the loss smooth and differentiable (`grad=True` is the GD path,
same code). `generate` mode decodes a short answer and parses the first number, as the paper did.

Cost: every row (candidate x wording x order x item) shares `[V][chat template head]`; that
prefix is run once per candidate and its KV cache repeated for all of the candidate's rows. The
rows are grouped into a few buckets of similar length (`length_buckets`), so padding stays small
(padding adds ~4% to the VSM13 tokens instead of ~19% with one bucket); docs/benchmarks.md has the profile.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import torch

from culturalign.errors import CulturalignError
from culturalign.model.backbone import Backbone
from culturalign.model.chat import answer_token_ids, chat_ids
from culturalign.model.prefix_cache import decode_more, expand_cache, prefill, suffix_last_logits
from culturalign.model.soft_prompt import check_prompt_fits
from culturalign.survey.definition import Survey
from culturalign.survey.scoring import Scoring, indices, target_loss

# Padding tokens cost as much as real ones; every extra bucket costs one more (smaller) forward
# and a copy of the prefix cache. The bucketing minimises padded tokens + BUCKET_COST_TOKENS per
# bucket (per candidate): for VSM13 that is 4 buckets and +4% tokens of padding (1 bucket: +19%).
BUCKET_COST_TOKENS = 32

# A candidate whose forward produced NaN/inf gets this loss: finite so that every optimizer can
# rank it (last), large so that it is never chosen.
FAILED_LOSS = 1e9


@dataclass
class Answering:
    """How the model is asked and how its answer is read."""

    mode: Literal["logits", "generate"] = "logits"
    """logits: expected answer from the answer-token probabilities (smooth); generate: decode and parse (the paper's way)."""
    debias: bool = False
    """Also ask every item with the scale labels in reverse order and average, to cancel position bias."""
    instruction: str | None = None
    """Hard-prompt persona in the system turn, e.g. 'You are a person from Saudi Arabia.'"""
    max_new_tokens: int = 8
    """generate mode: tokens decoded per answer."""
    temperature: float = 0.0
    """generate mode: 0 = greedy; > 0 samples (seeded)."""
    seed: int = 0
    max_batch_rows: int = 192
    """Memory budget: at most this many (candidate x item) rows per forward."""

    def __post_init__(self) -> None:
        if self.mode not in ("logits", "generate"):
            raise CulturalignError(f"answering.mode={self.mode!r} is unknown; use logits or generate")
        if self.max_batch_rows < 1 or self.max_new_tokens < 1:
            raise CulturalignError("answering.max_batch_rows and answering.max_new_tokens must be >= 1")


@dataclass
class FitnessResult:
    """Per-candidate results. Shapes: N candidates, W wordings, G groups (wording x order), I items, D dims, K answers."""

    losses: torch.Tensor  # (N,)
    indices: torch.Tensor  # (N, D), mean over wordings
    answers: torch.Tensor  # (N, W, I) expected answer in the survey's own numbering
    wording_losses: torch.Tensor  # (N, W)
    distributions: torch.Tensor  # (N, G, I, K) answer probabilities as asked (reverse groups in their own order)
    invalid: torch.Tensor  # (N,) unparseable answers (generate mode)
    failed: torch.Tensor  # (N,) bool: non-finite model output
    texts: list[list[str]] = field(default_factory=list)  # generate mode: raw answers per candidate


@dataclass(frozen=True)
class _Group:
    wording: int
    reverse: bool


class SurveyFitness:
    """fitness(prompts[N, T, d]) -> FitnessResult; losses are what optimizers minimise."""

    def __init__(
        self,
        backbone: Backbone,
        surveys: Survey | Sequence[Survey],
        target: dict[str, float],
        scoring: Scoring | None = None,
        answering: Answering | None = None,
    ) -> None:
        self.backbone = backbone
        self.surveys = [surveys] if isinstance(surveys, Survey) else list(surveys)
        if not self.surveys:
            raise CulturalignError("SurveyFitness needs at least one survey wording")
        first = self.surveys[0]
        for s in self.surveys[1:]:
            if s.formulas != first.formulas or len(s.items) != len(first.items):
                raise CulturalignError(f"wording {s.origin} is not the same framework as {first.origin}")
        self.survey = first
        self.target = dict(target)
        self.scoring = scoring or Scoring()
        self.answering = answering or Answering()
        self.constants = self.scoring.constants_for(first)
        self.K = first.num_answers
        self.groups = [_Group(w, r) for w in range(len(self.surveys)) for r in ((False, True) if self.answering.debias else (False,))]
        self.answer_ids = (answer_token_ids(backbone.tokenizer, self.K) if self.answering.mode == "logits" else [])
        self._tokenise()

    # -- tokenise once -------------------------------------------------------------------------
    def _tokenise(self) -> None:
        tok = self.backbone.tokenizer
        rows = [chat_ids(tok, self.surveys[g.wording].render(item, g.reverse), self.answering.instruction)
                for g in self.groups for item in self.surveys[g.wording].items]
        # Longest common token prefix of all rows (at least one suffix token must remain per row).
        P = min(len(r) for r in rows) - 1
        for j in range(P):
            if any(r[j] != rows[0][j] for r in rows):
                P = j
                break
        self.prefix_ids = torch.tensor(rows[0][:P], dtype=torch.long)
        self.rows = rows
        self.suffixes = [r[P:] for r in rows]
        pad = tok.pad_token_id
        # chunks: (row indices, left-padded ids, mask), rows of similar length together.
        self.chunks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for part in length_buckets([len(x) for x in self.suffixes], self.answering.max_batch_rows, BUCKET_COST_TOKENS):
            S = max(len(self.suffixes[j]) for j in part)
            ids = torch.full((len(part), S), pad, dtype=torch.long)
            mask = torch.zeros((len(part), S), dtype=torch.long)
            for i, j in enumerate(part):  # left padding: the last position is always a real token
                s = self.suffixes[j]
                ids[i, S - len(s):] = torch.tensor(s)
                mask[i, S - len(s):] = 1
            self.chunks.append((torch.tensor(part, dtype=torch.long), ids, mask))

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    def tokens_per_candidate(self, num_virtual_tokens: int) -> int:
        """Tokens the default path processes per candidate (prefix once, suffixes per row)."""
        return num_virtual_tokens + len(self.prefix_ids) + sum(len(s) for s in self.suffixes)

    # -- scoring -------------------------------------------------------------------------------
    def __call__(self, prompts: torch.Tensor | None, grad: bool = False) -> FitnessResult:
        """Score N candidates. Input shape: prompts (N, T, d), (T, d) or None (no soft prompt)."""
        if prompts is not None:
            if prompts.dim() == 2:
                prompts = prompts.unsqueeze(0)
            check_prompt_fits(prompts[0], self.backbone)
            if prompts.shape[1] == 0:
                raise CulturalignError("the soft prompt has 0 virtual tokens; use num_virtual_tokens >= 1")
        N = 1 if prompts is None else prompts.shape[0]
        ctx = torch.enable_grad() if grad else torch.inference_mode()
        with ctx:
            if self.answering.mode == "logits":
                values, dists, invalid, texts = self._logits_answers(prompts, N)
            else:
                values, dists, invalid, texts = self._generated_answers(prompts, N)
            return self._summarise(values, dists, invalid, texts)

    def _candidate_chunks(self, N: int):
        R = self.num_rows
        per = max(1, self.answering.max_batch_rows // R) if R <= self.answering.max_batch_rows else 1
        for n0 in range(0, N, per):
            yield n0, min(N, n0 + per)

    def _forward_rows(self, prompts: torch.Tensor | None, n0: int, n1: int):
        """Prefill candidates n0..n1 once, then yield each bucket's last logits (nc * r, vocab).

        Row i * r + j of a bucket is candidate n0 + i, survey row rows[j]."""
        nc = n1 - n0
        p = None if prompts is None else prompts[n0:n1]
        cache, L = prefill(self.backbone, p, self.prefix_ids, nc)
        for k, (rows, ids, mask) in enumerate(self.chunks):
            r = ids.shape[0]
            # The last bucket may consume the prefill cache itself; the others work on copies.
            c = expand_cache(self.backbone, cache, r, in_place=k == len(self.chunks) - 1)
            logits, full_mask = suffix_last_logits(self.backbone, c, L, 1, ids.repeat(nc, 1), mask.repeat(nc, 1))
            yield c, logits, full_mask, rows, nc, r

    def _logits_answers(self, prompts, N):
        K = self.K
        dev = self.backbone.device
        bad = torch.zeros(N, dtype=torch.bool, device=dev)
        answer_ids = torch.tensor(self.answer_ids, device=dev)
        blocks = []  # per candidate chunk: (nc, R, K) in survey row order
        for n0, n1 in self._candidate_chunks(N):
            parts, order = [], []
            for _, logits, _, rows, nc, r in self._forward_rows(prompts, n0, n1):
                sel = logits.index_select(-1, answer_ids).float().view(nc, r, K)
                bad[n0:n1] |= ~torch.isfinite(sel).all(-1).all(-1)
                parts.append(torch.softmax(torch.nan_to_num(sel), dim=-1))
                order.append(rows)
            # Buckets hold rows out of survey order: undo the permutation (an index_select, so
            # the autograd graph of grad=True survives).
            inverse = torch.argsort(torch.cat(order)).to(dev)
            blocks.append(torch.cat(parts, dim=1).index_select(1, inverse))
        probs = torch.cat(blocks, dim=0)
        k = torch.arange(1, K + 1, dtype=probs.dtype, device=dev)
        values = (probs * k).sum(-1)
        invalid = bad.long()
        return values, probs, invalid, []

    def _generated_answers(self, prompts, N):
        R, K = self.num_rows, self.K
        dev = self.backbone.device
        values = torch.full((N, R), float("nan"), dtype=torch.float32)
        gen = torch.Generator(device=dev).manual_seed(self.answering.seed)
        texts: list[list[str]] = [[""] * R for _ in range(N)]
        bad = torch.zeros(N, dtype=torch.bool)
        for n0, n1 in self._candidate_chunks(N):
            for cache, logits, mask, rows, nc, r in self._forward_rows(prompts, n0, n1):
                bad[n0:n1] |= ~torch.isfinite(logits.float()).all(-1).view(nc, r).all(-1).cpu()
                tokens = decode_more(self.backbone, cache, torch.nan_to_num(logits), mask,
                                     self.answering.max_new_tokens, self.answering.temperature, gen)
                decoded = self.backbone.tokenizer.batch_decode(tokens, skip_special_tokens=True)
                for i, text in enumerate(decoded):
                    c, j = n0 + i // r, int(rows[i % r])
                    texts[c][j] = text
                    values[c, j] = parse_answer(text, K)
        invalid = values.isnan().sum(-1)
        dists = torch.zeros(N, R, K)
        ok = ~values.isnan()
        dists[ok] = torch.nn.functional.one_hot(values[ok].long() - 1, K).float()
        # An unparseable answer counts as the neutral midpoint and is reported, never a crash.
        values = torch.nan_to_num(values, nan=(K + 1) / 2)
        return values.to(dev), dists.to(dev), invalid.to(dev) + bad.long().to(dev), texts

    def _summarise(self, values, dists, invalid, texts) -> FitnessResult:
        N, K = values.shape[0], self.K
        I, W, G = len(self.survey.items), len(self.surveys), len(self.groups)
        values = values.view(N, G, I)
        # Reverse-order groups number the labels the other way round: answer r means K + 1 - r.
        flip = torch.tensor([g.reverse for g in self.groups], device=values.device).view(1, G, 1)
        values = torch.where(flip, K + 1 - values, values)
        per_wording = values.view(N, W, G // W, I).mean(2).double()
        idx = indices(per_wording.reshape(N * W, I), self.survey, self.constants).view(N, W, -1)
        wl = target_loss(idx.reshape(N * W, -1), self.survey.dimensions, self.target, self.scoring).view(N, W)
        losses = wl.mean(-1)
        failed = ~torch.isfinite(losses) | (invalid.to(losses.device) > 0) & (self.answering.mode == "logits")
        if failed.any():
            losses = torch.where(failed, torch.full_like(losses, FAILED_LOSS), losses)
        return FitnessResult(losses, idx.mean(1), per_wording, wl, dists.view(N, G, I, K), invalid, failed, texts)

    def require_answers(self, results: Sequence[FitnessResult], what: str) -> None:
        """Refuse to go on when no answer in any of `results` (first candidate) could be read in generate mode:
        every index would be the scale midpoint, and a search would see a flat loss."""
        if self.answering.mode != "generate" or any(int(r.invalid[0]) < self.num_rows for r in results):
            return
        sample = next((t.strip() for r in results for t in r.texts[0] if t.strip()), "")
        raise CulturalignError(
            f"{what} gave no answer 1..{self.K} to any of the {self.num_rows} questions in generate mode "
            f"({f'e.g. {sample[:40]!r}' if sample else 'every answer was empty'}); use --answering.mode logits, a larger --answering.max_new_tokens, or an instruct model"
        )

    def describe(self) -> dict[str, Any]:
        """What a result depends on, recorded beside every number."""
        return {
            "survey": [s.origin + (f"#{s.wording}" if s.wording != "base" else "") for s in self.surveys],
            "framework": self.survey.framework,
            "target": self.target,
            "constants": self.constants,
            "loss_kind": self.scoring.loss,
            "loss_weights": self.scoring.weights,
            "answering": {k: getattr(self.answering, k) for k in ("mode", "debias", "instruction")},
        }


def length_buckets(lengths: Sequence[int], max_rows: int, bucket_cost: int) -> list[list[int]]:
    """Split rows into buckets of similar length: minimise sum(rows x longest) + bucket_cost per
    bucket (exact DP over the length-sorted rows), at most `max_rows` rows per bucket.

    Returns row indices per bucket, shortest bucket first.
    """
    order = sorted(range(len(lengths)), key=lambda j: lengths[j])
    ls = [lengths[j] for j in order]
    n = len(ls)
    best, cut = [0.0] + [math.inf] * n, [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(max(0, j - max_rows), j):
            c = best[i] + (j - i) * ls[j - 1] + bucket_cost
            if c < best[j]:
                best[j], cut[j] = c, i
    out, j = [], n
    while j > 0:
        out.append(order[cut[j]:j])
        j = cut[j]
    return out[::-1]


def parse_answer(text: str, num_answers: int = 5) -> float:
    """First integer in the text if it is 1..K, else NaN (counted as invalid)."""
    m = re.search(r"\d+", text)
    if not m:
        return math.nan
    v = int(m.group())
    return float(v) if 1 <= v <= num_answers else math.nan
