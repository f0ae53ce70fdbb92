"""Labelled multiple-choice examples: one rendering, tokenisation and scoring for training and evaluation.

An example is one user message and K options: CDEval pairs (K = 2) and the synthetic VSM13
questions (K = 5) both take this form. It is answered as the survey answers (`--answering`):

- logits: the options are numbered and the answer is the option-number token ("1".."K");
- cloze: the options are listed without numbers (or not at all: `--answering.show_options
  false`), and each option's own text is scored as the assistant's reply (token log-probs summed
  or averaged, `--answering.length_norm`), the form OLMES uses for models below ~1B parameters;
- `--answering.calibrate`: the answer prior of each rendering, measured with the same prompt on
  the example's content-free twin (see `ChoiceExample.free`), is divided out before the softmax.

Every message goes through the chat template; the token prefix all rows share (the template head)
is cut off once here, so the model runs it once per batch and reuses its KV cache for every row,
and in cloze mode the K options of a row are fed after that row's own cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from culturalign.data.folds import interleave, stratified_folds
from culturalign.errors import CulturalignError
from culturalign.model.backbone import Backbone
from culturalign.model.batching import common_prefix_len, pad_rows
from culturalign.model.chat import chat_ids
from culturalign.model.prefix_cache import continuation_scores, expand_cache, prefill, prefill_rows, suffix_last_logits
from culturalign.survey.fitness import Answering

STYLES = ("numbered", "listed", "bare")


@dataclass(frozen=True)
class ChoiceExample:
    """One labelled question as asked."""

    text: str  # the user message, options numbered (logits mode)
    label: int  # 0-based index of the correct option, in the order listed
    group: int  # question id: all orders of one question share it and stay in one split
    order: int  # 0 = options in the source order, 1 = reversed (counterbalancing)
    stratum: str  # CDEval domain or VSM13 item id, for stratified folds
    options: tuple[str, ...] = ()  # the option texts in the order listed: cloze scores each as the reply
    listed: str = ""  # cloze: the options listed without numbers
    bare: str = ""  # cloze without the option list: the question alone
    free: tuple[str, ...] = ()  # the content-free twin in each of STYLES: calibration

    def asked(self, style: str, content_free: bool = False) -> str:
        """The user message in `style` (see STYLES), or its content-free twin."""
        texts = self.free if content_free else (self.text, self.listed, self.bare)
        text = texts[STYLES.index(style)] if texts else ""
        if not text:
            raise CulturalignError(
                f"question {self.group} has no {'content-free ' if content_free else ''}{style} rendering; "
                "build examples with data.choice.make_example to use --answering.mode cloze or --answering.calibrate"
            )
        return text


def make_example(
    render: Callable[[str, bool], str], options: Sequence[str], label: int, group: int, order: int, stratum: str
) -> ChoiceExample:
    """An example in every style. render(style, content_free) -> user message; content-free: the
    question's content replaced by "N/A" (what the source decides that is: see data.cdeval, data.synthetic)."""
    texts = [render(s, False) for s in STYLES]
    return ChoiceExample(texts[0], label, group, order, stratum, tuple(options), texts[1], texts[2], tuple(render(s, True) for s in STYLES))


class ChoiceRow(NamedTuple):
    """One tokenised example: suffix after the shared prefix, label, order; cloze: each option's ids;
    calibrate: the content-free twin's suffix."""

    ids: list[int]
    label: int
    order: int
    options: tuple[tuple[int, ...], ...] = ()
    free: tuple[int, ...] = ()


def check_answering(answering: Answering) -> None:
    if answering.mode not in ("logits", "cloze"):
        raise CulturalignError(
            f"--answering.mode {answering.mode} gives no option scores for labelled questions (CDEval, synthetic_vsm13); "
            "use logits or cloze"
        )


def tokenise(tokenizer: Any, examples: list[ChoiceExample], system: str | None = None) -> tuple[torch.Tensor, list[list[int]]]:
    """(shared prefix ids (P,), per-example suffix ids) of the numbered rendering (logits mode)."""
    prefix, rows = tokenise_rows(tokenizer, examples, system)
    return prefix, [r.ids for r in rows]


