"""FLOPs a survey administration must do: 2 x non-embedding params per token, plus attention.

Only real tokens count (padding is waste, not work), and the LM head is left out (the default
path applies it to one position per row): the utilisation this gives is a lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from culturalign.model.backbone import Backbone


@dataclass(frozen=True)
class ModelShape:
    non_embedding_params: int
    layers: int
    heads: int
    head_dim: int

    def dense(self, tokens: int) -> float:
        return 2.0 * self.non_embedding_params * tokens

    def attention(self, attended: int) -> float:
        """QK^T and AV: 2 x 2 x heads x head_dim FLOPs per (query, key) pair per layer."""
        return 4.0 * self.layers * self.heads * self.head_dim * attended


def model_shape(backbone: Backbone) -> ModelShape:
    model = backbone.model
    cfg = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    total = sum(p.numel() for p in model.parameters())  # tied weights are counted once
    non_emb = total - emb.numel()
    if head is not None and head.weight.data_ptr() != emb.data_ptr():
        non_emb -= head.weight.numel()
    heads = int(cfg.num_attention_heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    return ModelShape(int(non_emb), int(cfg.num_hidden_layers), heads, head_dim)


def _causal_pairs(start: int, length: int) -> int:
    """(query, key) pairs of `length` tokens at positions start.. that each attend to all earlier ones."""
    return sum(start + j + 1 for j in range(length))


def survey_work(num_virtual_tokens: int, prefix_len: int, suffix_lens: Sequence[int], shared_prefix: bool) -> dict[str, int]:
    """Tokens and attended (query, key) pairs per candidate.

    shared_prefix=True: `[V][prefix]` once, then each row's suffix (the default path).
    shared_prefix=False: every row is `[V][prefix][suffix]` in full (no reuse; paper-style prefill).
    """
    head = num_virtual_tokens + prefix_len
    if shared_prefix:
        tokens = head + sum(suffix_lens)
        pairs = _causal_pairs(0, head) + sum(_causal_pairs(head, s) for s in suffix_lens)
    else:
        tokens = sum(head + s for s in suffix_lens)
        pairs = sum(_causal_pairs(0, head + s) for s in suffix_lens)
    return {"tokens": tokens, "attended_pairs": pairs}


def survey_flops(shape: ModelShape, work: dict[str, int]) -> dict[str, Any]:
    dense, attn = shape.dense(work["tokens"]), shape.attention(work["attended_pairs"])
    return {"dense": dense, "attention": attn, "total": dense + attn}


def default_forward_tokens(fitness, num_virtual_tokens: int, candidates: int) -> list[int]:
    """Tokens in each forward the default path runs for `candidates` (padding included: the GEMMs
    see it): the prefill of `[V][prefix]` per candidate chunk, then one forward per length bucket.
    These are the row counts M of the GEMM shapes the peak is measured at."""
    head = num_virtual_tokens + len(fitness.prefix_ids)
    out = []
    for n0, n1 in fitness._candidate_chunks(candidates):
        out.append((n1 - n0) * head)
        out += [(n1 - n0) * ids.shape[0] * ids.shape[1] for _, ids, _ in fitness.chunks]
    return out
