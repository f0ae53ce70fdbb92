"""Soft prompts: T virtual-token embeddings in front of a frozen LM, placed exactly as PEFT does.

Placement is `[V][left padding][chat-templated text]`: PEFT prepends V at position 0 of the
already left-padded batch. Position ids count only real tokens (virtual tokens included), so a
padded row scores like the same row unpadded; an exported prompt loaded with
`peft.PeftModel.from_pretrained` gives the same logits on unpadded input.
"""

from __future__ import annotations

from typing import Literal

import torch

from culturalign.errors import CulturalignError
from culturalign.model.backbone import Backbone

InitMode = Literal["random", "vocab", "text"]
INIT_MODES: tuple[str, ...] = ("random", "vocab", "text")
# T = 10 by default: the embedded-model probes in docs/ fit the survey with 10 tokens, and every
# extra token costs prefix compute in each of the thousands of survey administrations.
DEFAULT_NUM_VIRTUAL_TOKENS = 10


def init_prompt(
    backbone: Backbone,
    num_virtual_tokens: int = DEFAULT_NUM_VIRTUAL_TOKENS,
    init: str = "random",
    init_text: str | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Return an fp32 [T, d] initial soft prompt.

    random: Gaussian with the embedding matrix's mean and std per dimension (a token-like norm).
    vocab:  embeddings of T token ids sampled uniformly from the vocabulary (Lester et al.).
    text:   embeddings of `init_text`, repeated or cut to T tokens (PEFT's TEXT init). There is no
            default text: a persona depends on the target (`culturalign.targets.persona`), which this
            layer does not know, and a silent default would start every country from one persona.
    """
    if num_virtual_tokens < 1:
        raise CulturalignError(f"num_virtual_tokens={num_virtual_tokens} must be >= 1; try 10")
    if init not in INIT_MODES:
        raise CulturalignError(f"init={init!r} is unknown; use one of {', '.join(INIT_MODES)}")
    weight = backbone.model.get_input_embeddings().weight.detach().float()
    gen = torch.Generator().manual_seed(seed)
    T = num_virtual_tokens
    if init == "random":
        mean, std = weight.mean(0), weight.std(0)
        return (mean + std * torch.randn(T, weight.shape[1], generator=gen)).cpu()
    if init == "vocab":
        ids = torch.randint(0, weight.shape[0], (T,), generator=gen)
        return weight[ids.to(weight.device)].cpu().clone()
    if not init_text:
        raise CulturalignError(
            f"init='text' needs an init_text (got {init_text!r}); give an instruction such as "
            "culturalign.targets.persona(target), e.g. 'You are a person from Saudi Arabia.'"
        )
    ids = backbone.tokenizer(init_text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise CulturalignError(f"init_text={init_text!r} has no tokens; give an instruction such as 'You are a person from Saudi Arabia.'")
    ids = (ids * (T // len(ids) + 1))[:T]
    return weight[torch.tensor(ids, device=weight.device)].cpu().clone()


def position_ids_for(mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip padding: (cumsum(mask) - 1) clamped at 0."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def prompted_inputs(
    backbone: Backbone, prompts: torch.Tensor | None, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Model kwargs for `[V][pad][tokens]`.

    Input shape: prompts (B, T, d) or (T, d) or None; input_ids, attention_mask (B, L).
    Output: inputs_embeds (B, T+L, d), attention_mask and position_ids (B, T+L).
    """
    dev = backbone.device
    input_ids, attention_mask = input_ids.to(dev), attention_mask.to(dev)
    embeds = backbone.embed(input_ids)
    if prompts is not None:
        if prompts.dim() == 2:
            prompts = prompts.unsqueeze(0).expand(input_ids.shape[0], -1, -1)
        prompts = prompts.to(device=dev, dtype=embeds.dtype)
        embeds = torch.cat([prompts, embeds], dim=1)
        ones = torch.ones(prompts.shape[:2], dtype=attention_mask.dtype, device=dev)
        attention_mask = torch.cat([ones, attention_mask], dim=1)
    return {"inputs_embeds": embeds, "attention_mask": attention_mask, "position_ids": position_ids_for(attention_mask)}


def prompted_logits(
    backbone: Backbone,
    prompts: torch.Tensor | None,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int = 1,
) -> torch.Tensor:
    """Logits of the last `logits_to_keep` positions (B, k, vocab); k=0 keeps all."""
    kwargs = prompted_inputs(backbone, prompts, input_ids, attention_mask)
    keep: int | torch.Tensor = logits_to_keep
    if logits_to_keep > 0:
        # An index tensor, not the int: transformers' `hidden[:, -k:]` slice is non-contiguous and
        # makes torch.matmul copy the LM head's weight once per row (see prefix_cache.last_position).
        L = kwargs["inputs_embeds"].shape[1]
        keep = torch.arange(max(0, L - logits_to_keep), L, device=backbone.device)
    out = backbone.model(**kwargs, logits_to_keep=keep, use_cache=False)
    return out.logits


def check_prompt_fits(prompt: torch.Tensor, backbone: Backbone, where: str = "the soft prompt") -> None:
    if prompt.dim() != 2 or prompt.shape[1] != backbone.hidden_size:
        raise CulturalignError(
            f"{where} has shape {tuple(prompt.shape)} but {backbone.model_id} has hidden size "
            f"{backbone.hidden_size}; use a checkpoint trained on this backbone"
        )