def tokenise_rows(
    tokenizer: Any, examples: list[ChoiceExample], system: str | None = None, answering: Answering | None = None
) -> tuple[torch.Tensor, list[ChoiceRow]]:
    """(shared prefix ids (P,), one ChoiceRow per example) as `answering` asks them. At least one suffix
    token stays per row; the prefix is shared by the content-free twins too."""
    answering = answering or Answering()
    check_answering(answering)
    style = answering.style
    asked = [chat_ids(tokenizer, ex.asked(style), system) for ex in examples]
    free = [chat_ids(tokenizer, ex.asked(style, True), system) for ex in examples] if answering.calibrate else []
    P = common_prefix_len(asked + free)
    options = [_option_ids(tokenizer, ex) for ex in examples] if answering.mode == "cloze" else [()] * len(examples)
    rows = [
        ChoiceRow(a[P:], ex.label, ex.order, opts, tuple(free[i][P:]) if free else ())
        for i, (a, ex, opts) in enumerate(zip(asked, examples, options))
    ]
    return torch.tensor(asked[0][:P], dtype=torch.long), rows


def _option_ids(tokenizer: Any, ex: ChoiceExample) -> tuple[tuple[int, ...], ...]:
    if not ex.options:
        raise CulturalignError(f"question {ex.group} has no option texts; cloze mode needs them (build it with data.choice.make_example)")
    out = []
    for text in ex.options:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise CulturalignError(
                f"option {text!r} of question {ex.group} is no tokens for this tokenizer; cloze mode needs a non-empty "
                "option text, fix the data"
            )
        out.append(tuple(ids))
    return tuple(out)


def collate(rows: Sequence[tuple], pad_id: int) -> dict[str, torch.Tensor]:
    """Batch ChoiceRows (or (suffix, label, order) tuples). Suffixes left-padded so the last position is a
    real token: input_ids, attention_mask (B, S); labels, order (B,). Cloze: option_ids, option_mask
    (B, K, C) right-padded. Calibrate: the distinct content-free suffixes free_ids, free_mask (U, S')
    and free_index (B,), the row of each example's twin."""
    rows = [ChoiceRow(*r) for r in rows]
    ids, mask = pad_rows([r.ids for r in rows], pad_id)
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": torch.tensor([r.label for r in rows]),
        "order": torch.tensor([r.order for r in rows]),
    }
    if rows[0].options:
        K = len(rows[0].options)
        if any(len(r.options) != K for r in rows):
            raise CulturalignError(
                f"a batch mixes questions with {sorted({len(r.options) for r in rows})} options; every question needs {K}"
            )
        opt, omask = pad_rows([o for r in rows for o in r.options], pad_id, left=False)
        batch |= {"option_ids": opt.view(len(rows), K, -1), "option_mask": omask.view(len(rows), K, -1)}
    if rows[0].free:
        # One forward per distinct twin: in logits mode every CDEval pair has the same one.
        distinct = list(dict.fromkeys(r.free for r in rows))
        fids, fmask = pad_rows(distinct, pad_id)
        batch |= {"free_ids": fids, "free_mask": fmask, "free_index": torch.tensor([distinct.index(r.free) for r in rows])}
    return batch


