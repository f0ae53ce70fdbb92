"""`culturalign generate`: open-ended answers with or without a soft prompt."""

from __future__ import annotations

import torch

from culturalign.checkpoint.format import load_prompt
from culturalign.commands.common import ModelArgs
from culturalign.errors import CulturalignError
from culturalign.model.chat import chat_ids
from culturalign.model.prefix_cache import decode_more, prefill_rows


def generate_text(
    backbone,
    prompt: torch.Tensor | None,
    question: str,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    system: str | None = None,
) -> str:
    """One answer, decoded through the same cache path as the survey's generate mode."""
    ids = torch.tensor([chat_ids(backbone.tokenizer, question, system)])
    with torch.inference_mode():
        soft = None if prompt is None else prompt.unsqueeze(0)
        cache, logits, mask = prefill_rows(backbone, soft, ids, torch.ones_like(ids))
        gen = torch.Generator(device=backbone.device).manual_seed(seed)
        tokens = decode_more(backbone, cache, logits, mask, max_new_tokens, temperature, gen)
    return backbone.tokenizer.decode(tokens[0], skip_special_tokens=True).strip()


def generate(
    prompt: str | list[str] = "Who are you?",
    model: ModelArgs = ModelArgs(),
    ckpt: str | None = None,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    system: str | None = None,
    force: bool = False,
) -> list[str]:
    """Generate open-ended answers, with or without a trained soft prompt.

    Args:
        prompt: Question, or a list of questions such as ["Who are you?", "What do you like?"].
        model: Frozen backbone.
        ckpt: Run directory with a soft prompt (default: none).
        max_new_tokens: Tokens to generate per answer.
        temperature: 0 = greedy; > 0 samples (seeded).
        seed: Sampling seed.
        system: Optional system message (a hard-prompt persona).
        force: Accept a checkpoint trained on another backbone id.
    """
    if max_new_tokens < 1:
        raise CulturalignError(f"max_new_tokens={max_new_tokens} must be >= 1")
    backbone = model.load()
    soft = load_prompt(ckpt, backbone, force)[0] if ckpt else None
    answers = []
    for q in [prompt] if isinstance(prompt, str) else prompt:
        text = generate_text(backbone, soft, q, max_new_tokens, temperature, seed, system)
        print(f"Q: {q}\nA: {text}\n")
        answers.append(text)
    return answers
