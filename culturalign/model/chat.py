"""Chat templating through the tokenizer: the one place a user message becomes token ids."""

from __future__ import annotations

from typing import Any

from culturalign.errors import CulturalignError


def chat_text(tokenizer: Any, user: str, system: str | None = None) -> str:
    """The templated conversation up to the assistant's first token.

    `system` (a persona or hard-prompt instruction) goes in the system turn; templates that
    reject a system turn get it prepended to the user message instead.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise CulturalignError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; use an instruct/chat "
            "model or set tokenizer.chat_template before saving it"
        )
    messages = [{"role": "user", "content": user}]
    if system:
        messages = [{"role": "system", "content": system}] + messages
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - jinja templates raise their own error types for system turns
        if not system:
            raise
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": f"{system}\n\n{user}"}], tokenize=False, add_generation_prompt=True
        )


def chat_ids(tokenizer: Any, user: str, system: str | None = None) -> list[int]:
    # The template already holds any BOS/special tokens: do not add them twice.
    return list(tokenizer(chat_text(tokenizer, user, system), add_special_tokens=False)["input_ids"])


def answer_token_ids(tokenizer: Any, num_answers: int) -> list[int]:
    """Token id of each answer "1".."K"; each must be a single token for logits mode."""
    ids = []
    for k in range(1, num_answers + 1):
        enc = tokenizer(str(k), add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise CulturalignError(
                f"answer {k!r} is {len(enc)} tokens for this tokenizer; logits mode needs one token per answer, "
                "use --answering.mode generate"
            )
        ids.append(enc[0])
    return ids