def option_logits(
    backbone: Backbone,
    prompt: torch.Tensor | None,
    prefix_ids: torch.Tensor,
    batch: dict[str, torch.Tensor],
    answer_ids: torch.Tensor | None = None,
    answering: Answering | None = None,
) -> torch.Tensor:
    """THE scoring of labelled questions, for GD training and for `evaluate` alike: (B, K) fp32 scores whose
    softmax is the answer distribution. logits: the option-number tokens' logits at the answer position
    (`answer_ids`); cloze: each option text's log-likelihood as the reply (summed or per-token mean).
    Calibrated: log p(k | row) - log p(k | content-free twin), both normalised over the K options.
    prompt: (T, d) or None; batch from `collate` of `tokenise_rows(..., answering)`."""
    answering = answering or Answering()
    check_answering(answering)
    p = None if prompt is None else prompt.unsqueeze(0)
    shared = prefill(backbone, p, prefix_ids, 1) if len(prefix_ids) else None
    opts = (batch.get("option_ids"), batch.get("option_mask"))
    if not answering.calibrate:
        return _scores(backbone, p, shared, batch["input_ids"], batch["attention_mask"], opts, answer_ids, answering, last_use=True)
    scores = _scores(backbone, p, shared, batch["input_ids"], batch["attention_mask"], opts, answer_ids, answering, last_use=False)
    index = batch["free_index"].to(batch["free_ids"].device)
    if answering.mode == "cloze":  # each example's own options after its twin: one twin row per example
        prior = _scores(backbone, p, shared, batch["free_ids"][index], batch["free_mask"][index], opts, answer_ids, answering, True)
    else:
        prior = _scores(backbone, p, shared, batch["free_ids"], batch["free_mask"], opts, answer_ids, answering, True)
        prior = prior.index_select(0, index.to(prior.device))
    # The prompt moves the prior too, so it is measured with the same prompt in the same graph.
    return scores.log_softmax(-1) - prior.log_softmax(-1)


def _scores(backbone, p, shared, ids, mask, options, answer_ids, answering: Answering, last_use: bool) -> torch.Tensor:
    """(B, K) raw scores of B rows `[V][prefix][suffix]`; `shared`: the prefix's (cache, length), or None
    (no shared prefix: full rows). `last_use`: the prefix cache may be consumed."""
    B = ids.shape[0]
    if shared is None:
        cache, last, full_mask = prefill_rows(backbone, None if p is None else p.expand(B, -1, -1), ids, mask)
    else:
        cache = shared[0] if last_use else expand_cache(backbone, shared[0], 1)
        last, full_mask = suffix_last_logits(backbone, cache, shared[1], B, ids, mask)
    if answering.mode == "logits":
        if answer_ids is None:
            raise CulturalignError("logits mode needs the option-number token ids (model.chat.answer_token_ids)")
        return last.index_select(-1, answer_ids.to(last.device)).float()
    option_ids, option_mask = options
    if option_ids is None:
        raise CulturalignError("cloze mode needs a batch of rows tokenised with tokenise_rows(..., answering) (no option texts here)")
    # All options in one forward on the row's own cache: the survey's cloze path.
    opts = [(option_ids[:, k], option_mask[:, k]) for k in range(option_ids.shape[1])]
    return continuation_scores(backbone, cache, full_mask, last, opts, answering.length_norm)


def limit_groups(examples: list[ChoiceExample], limit: int | None, seed: int) -> list[ChoiceExample]:
    """Keep `limit` questions (all their orders), stratified by the examples' strata (`--data.limit`)."""
    if limit is None:
        return examples
    strata = {ex.group: ex.stratum for ex in examples}
    keep = set(interleave(strata, seed + 104729)[:limit])
    return [ex for ex in examples if ex.group in keep]


def select_questions(
    examples: list[ChoiceExample], limit: int | None, seed: int, folds: int | None = None, fold: int | None = None
) -> list[ChoiceExample]:
    """THE question selection of GD runs and `evaluate`: `--data.limit` first, then test fold `fold` of the
    stratified `folds` (seeded like the run), so `evaluate` sees exactly a GD run's test fold."""
    examples = limit_groups(examples, limit, seed)
    if fold is None:
        return examples
    if folds is None or not 0 <= fold < folds:
        raise CulturalignError(f"--cdeval.fold {fold} must be in 0..{(folds or 1) - 1} (--cdeval.folds {folds})")
    plan = stratified_folds({ex.group: ex.stratum for ex in examples}, folds, seed, 0.0)
    return [ex for ex in examples if plan.fold_of[ex.group] == fold]
