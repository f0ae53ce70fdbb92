"""GD step throughput: our soft-prompt step against PEFT's prompt tuning, same model, batch and data.

One step = forward, cross-entropy over the answer tokens "1".."K" at the answer position,
backward to the prompt, AdamW. Data: the synthetic VSM13 questions (the GD path's own set).
Ours is `ChoiceObjective` (template head run once per batch, its KV cache repeated over rows);
PEFT gets full rows through `get_peft_model(PromptTuningConfig)` and, to be fair, the same
last-position-only LM head (`logits_to_keep` as an index, see prefix_cache.last_position).
Runs alternate between the two so a busy machine slows both alike.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

from culturalign.bench.timing import sync
from culturalign.model.backbone import Backbone
from culturalign.model.batching import pad_rows
from culturalign.model.chat import answer_token_ids
from culturalign.model.soft_prompt import init_prompt
from culturalign.survey.definition import Survey


def _batch(backbone: Backbone, survey: Survey, target: dict[str, float], constants: dict[str, float], batch_size: int):
    from culturalign.data.choice import collate, tokenise
    from culturalign.data.synthetic import examples

    exs = examples(survey, target, constants)[0][:batch_size]
    prefix, suffixes = tokenise(backbone.tokenizer, exs)
    batch = collate([(s, ex.label, ex.order) for s, ex in zip(suffixes, exs)], backbone.tokenizer.pad_token_id)
    full_ids, full_mask = pad_rows([prefix.tolist() + s for s in suffixes], backbone.tokenizer.pad_token_id)
    return prefix, batch, full_ids, full_mask


def measure_training(
    backbone: Backbone,
    survey: Survey,
    target: dict[str, float],
    constants: dict[str, float],
    num_virtual_tokens: int,
    batch_size: int,
    steps: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    from peft import PromptTuningConfig, get_peft_model

    from culturalign.gradient.module import ChoiceObjective

    dev, T = backbone.device, num_virtual_tokens
    prefix, batch, full_ids, full_mask = _batch(backbone, survey, target, constants, batch_size)
    B = batch["input_ids"].shape[0]
    answer_ids = answer_token_ids(backbone.tokenizer, survey.num_answers)
    labels = batch["labels"].to(dev)

    objective = ChoiceObjective(backbone, prefix, answer_ids)
    prompt = torch.nn.Parameter(init_prompt(backbone, T, "random", seed=0).to(dev))
    ours_opt = torch.optim.AdamW([prompt], lr=1e-3)

    def ours() -> float:
        loss, _ = objective.loss(prompt, batch, "train", 0)
        ours_opt.zero_grad(set_to_none=True)
        loss.backward()
        ours_opt.step()
        return loss.item()

    peft_model = get_peft_model(backbone.model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T))
    peft_opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-3)
    ids, mask = full_ids.to(dev), full_mask.to(dev)
    keep = torch.tensor([T + ids.shape[1] - 1], device=dev)
    ans = torch.tensor(answer_ids, device=dev)

    def peft_step() -> float:
        out = peft_model(input_ids=ids, attention_mask=mask, logits_to_keep=keep)  # noqa: F821 - deleted after the timing (finally), never called then
        loss = F.cross_entropy(out.logits[:, -1].index_select(-1, ans).float(), labels)
        peft_opt.zero_grad(set_to_none=True)  # noqa: F821
        loss.backward()
        peft_opt.step()  # noqa: F821
        return loss.item()

    try:
        progress(f"GD step throughput: ours vs PEFT prompt tuning, batch {B}, {steps} steps each (alternating)")
        ours(), peft_step()  # warm-up
        t_ours, t_peft = [], []
        for _ in range(max(1, steps)):
            for fn, acc in ((ours, t_ours), (peft_step, t_peft)):
                sync(dev)
                t = time.perf_counter()
                fn()
                sync(dev)
                acc.append(time.perf_counter() - t)
    finally:
        # Leave the shared backbone as it was: the PEFT wrapper holds it by reference only.
        del peft_model, peft_opt
    ours_eps, peft_eps = B / min(t_ours), B / min(t_peft)
    return {
        "batch_size": B,
        "steps": len(t_ours),
        "num_virtual_tokens": T,
        "data": "synthetic VSM13 questions (first batch)",
        "tokens_per_example_full": int(full_mask.sum()) // B + T,
        "ours_examples_per_s": ours_eps,
        "peft_examples_per_s": peft_eps,
        "ratio": ours_eps / peft_eps,
        "ours_seconds": [round(t, 4) for t in t_ours],
        "peft_seconds": [round(t, 4) for t in t_peft],
    }
