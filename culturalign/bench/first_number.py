"""Greedy decoding that stops each row at its first complete number: the paper's parse, no further.

`survey.fitness.parse_answer` reads the first run of digits in the answer. Once that run has ended
(a later character that is not a digit) or the row has produced EOS, more tokens cannot change the
parse, so the paper-style baseline need not decode them. A digit at the very end of the text is not
yet final ("1" may become "10"), so the row decodes one more token.

The rule is driven by three per-token tables (is there a digit; does a digit come before a
non-digit; does the text start with a non-digit), computed once per tokenizer outside any timing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from culturalign.model.backbone import Backbone
from culturalign.model.prefix_cache import decode_step


@dataclass(frozen=True)
class DigitTables:
    """Per token id (vocab,) bool: has_digit, closes (a digit then a non-digit), starts_other (first char not a digit)."""

    has_digit: torch.Tensor
    closes: torch.Tensor
    starts_other: torch.Tensor

    @classmethod
    def from_texts(cls, texts: list[str]) -> "DigitTables":
        has = [bool(re.search(r"\d", t)) for t in texts]
        closes = [bool(re.search(r"\d\D", t)) for t in texts]
        starts = [bool(t) and not t[0].isdigit() for t in texts]
        return cls(torch.tensor(has), torch.tensor(closes), torch.tensor(starts))

    @classmethod
    def for_tokenizer(cls, tokenizer, vocab_size: int) -> "DigitTables":
        """Each token's text as it appears after other text (decoded behind an anchor token), so that
        SentencePiece-style leading spaces are kept. Special tokens, and logit rows past the
        tokenizer's vocabulary (padded embeddings), decode to "" (skipped in the parse)."""
        anchor = tokenizer.encode("a", add_special_tokens=False)[:1]
        base = tokenizer.decode(anchor, skip_special_tokens=True)
        known = min(vocab_size, len(tokenizer))
        pairs = tokenizer.batch_decode([anchor + [i] for i in range(known)], skip_special_tokens=True)
        texts = [p[len(base) :] if p.startswith(base) else p for p in pairs]
        return cls.from_texts(texts + [""] * (vocab_size - known))

    def to(self, device: torch.device) -> "DigitTables":
        return DigitTables(self.has_digit.to(device), self.closes.to(device), self.starts_other.to(device))


def step_state(
    tables: DigitTables, tokens: torch.Tensor, in_number: torch.Tensor, done: torch.Tensor, is_eos: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row: (in_number, done) after it. Input shapes: all (rows,)."""
    ends_number = tables.closes[tokens] | (in_number & tables.starts_other[tokens])
    done = done | is_eos | ends_number
    return (in_number | tables.has_digit[tokens]) & ~done, done


def decode_to_first_number(
    backbone: Backbone, cache, last_logits: torch.Tensor, mask: torch.Tensor, max_new_tokens: int, tables: DigitTables
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Greedy decoding from a filled cache until every row's first number is complete (or EOS, or the cap).

    Input shape: last_logits (rows, vocab), mask (rows, S). Output: tokens (rows, steps run), each row's
    own stop step count (rows,) (its tokens after that are EOS fill), and the forward steps run.
    """
    eos = backbone.tokenizer.eos_token_id
    fill = eos if eos is not None else (backbone.tokenizer.pad_token_id or 0)
    rows, dev = last_logits.shape[0], last_logits.device
    in_number = torch.zeros(rows, dtype=torch.bool, device=dev)
    done = torch.zeros(rows, dtype=torch.bool, device=dev)
    row_steps = torch.zeros(rows, dtype=torch.long, device=dev)
    tokens, logits = [], last_logits
    for step in range(max_new_tokens):
        nxt = torch.where(done, torch.full((rows,), fill, device=dev), logits.argmax(-1))
        row_steps += (~done).long()
        in_number, done = step_state(tables, nxt, in_number, done, nxt == eos if eos is not None else done)
        tokens.append(nxt)
        if step == max_new_tokens - 1 or bool(done.all()):
            break
        logits, mask = decode_step(backbone, cache, nxt, mask)
    return torch.stack(tokens, dim=1), row_steps, len(tokens)
