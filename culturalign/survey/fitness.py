"""The one survey fitness every optimizer shares: soft prompts in, loss to a country out.

`SurveyFitness(prompts)` administers the survey (one or several wordings, optionally both scale
orders) to N candidate prompts in batched forwards and returns one loss per candidate. The
default `logits` mode reads the next-token distribution over the answer tokens "1".."5" and uses
the expected answer, which makes the loss smooth and differentiable (`grad=True` is the GD path,
same code). `cloze` mode scores each label's own text as the assistant's reply (the form OLMES
uses for models below ~1B parameters, which cannot use option numbers), also smooth and
differentiable. `generate` mode decodes a short answer and parses the first number, as the paper
did; an unreadable answer counts against the candidate. `calibrate` divides out each rendering's
answer prior, measured on a content-free item in the same batch.

Cost: every row (candidate x wording x order x item) shares `[V][chat template head]`; that
prefix is run once per candidate and its KV cache repeated for all of the candidate's rows. The
rows are grouped into a few buckets of similar length (`length_buckets`), so padding stays small
(padding adds ~4% to the VSM13 tokens instead of ~19% with one bucket); docs/benchmarks.md has the profile.
In cloze mode the K label texts of a row are fed after that row, on its own KV cache, one label
at a time (the cache is cropped back in between), so no row is run more than once.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from culturalign.errors import CulturalignError
from culturalign.model.backbone import Backbone
from culturalign.model.batching import common_prefix_len, pad_rows
from culturalign.model.chat import answer_token_ids, chat_ids
from culturalign.model.heap import release_free_heap
from culturalign.model.prefix_cache import continuation_scores, decode_more, expand_cache, prefill, suffix_last_logits
from culturalign.model.soft_prompt import check_prompt_fits
from culturalign.survey.definition import Item, Survey
from culturalign.survey.readings import Combine
from culturalign.survey.scoring import Scoring, indices, target_loss

# Padding tokens cost as much as real ones; every extra bucket costs one more (smaller) forward
# and a copy of the prefix cache. The bucketing minimises padded tokens + BUCKET_COST_TOKENS per
# bucket (per candidate): for VSM13 that is 4 buckets and +4% tokens of padding (1 bucket: +19%).
BUCKET_COST_TOKENS = 32

# A sampled subset (a GD step's or a generation's draw of readings) pads its rows to a multiple of
# this many tokens. Why: on CPUs with bf16, PyTorch's oneDNN kernels keep a primitive (and its
# buffers) per input shape, up to ~1000 of them; each fresh draw brings new row lengths, so a bf16
# GD run on the robust config grew ~40-48 MB a step (2.36 GiB peak by its end). Padding to multiples
# of 16 leaves a handful of lengths: the growth stopped, step times alike (docs/robustness.md, "Where
# the memory goes"). The full pool keeps exact lengths: its shapes never change.
SAMPLED_PAD_MULTIPLE = 16

# A candidate whose forward produced NaN/inf gets this loss: finite so that every optimizer can
# rank it (last), large so that it is never chosen.
FAILED_LOSS = 1e9


@dataclass
class Answering:
    """How the model is asked and how its answer is read."""

    # Plain `str`, checked in __post_init__: a Literal would make the parser answer an unknown mode
    # with a usage screen instead of one line naming the value and the choices.
    mode: str = "logits"
    """logits, cloze or generate. logits: expected answer from the answer-number token probabilities (smooth); cloze: from the
    likelihood of each label's own text as the reply (smooth; for small models, OLMES); generate:
    decode and parse a number (the paper's way)."""
    debias: bool = False
    """Also ask every item with the scale labels in reverse order and average, to cancel position bias."""
    show_options: bool = True
    """cloze mode: list the labels (without numbers) under the question; false asks the question alone."""
    length_norm: str = "mean"
    """mean or sum. cloze mode: score a label by the mean (per-token) or the sum of its tokens' log-probs."""
    calibrate: bool = False
    """Divide out each rendering's answer prior, measured per candidate on a content-free item
    ("N/A"), before the expected answer (contextual calibration, Zhao et al. 2021). logits/cloze."""
    instruction: str | None = None
    """Hard-prompt persona in the system turn, e.g. 'You are a person from Saudi Arabia.'"""
    max_new_tokens: int = 8
    """generate mode: tokens decoded per answer."""
    temperature: float = 0.0
    """generate mode: 0 = greedy; > 0 samples (seeded)."""
    seed: int = 0
    max_batch_rows: int = 192
    """Memory budget: at most this many (candidate x item) rows per forward."""
    max_grad_rows: int = 0
    """Memory budget with gradients (GD on the survey): when a call has more rows than this, the rows run in
    micro-batches of at most this many whose activations are recomputed in the backward pass (one more
    forward), so peak memory no longer grows with the number of rows. 0 = no limit (one graph for all rows)."""

    def __post_init__(self) -> None:
        if self.mode not in ("logits", "generate", "cloze"):
            raise CulturalignError(f"answering.mode={self.mode!r} is unknown; use logits, cloze or generate")
        if self.length_norm not in ("mean", "sum"):
            raise CulturalignError(f"answering.length_norm={self.length_norm!r} is unknown; use mean or sum")
        if self.calibrate and self.mode == "generate":
            raise CulturalignError(
                "answering.calibrate needs answer probabilities, which generate mode does not have; use --answering.mode logits or cloze"
            )
        if self.max_batch_rows < 1 or self.max_new_tokens < 1:
            raise CulturalignError("answering.max_batch_rows and answering.max_new_tokens must be >= 1")
        if self.max_grad_rows < 0:
            raise CulturalignError(f"answering.max_grad_rows={self.max_grad_rows} must be >= 0 (0 = no limit)")

    @property
    def style(self) -> str:
        """How an item is rendered for this mode (see Survey.render)."""
        if self.mode != "cloze":
            return "numbered"
        return "listed" if self.show_options else "bare"


@dataclass
class FitnessResult:
    """Per-candidate results. Shapes: N candidates, W wordings (a wording in a layout counts as one), G groups
    (wording x answer order), I items, D dims, K answers."""

    losses: torch.Tensor  # (N,) the per-reading losses combined (see culturalign.survey.readings)
    indices: torch.Tensor  # (N, D), mean over wordings
    answers: torch.Tensor  # (N, W, I) expected answer in the survey's own numbering, answer orders averaged
    wording_losses: torch.Tensor  # (N, W) loss of each wording, its answer orders averaged (the pooled readings)
    distributions: torch.Tensor  # (N, G, I, K) answer probabilities as asked (reverse groups in their own order)
    invalid: torch.Tensor  # (N,) unparseable answers (generate mode)
    failed: torch.Tensor  # (N,) bool: non-finite model output
    group_losses: torch.Tensor  # (N, G) loss of each group read alone: indices from that order's answers only
    texts: list[list[str]] = field(default_factory=list)  # generate mode: raw answers per candidate


@dataclass(frozen=True)
class _Group:
    wording: int
    reverse: bool


# The content-free item of contextual calibration (Zhao et al. 2021): the rendering, scale and order
# of a real item with nothing to answer about, so what the model answers is its prior.
CONTENT_FREE = "N/A"


class SurveyFitness:
    """fitness(prompts[N, T, d]) -> FitnessResult; losses are what optimizers minimise."""

    _pad_multiple = 1  # rows padded to a multiple of this many tokens (SAMPLED_PAD_MULTIPLE in subsets)

    def __init__(
        self,
        backbone: Backbone,
        surveys: Survey | Sequence[Survey],
        target: dict[str, float],
        scoring: Scoring | None = None,
        answering: Answering | None = None,
        combine: Combine | None = None,
    ) -> None:
        self.backbone = backbone
        self.surveys = [surveys] if isinstance(surveys, Survey) else list(surveys)
        if not self.surveys:
            raise CulturalignError("SurveyFitness needs at least one survey wording")
        first = self.surveys[0]
        for s in self.surveys[1:]:
            if s.formulas != first.formulas or len(s.items) != len(first.items):
                raise CulturalignError(f"wording {s.origin} is not the same framework as {first.origin}")
            if s.num_answers != first.num_answers:
                raise CulturalignError(
                    f"wording {s.origin} has {s.num_answers} answers per scale but {first.origin} "
                    f"has {first.num_answers}; give every wording the same number of labels"
                )
        self.survey = first
        self.target = dict(target)
        self.scoring = scoring or Scoring()
        self.answering = answering or Answering()
        self.constants = self.scoring.constants_for(first)
        self.K = first.num_answers
        self.combine = combine or Combine()
        self.groups = [_Group(w, r) for w in range(len(self.surveys)) for r in ((False, True) if self.answering.debias else (False,))]
        self.answer_ids = answer_token_ids(backbone.tokenizer, self.K) if self.answering.mode == "logits" else []
        self._subsets: dict[tuple[int, ...], SurveyFitness] = {}
        self._tokenise()

    # -- readings: what one loss is computed from (culturalign.survey.readings) -----------------
    @property
    def readings(self) -> list[list[int]]:
        """The groups of each reading: a wording's answer orders together (pooled), or each group alone."""
        if self.combine.reading == "per_order":
            return [[g] for g in range(len(self.groups))]
        return [[g for g, grp in enumerate(self.groups) if grp.wording == w] for w in range(len(self.surveys))]

    @property
    def num_readings(self) -> int:
        return len(self.readings)

    def reading_names(self) -> list[str]:
        """One name per reading, e.g. `vsm13#paraphrase1+layout3` or, per order, `vsm13 (reverse)`."""
        names = [s.origin.split(":")[-1] + (f"#{s.wording}" if s.wording != "base" else "") for s in self.surveys]
        if self.combine.reading != "per_order":
            return names
        return [names[g.wording] + (" (reverse)" if self.surveys[g.wording].flips(g.reverse) else " (forward)") for g in self.groups]

    def subset(self, readings: Sequence[int]) -> SurveyFitness:
        """The same fitness over some of its readings (a training sample): same backbone, target, answering
        and combination, only the drawn renderings tokenised and asked. Cached per selection."""
        keep = sorted(set(readings))
        if keep == list(range(self.num_readings)):
            return self
        if not keep or keep[0] < 0 or keep[-1] >= self.num_readings:
            raise CulturalignError(f"readings {list(readings)} are not a non-empty selection of 0..{self.num_readings - 1}")
        key = tuple(keep)
        if key not in self._subsets:
            groups = [self.groups[g] for r in keep for g in self.readings[r]]
            wordings = sorted({g.wording for g in groups})
            sub = copy.copy(self)
            sub.surveys = [self.surveys[w] for w in wordings]
            sub.groups = [_Group(wordings.index(g.wording), g.reverse) for g in groups]
            sub._subsets = {}
            sub._pad_multiple = SAMPLED_PAD_MULTIPLE
            sub._tokenise()
            if len(self._subsets) >= 64:  # a step draws a fresh selection: keep the cache small
                self._subsets.clear()
            self._subsets[key] = sub
        return self._subsets[key]

    def loss_on(self, result: FitnessResult, readings: Sequence[int]) -> torch.Tensor:
        """(N,) the loss `result`'s candidates would have on `subset(readings)`, from the per-reading losses
        already in `result` (scored by this whole pool): no model call. What a sampled run compares a
        draw's loss with, e.g. the no-prompt loss on the same draw."""
        per_reading = self._per_reading(result.wording_losses, result.group_losses)
        return self.combine(per_reading[:, sorted(set(readings))])

    def _per_reading(self, wording_losses: torch.Tensor, group_losses: torch.Tensor) -> torch.Tensor:
        """The columns the combination reads: each order's own loss under per_order (so one order
        cannot hide behind the other), else each wording's loss with its orders averaged."""
        return group_losses if self.combine.reading == "per_order" else wording_losses

    # -- tokenise once -------------------------------------------------------------------------
    def _row_specs(self) -> tuple[list[tuple[_Group, Item]], list[int]]:
        """Every (group, item) row asked, then the content-free rows of calibration; and for each
        real row, the index of its content-free row (one per group x scale: the rendering's prior)."""
        real = [(g, item) for g in self.groups for item in self.surveys[g.wording].items]
        if not self.answering.calibrate:
            return real, []
        free: dict[tuple[_Group, str], int] = {}
        specs = list(real)
        for g, item in real:
            if (g, item.scale) not in free:
                free[(g, item.scale)] = len(specs)
                specs.append((g, replace(item, text=CONTENT_FREE, intro=CONTENT_FREE if item.intro else "")))
        return specs, [free[(g, item.scale)] for g, item in real]

    def _label_ids(self, survey: Survey, item: Item, reverse: bool) -> list[list[int]]:
        """cloze: token ids of each label as the assistant's reply, in the order the labels are listed."""
        out = []
        for label in survey.labels(item, reverse):
            ids = self.backbone.tokenizer(label, add_special_tokens=False)["input_ids"]
            if not ids:
                raise CulturalignError(
                    f"scale {item.scale!r} label {label!r} in {survey.origin} is no tokens for this "
                    "tokenizer; cloze mode needs a non-empty label text, fix the scale in the survey file"
                )
            out.append(list(ids))
        return out

    def _tokenise(self) -> None:
        tok = self.backbone.tokenizer
        specs, self.calib_index = self._row_specs()
        style = self.answering.style
        rows = [chat_ids(tok, self.surveys[g.wording].render(item, g.reverse, style), self.answering.instruction) for g, item in specs]
        self.labels = (
            [self._label_ids(self.surveys[g.wording], item, g.reverse) for g, item in specs] if self.answering.mode == "cloze" else []
        )
        P = common_prefix_len(rows)  # at least one suffix token remains per row
        self.prefix_ids = torch.tensor(rows[0][:P], dtype=torch.long)
        self.rows = rows
        self.num_items_rows = len(self.groups) * len(self.survey.items)
        self.suffixes = [r[P:] for r in rows]
        # chunks: (row indices, left-padded ids, mask), rows of similar length together.
        self.chunks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.chunk_labels: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        for part in length_buckets([len(x) for x in self.suffixes], self.answering.max_batch_rows, BUCKET_COST_TOKENS):
            ids, mask = pad_rows([self.suffixes[j] for j in part], tok.pad_token_id, left=True, multiple=self._pad_multiple)
            self.chunks.append((torch.tensor(part, dtype=torch.long), ids, mask))
            if self.labels:  # label k of every row of the bucket, right-padded: fed after the row
                self.chunk_labels.append([pad_rows([self.labels[j][k] for j in part], tok.pad_token_id, left=False) for k in range(self.K)])

    @property
    def num_rows(self) -> int:
        """Rows run per candidate (content-free calibration rows included): the batching unit."""
        return len(self.rows)

    def tokens_per_candidate(self, num_virtual_tokens: int) -> int:
        """Tokens the default path processes per candidate (prefix once, suffixes per row, cloze labels)."""
        labels = sum(len(ids) - 1 for row in self.labels for ids in row)
        return num_virtual_tokens + len(self.prefix_ids) + sum(len(s) for s in self.suffixes) + labels

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
            if self.answering.mode == "generate":
                values, dists, invalid, texts = self._generated_answers(prompts, N)
            else:
                values, dists, invalid, texts = self._probability_answers(prompts, N)
            return self._summarise(values, dists, invalid, texts)

    @property
    def _rows_keys_unread(self) -> bool:
        """Only cloze labels and generation read a row's own keys after the row: the logits mode attends to
        the prefix without keeping each bucket's keys (its largest allocation otherwise)."""
        return self.answering.mode == "logits"

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
            c = expand_cache(self.backbone, cache, r, in_place=k == len(self.chunks) - 1, read_only=self._rows_keys_unread)
            logits, full_mask = suffix_last_logits(self.backbone, c, L, 1, ids.repeat(nc, 1), mask.repeat(nc, 1))
            yield k, c, logits, full_mask, rows, nc, r
            del c, logits, full_mask  # before the next bucket's forward, not after it

    def _answer_scores(self, k: int, cache, logits: torch.Tensor, mask: torch.Tensor, nc: int, piece: slice = slice(None)) -> torch.Tensor:
        """Log-probabilities over the K answers of each row of bucket k (or of its rows `piece`): (nc * r, K), as listed.

        logits: the answer-number tokens' logits, renormalised over the K numbers. cloze: each
        label text's log-likelihood as the reply (after the row, sharing its cache), summed or
        averaged over its tokens, renormalised over the K labels.
        """
        if self.answering.mode == "logits":
            answer_ids = torch.tensor(self.answer_ids, device=logits.device)
            return logits.index_select(-1, answer_ids).float().log_softmax(-1)
        labels = [(ids[piece].repeat(nc, 1), lmask[piece].repeat(nc, 1)) for ids, lmask in self.chunk_labels[k]]
        return continuation_scores(self.backbone, cache, mask, logits, labels, self.answering.length_norm).log_softmax(-1)

    def _scored_buckets(self, prompts: torch.Tensor | None, n0: int, n1: int):
        """Yield (row indices, (nc, r, K) answer log-probabilities) for candidates n0..n1, bucket by bucket.

        With gradients and more rows than `answering.max_grad_rows`, each piece of a bucket is an
        activation checkpoint: its forward keeps only its K log-probabilities per row and the backward
        pass recomputes it, one piece at a time. The gradient is the same (each piece's share of the
        loss gradient flows back through its own recomputed graph, into the shared prefix and V), and
        peak memory is one piece's graph plus the prefix cache, whatever the number of rows.
        """
        nc, limit = n1 - n0, self.answering.max_grad_rows
        if not (torch.is_grad_enabled() and prompts is not None and limit and nc * self.num_rows > limit):
            for k, cache, logits, mask, rows, nc, r in self._forward_rows(prompts, n0, n1):
                scores = self._answer_scores(k, cache, logits, mask, nc).view(nc, r, self.K)
                del cache, logits, mask  # so one bucket's cache is alive at a time, not two
                yield rows, scores
            return
        from torch.utils.checkpoint import checkpoint

        cache, L = prefill(self.backbone, prompts[n0:n1], self.prefix_ids, nc)
        step = max(1, limit // nc)
        for k, (rows, _, _) in enumerate(self.chunks):
            for a in range(0, len(rows), step):
                piece = slice(a, a + step)
                lp = checkpoint(self._piece_scores, cache, L, k, piece, nc, use_reentrant=False)
                yield rows[piece], lp.view(nc, -1, self.K)

    def _piece_scores(self, cache, L: int, k: int, piece: slice, nc: int) -> torch.Tensor:
        """(nc * r, K) answer log-probabilities of rows `piece` of bucket k after the prefix cache, which is
        copied, never extended in place: the backward pass recomputes this from the same cache.

        The previous piece's freed activations go back to the OS first (`release_free_heap`): left in
        malloc's arenas they fragment, and a step's peak grows with the number of pieces rather than
        with one piece's need."""
        release_free_heap()
        _, ids, mask = self.chunks[k]
        ids, mask = ids[piece], mask[piece]
        c = expand_cache(self.backbone, cache, ids.shape[0], read_only=self._rows_keys_unread)
        logits, full_mask = suffix_last_logits(self.backbone, c, L, 1, ids.repeat(nc, 1), mask.repeat(nc, 1))
        return self._answer_scores(k, c, logits, full_mask, nc, piece)

    def _row_log_probs(self, prompts, N) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, rows, K) answer log-probabilities in row order, and (N,) bool: non-finite output."""
        dev = self.backbone.device
        bad = torch.zeros(N, dtype=torch.bool, device=dev)
        blocks = []  # per candidate chunk: (nc, R, K) in row order
        for n0, n1 in self._candidate_chunks(N):
            parts, order = [], []
            for rows, lp in self._scored_buckets(prompts, n0, n1):
                bad[n0:n1] |= ~torch.isfinite(lp).all(-1).all(-1)
                parts.append(torch.nan_to_num(lp, nan=0.0, posinf=0.0, neginf=-1e4))
                order.append(rows)
            # Buckets hold rows out of survey order: undo the permutation (an index_select, so
            # the autograd graph of grad=True survives).
            inverse = torch.argsort(torch.cat(order)).to(dev)
            blocks.append(torch.cat(parts, dim=1).index_select(1, inverse))
        return torch.cat(blocks, dim=0), bad

    def _probability_answers(self, prompts, N):
        logp, bad = self._row_log_probs(prompts, N)
        R = self.num_items_rows
        scores = logp[:, :R]
        if self.answering.calibrate:
            # p(k | item) / p(k | content-free item of the same rendering), renormalised: the
            # prior of this candidate (its soft prompt moves the prior too) divided out.
            scores = scores - logp.index_select(1, torch.tensor(self.calib_index, device=logp.device))
        probs = torch.softmax(scores, dim=-1)
        k = torch.arange(1, self.K + 1, dtype=probs.dtype, device=probs.device)
        values = (probs * k).sum(-1)
        return values, probs, bad.long(), []

    def _generate_texts(self, prompts, N) -> tuple[list[list[str]], torch.Tensor]:
        """Decoded answers (N lists of R texts, row order) and (N,) bool: non-finite output."""
        R = self.num_rows
        dev = self.backbone.device
        gen = torch.Generator(device=dev).manual_seed(self.answering.seed)
        texts: list[list[str]] = [[""] * R for _ in range(N)]
        bad = torch.zeros(N, dtype=torch.bool)
        for n0, n1 in self._candidate_chunks(N):
            for _, cache, logits, mask, rows, nc, r in self._forward_rows(prompts, n0, n1):
                bad[n0:n1] |= ~torch.isfinite(logits.float()).all(-1).view(nc, r).all(-1).cpu()
                tokens = decode_more(
                    self.backbone, cache, torch.nan_to_num(logits), mask, self.answering.max_new_tokens, self.answering.temperature, gen
                )
                decoded = self.backbone.tokenizer.batch_decode(tokens, skip_special_tokens=True)
                for i, text in enumerate(decoded):
                    texts[n0 + i // r][int(rows[i % r])] = text
                del cache, logits, mask  # one bucket's cache alive at a time
        return texts, bad

    def _generated_answers(self, prompts, N):
        K = self.K
        dev = self.backbone.device
        texts, bad = self._generate_texts(prompts, N)
        values = torch.tensor([[parse_answer(t, K) for t in row] for row in texts], dtype=torch.float32).view(N, -1)
        invalid = values.isnan().sum(-1)
        dists = torch.zeros(*values.shape, K)
        ok = ~values.isnan()
        dists[ok] = torch.nn.functional.one_hot(values[ok].long() - 1, K).float()
        # Unreadable answers stay NaN here: _summarise scores them against the candidate.
        return values.to(dev), dists.to(dev), invalid.to(dev) + bad.long().to(dev), texts

    def _losses(self, values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(N, G, I) answers in the survey's numbering -> per-wording answers (orders averaged), their
        indices (N, W, D) and losses (N, W), each group's own loss (N, G), and the combined loss (N,)."""
        N, I = values.shape[0], len(self.survey.items)
        W, G = len(self.surveys), len(self.groups)
        # Orders averaged in the answers' dtype, then float64: what the pooled reading always computed.
        per_wording = torch.stack([values[:, [g for g, grp in enumerate(self.groups) if grp.wording == w]].mean(1) for w in range(W)], 1)
        per_wording = per_wording.double()
        idx = indices(per_wording.reshape(N * W, I), self.survey, self.constants).view(N, W, -1)
        wl = target_loss(idx.reshape(N * W, -1), self.survey.dimensions, self.target, self.scoring).view(N, W)
        gidx = indices(values.double().reshape(N * G, I), self.survey, self.constants)
        gl = target_loss(gidx, self.survey.dimensions, self.target, self.scoring).view(N, G)
        return per_wording, idx, wl, gl, self.combine(self._per_reading(wl, gl))

    def _fill_unreadable(self, values: torch.Tensor) -> torch.Tensor:
        """Generate mode: an unreadable answer (NaN) counts as whichever end of the scale, 1 or K,
        makes this candidate's loss larger, so not answering never pays.

        Why not the midpoint: a neutral answer is often closer to a target than the model's real
        answers, so a prompt that silences the model would win. Items are pushed one at a time,
        starting from the midpoint; with each item in one formula (VSM13) this reaches the largest
        loss any answers to the unreadable items could give, so a silent candidate loses to every
        candidate that answers the same items in any way.
        """
        missing = values.isnan()
        values = torch.nan_to_num(values, nan=(self.K + 1) / 2)
        for g, i in missing.any(0).nonzero().tolist():
            lo, hi = values.clone(), values.clone()
            lo[:, g, i], hi[:, g, i] = 1.0, float(self.K)
            worse = self._losses(hi)[-1] > self._losses(lo)[-1]
            pick = torch.where(worse, float(self.K), 1.0).to(values.dtype)
            values[:, g, i] = torch.where(missing[:, g, i], pick, values[:, g, i])
        return values

    def _summarise(self, values, dists, invalid, texts) -> FitnessResult:
        N, K = values.shape[0], self.K
        I, G = len(self.survey.items), len(self.groups)
        values = values.view(N, G, I)
        # Reverse-order groups (and wordings laid out from the last pole) number the labels the other
        # way round: answer r means K + 1 - r.
        flip = torch.tensor([self.surveys[g.wording].flips(g.reverse) for g in self.groups], device=values.device).view(1, G, 1)
        values = torch.where(flip, K + 1 - values, values)
        if self.answering.mode == "generate":
            values = self._fill_unreadable(values)
        per_wording, idx, wl, gl, losses = self._losses(values)
        failed = ~torch.isfinite(losses) | (invalid.to(losses.device) > 0) & (self.answering.mode != "generate")
        if failed.any():
            losses = torch.where(failed, torch.full_like(losses, FAILED_LOSS), losses)
        return FitnessResult(losses, idx.mean(1), per_wording, wl, dists.view(N, G, I, K), invalid, failed, gl, texts)

    def require_answers(self, results: Sequence[FitnessResult], what: str) -> None:
        """Refuse to go on when no answer in any of `results` (first candidate) could be read in generate mode:
        every index would be the scale midpoint, and a search would see a flat loss."""
        if self.answering.mode != "generate" or any(int(r.invalid[0]) < self.num_rows for r in results):
            return
        sample = next((t.strip() for r in results for t in r.texts[0] if t.strip()), "")
        raise CulturalignError(
            f"{what} gave no answer 1..{self.K} to any of the {self.num_rows} questions in generate mode "
            f"({f'e.g. {sample[:40]!r}' if sample else 'every answer was empty'}); use --answering.mode logits, "
            "a larger --answering.max_new_tokens, or an instruct model"
        )

    def describe(self) -> dict[str, Any]:
        """What a result depends on, recorded beside every number."""
        return {
            "survey": [s.origin + (f"#{s.wording}" if s.wording != "base" else "") for s in self.surveys],
            "framework": self.survey.framework,
            "target": self.target,
            "constants": self.constants,
            "loss_kind": self.scoring.loss,
            "readings": self.combine.record(),
            "loss_weights": self.scoring.weights,
            "answering": {k: getattr(self.answering, k) for k in ("mode", "debias", "instruction", "calibrate")}
            | (
                {"show_options": self.answering.show_options, "length_norm": self.answering.length_norm}
                if self.answering.mode == "cloze"
                else {}
            ),
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
        out.append(order[cut[j] : j])
        j = cut[j]
    return out[::-1]


def parse_answer(text: str, num_answers: int = 5) -> float:
    """First integer in the text if it is 1..K, else NaN (counted as invalid)."""
    m = re.search(r"\d+", text)
    if not m:
        return math.nan
    v = int(m.group())
    return float(v) if 1 <= v <= num_answers else math.nan
