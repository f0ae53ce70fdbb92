"""Shared-prefix KV reuse: the one module that touches the transformers cache API.

A survey asks 24 items that share `[V][chat template head]`. We prefill that prefix once per
candidate, repeat its cache for every item, and run only the per-item suffixes. The cache API
moves between transformers releases (`past_key_values=` -> `cache=`), so it lives here alone.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from culturalign.model.backbone import Backbone
from culturalign.model.soft_prompt import position_ids_for


def _cache_kwarg(model: torch.nn.Module) -> str:
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def last_position(seq_len: int, device: torch.device) -> torch.Tensor:
    """`logits_to_keep` for "last position only", as an index tensor rather than the int 1.

    Why: with `logits_to_keep=1` transformers slices `hidden[:, -1:, :]`, a non-contiguous
    (B, 1, d) view; `torch.matmul` cannot fold it into one GEMM and falls back to `bmm` with the
    LM head's weight expanded and *copied* once per row (57 MB per row for SmolLM2 in bf16). That
    copy was half the survey's wall time and grew with the batch. Indexing with a tensor gathers
    a contiguous (B, 1, d) first, so the head is one (B, d) x (d, vocab) GEMM. Same logits.
    """
    return torch.tensor([seq_len - 1], device=device)


def expand_cache(backbone: Backbone, cache, repeats: int, in_place: bool = False, read_only: bool = False):
    """Each row of `cache` repeated `repeats` times (row i -> rows i*repeats .. i*repeats + repeats - 1).

    By default a new cache and the original is left as it was, so one prefill serves several
    suffix batches (no deepcopy, so it also works inside an autograd graph: GD through the
    survey). `in_place=True` repeats `cache` itself (its last use). `read_only=True` gives a new
    cache that attends to the prefix but does not keep what a forward adds: for a suffix whose
    keys nothing reads afterwards (one answer token's logits), the batch's whole key/value cache
    (~14 MB a row of ~300 tokens for SmolLM2-135M in float32) is never held, only one layer's at
    a time. Layers other than plain `DynamicLayer` (sliding windows) keep the default behaviour.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if in_place and not read_only:
        if repeats > 1:
            cache.batch_repeat_interleave(repeats)
        return cache
    out = DynamicCache(config=backbone.model.config)
    for i, layer in enumerate(cache.layers):
        if layer.keys is not None and layer.keys.numel():
            out.layers[i].update(layer.keys.repeat_interleave(repeats, 0), layer.values.repeat_interleave(repeats, 0))
            if read_only and type(out.layers[i]) is DynamicLayer:
                out.layers[i].__class__ = _read_only_layer()
    return out


@functools.cache
def _read_only_layer() -> type:
    """The class is made on first use: transformers is imported lazily, as everywhere in this module."""
    from transformers.cache_utils import DynamicLayer

    class ReadOnlyLayer(DynamicLayer):
        """A cache layer that returns prefix + new keys/values without storing the new ones."""

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)

    return ReadOnlyLayer


def prefill(backbone: Backbone, prompts: torch.Tensor | None, prefix_ids: torch.Tensor, batch: int):
    """Run `[V][prefix]` for `batch` rows; returns (cache, prefix_len).

    Input shape: prompts (batch, T, d) or None; prefix_ids (P,).
    """
    from transformers import DynamicCache

    dev = backbone.device
    embeds = backbone.embed(prefix_ids.to(dev)).unsqueeze(0).expand(batch, -1, -1)
    if prompts is not None:
        embeds = torch.cat([prompts.to(device=dev, dtype=embeds.dtype), embeds], dim=1)
    length = embeds.shape[1]
    positions = torch.arange(length, device=dev).unsqueeze(0).expand(batch, -1)
    cache = DynamicCache(config=backbone.model.config)
    backbone.model(
        inputs_embeds=embeds,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=last_position(length, dev),
        **{_cache_kwarg(backbone.model): cache},
    )
    return cache, length


def suffix_last_logits(
    backbone: Backbone, cache, prefix_len: int, repeats: int, suffix_ids: torch.Tensor, suffix_mask: torch.Tensor
) -> torch.Tensor:
    """Expand the prefix cache `repeats` times per row and return the suffixes' last logits.

    Input shape: cache of batch n; suffix_ids, suffix_mask (n * repeats, S), left-padded.
    Output: last logits (n * repeats, vocab), row i*repeats + j = candidate i, item j; and the
    full attention mask (n * repeats, prefix_len + S) for decoding further.
    """
    dev = backbone.device
    if repeats > 1:
        cache.batch_repeat_interleave(repeats)
    rows = suffix_ids.shape[0]
    suffix_mask = suffix_mask.to(dev)
    mask = torch.cat([torch.ones(rows, prefix_len, dtype=suffix_mask.dtype, device=dev), suffix_mask], dim=1)
    positions = position_ids_for(mask)[:, prefix_len:]
    out = backbone.model(
        input_ids=suffix_ids.to(dev),
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=last_position(suffix_ids.shape[1], dev),
        **{_cache_kwarg(backbone.model): cache},
    )
    return out.logits[:, -1, :], mask


