"""A tiny Llama and a tiny BPE tokenizer built in-process, so tests need no download."""

from __future__ import annotations

from pathlib import Path

import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "How important is it to you to have time for your family? Answer with a single number from 1 to 5.",
    "1. of utmost importance 2. very important 3. of moderate importance 4. of little importance 5. of no importance",
    "You are a person from Saudi Arabia. Who are you? I like to read books in my free time.",
    "Which option do you prefer? Option 1 or Option 2. Answer with 1 or 2.",
    "always usually sometimes seldom never strongly agree disagree undecided very good fair poor proud",
]


def build_tiny(path: Path, hidden: int = 32, layers: int = 2, seed: int = 0, chat_template: bool = True) -> Path:
    """Write a tiny LlamaForCausalLM + tokenizer to `path` and return it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(CORPUS * 4, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>")
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    model = LlamaForCausalLM(cfg)
    # Larger weights than the default init, so answers differ between prompts and tests can tell.
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0, 1.0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def tiny_fit_argv(model_dir: Path, root: Path, *extra: str, config: Path | None = None) -> list[str]:
    """`culturalign fit` arguments for a run on the tiny model under `root`, then `extra`.

    One place for the flags every tiny fit needs: float32, 4 virtual tokens, no held-out wordings
    (the tiny model's survey is cheap only on one wording).
    """
    head = ["fit", "--config", str(config)] if config is not None else ["fit"]
    tiny = ["--model", str(model_dir), "--model.dtype", "float32", "--prompt.num_virtual_tokens", "4", "--survey.heldout", "[]"]
    return [*head, *tiny, "--run.root", str(root), *extra]