def continuations_logprobs(
    backbone: Backbone,
    cache,
    mask: torch.Tensor,
    last_logits: torch.Tensor,
    conts: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> list[torch.Tensor]:
    """Log-probability of each token of K continuations per row, after the rows held in `cache`.

    Input shape: cache of B rows whose full attention mask is `mask` (B, L); last_logits (B, vocab),
    the rows' next-token logits; conts, K pairs (ids, mask) of shape (B, C_k), each continuation
    padded on the right. Output: K tensors (B, C_k) of token log-probs in float32, 0 at padding.
    The cache is left as it came in.

    Why one forward for all K: cloze scores K label texts after the same row. They are laid side
    by side after the row and a block mask lets each label see the row and its own earlier tokens
    only, with positions restarting after the row for every label (the tree-attention trick). One
    forward appends to the row's cache once and is cropped back once; feeding the labels one at a
    time instead concatenated and cropped the cache K times, which cost ~2-3x the row itself
    (docs/survey.md). A crop is a slice, so the autograd graph of the GD path survives it.
    """
    dev = backbone.device
    conts = [(ids.to(dev), m.to(dev)) for ids, m in conts]
    logp = last_logits.float().log_softmax(-1)
    # The first token of each label is read off the logits the row already produced.
    firsts = [logp.gather(-1, ids[:, :1]) for ids, _ in conts]
    fed = [ids[:, :-1] for ids, _ in conts if ids.shape[1] > 1]
    if not fed:
        return [f * m for f, (_, m) in zip(firsts, conts)]
    B, L = mask.shape
    tokens = torch.cat(fed, dim=1)
    block = torch.cat([torch.full((ids.shape[1],), k, device=dev) for k, ids in enumerate(fed)])
    offset = torch.cat([torch.arange(ids.shape[1], device=dev) for ids in fed])
    # Query q sees key q' of the appended tokens iff same label and q' <= q; right padding only
    # ever follows a label's real tokens, so it changes nothing the real tokens see.
    own = (block[:, None] == block[None, :]) & (offset[None, :] <= offset[:, None])
    allowed = torch.cat([mask.bool()[:, None, :].expand(B, tokens.shape[1], L), own.expand(B, -1, -1)], dim=-1)
    dtype = backbone.dtype
    additive = torch.zeros(allowed.shape, dtype=dtype, device=dev).masked_fill(~allowed, torch.finfo(dtype).min)
    positions = mask.long().sum(-1, keepdim=True) + offset[None, :]
    out = backbone.model(
        input_ids=tokens,
        attention_mask=additive[:, None],
        position_ids=positions,
        use_cache=True,
        **{_cache_kwarg(backbone.model): cache},
    )
    cache.crop(-tokens.shape[1])
    logits = out.logits.float()
    result, start = [], 0
    for first, (ids, m) in zip(firsts, conts):
        C = ids.shape[1]
        if C == 1:
            result.append(first * m)
            continue
        lg = logits[:, start : start + C - 1]
        start += C - 1
        rest = lg.gather(-1, ids[:, 1:, None]).squeeze(-1) - torch.logsumexp(lg, dim=-1)
        result.append(torch.cat([first, rest], dim=1) * m)
    return result


def continuation_scores(
    backbone: Backbone,
    cache,
    mask: torch.Tensor,
    last_logits: torch.Tensor,
    conts: Sequence[tuple[torch.Tensor, torch.Tensor]],
    length_norm: str,
) -> torch.Tensor:
    """(B, K) score of each continuation: its token log-probs summed, divided by its token count
    when `length_norm` is "mean" (cloze answering; the survey and the two-option questions share it)."""
    scores = []
    for lp, (_, m) in zip(continuations_logprobs(backbone, cache, mask, last_logits, conts), conts):
        lp = lp.sum(-1)
        scores.append(lp / m.sum(-1).to(lp.device) if length_norm == "mean" else lp)
    return torch.stack(scores, dim=-1)


def prefill_rows(backbone: Backbone, prompts: torch.Tensor | None, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """Full rows `[V][pad][text]` into a fresh cache, no shared prefix (how a plain `generate` starts).

    Input shape: prompts (B, T, d) or None; input_ids, attention_mask (B, S), left-padded.
    Output: (cache, last logits (B, vocab), full mask (B, T + S)) ready for `decode_more`.
    """
    from transformers import DynamicCache

    from culturalign.model.soft_prompt import prompted_inputs

    kw = prompted_inputs(backbone, prompts, input_ids, attention_mask)
    cache = DynamicCache(config=backbone.model.config)
    out = backbone.model(
        **kw,
        use_cache=True,
        logits_to_keep=last_position(kw["inputs_embeds"].shape[1], backbone.device),
        **{_cache_kwarg(backbone.model): cache},
    )
    return cache, out.logits[:, -1, :], kw["attention_mask"]


def decode_more(
    backbone: Backbone,
    cache,
    last_logits: torch.Tensor,
    mask: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Greedy (or sampled) continuation from a filled cache; returns (rows, max_new_tokens) ids.

    Only generate mode uses this: the default logits mode never decodes.
    """
    eos = backbone.tokenizer.eos_token_id
    tokens = []
    logits = last_logits
    done = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    for step in range(max_new_tokens):
        if temperature > 0:
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        else:
            nxt = logits.argmax(-1)
        if eos is not None:
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            done |= nxt == eos
        tokens.append(nxt)
        if step == max_new_tokens - 1 or bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = position_ids_for(mask)[:, -1:]
        out = backbone.model(
            input_ids=nxt.unsqueeze(-1),
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{_cache_kwarg(backbone.model): cache},
        )
        logits = out.logits[:, -1, :]
    return torch.stack(tokens, dim=1)


def decode_step(backbone: Backbone, cache, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Feed one token per row into a filled cache: (next logits (rows, vocab), the grown mask (rows, S + 1)).

    For decoders with their own stopping rule (the bench's paper-style baseline stops each row at
    its first number); `decode_more` is the plain one.
    """
    mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    out = backbone.model(
        input_ids=tokens.unsqueeze(-1),
        attention_mask=mask,
        position_ids=position_ids_for(mask)[:, -1:],
        use_cache=True,
        logits_to_keep=1,
        **{_cache_kwarg(backbone.model): cache},
    )
    return out.logits[:, -1, :], mask
