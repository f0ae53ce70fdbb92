"""The one checkpoint format: PEFT-loadable, atomic, checked against the backbone on load."""

from __future__ import annotations

import json

import pytest
import torch

from culturalign.checkpoint.format import load_last, load_prompt, sanitise_run_name, save_last, save_prompt
from culturalign.errors import CulturalignError
from culturalign.model.backbone import load_backbone
from culturalign.model.chat import chat_ids
from culturalign.model.soft_prompt import init_prompt, prompted_logits


def _meta(backbone, T):
    return {"backbone": {"model_id": backbone.model_id}, "num_virtual_tokens": T}


def test_peft_loads_our_checkpoint_with_identical_logits(tiny_model_dir, tiny_backbone, tmp_path):
    from peft import PeftModel, PeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    prompt = init_prompt(tiny_backbone, 5, "random", seed=3)
    save_prompt(tmp_path / "run", prompt, _meta(tiny_backbone, 5), tiny_backbone.model.config)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, tmp_path / "run")
    assert isinstance(peft_model, PeftModelForCausalLM)
    ids = torch.tensor([chat_ids(tiny_backbone.tokenizer, "Who are you?")])
    with torch.no_grad():
        theirs = peft_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1]
        ours = prompted_logits(tiny_backbone, prompt, ids, torch.ones_like(ids))[:, -1]
    assert torch.allclose(theirs, ours, atol=1e-5), (theirs - ours).abs().max()
    # And a different prompt gives different logits, so the comparison is not vacuous.
    other = prompted_logits(tiny_backbone, init_prompt(tiny_backbone, 5, seed=4), ids, torch.ones_like(ids))[:, -1]
    assert not torch.allclose(other, ours, atol=1e-4)


def test_left_padding_does_not_change_scores(tiny_backbone):
    prompt = init_prompt(tiny_backbone, 4, seed=1)
    ids = torch.tensor([chat_ids(tiny_backbone.tokenizer, "Who are you?")])
    padded = torch.cat([torch.full((1, 3), tiny_backbone.tokenizer.pad_token_id), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones_like(ids)], dim=1)
    a = prompted_logits(tiny_backbone, prompt, ids, torch.ones_like(ids))[:, -1]
    b = prompted_logits(tiny_backbone, prompt, padded, mask)[:, -1]
    assert torch.allclose(a, b, atol=1e-5)


def test_text_init_reads_the_text_it_is_given_and_has_no_default_persona(tiny_backbone):
    """The model layer does not know the target, so a text init without a text is refused rather than
    starting every country from one country's persona (the CLI passes culturalign.targets.persona)."""
    weight = tiny_backbone.model.get_input_embeddings().weight.detach().float()
    ids = tiny_backbone.tokenizer("You are a person from Japan.", add_special_tokens=False)["input_ids"]
    v = init_prompt(tiny_backbone, len(ids), "text", "You are a person from Japan.")
    assert torch.equal(v, weight[torch.tensor(ids)])
    for text in (None, ""):
        with pytest.raises(CulturalignError, match="init_text"):
            init_prompt(tiny_backbone, 4, "text", text)


def test_round_trip_and_mismatch_errors(tiny_backbone, tiny_model_dir, tmp_path):
    prompt = init_prompt(tiny_backbone, 3, "vocab")
    save_prompt(tmp_path / "r", prompt, _meta(tiny_backbone, 3))
    loaded, meta = load_prompt(tmp_path / "r", tiny_backbone)
    assert torch.equal(loaded, prompt) and meta["num_virtual_tokens"] == 3
    cfg = json.loads((tmp_path / "r" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "PROMPT_TUNING" and cfg["task_type"] == "CAUSAL_LM" and cfg["token_dim"] == 32

    # Another backbone id: refused unless forced.
    other = {"backbone": {"model_id": "someone/else"}, "num_virtual_tokens": 3}
    save_prompt(tmp_path / "o", prompt, other)
    with pytest.raises(CulturalignError, match="trained on 'someone/else'.*--force"):
        load_prompt(tmp_path / "o", tiny_backbone)
    assert torch.equal(load_prompt(tmp_path / "o", tiny_backbone, force=True)[0], prompt)

    # Another hidden size: refused even with force.
    save_prompt(tmp_path / "h", torch.zeros(3, 48), _meta(tiny_backbone, 3))
    with pytest.raises(CulturalignError, match="hidden size 48"):
        load_prompt(tmp_path / "h", tiny_backbone, force=True)


def test_last_is_swapped_atomically(tiny_backbone, tmp_path):
    p1, p2 = init_prompt(tiny_backbone, 2, seed=1), init_prompt(tiny_backbone, 2, seed=2)
    save_last(tmp_path, p1, _meta(tiny_backbone, 2), {"optimizer": b"one", "history": torch.ones(2, 3)})
    save_last(tmp_path, p2, _meta(tiny_backbone, 2), {"optimizer": b"two", "history": torch.zeros(1, 3)})
    prompt, _, state = load_last(tmp_path)
    assert torch.equal(prompt, p2) and state["optimizer"] == b"two" and state["history"].shape == (1, 3)
    # A swap cut short after `last` was moved aside: the old copy is still found.
    (tmp_path / "last").rename(tmp_path / "last.old")
    assert load_last(tmp_path)[2]["optimizer"] == b"two"


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "x" * 101])
def test_run_names_cannot_escape(bad):
    with pytest.raises(CulturalignError, match="run name"):
        sanitise_run_name(bad)


def test_backbone_is_frozen_and_missing_model_is_clear(tiny_model_dir):
    bb = load_backbone(str(tiny_model_dir), dtype="float32", device="cpu")
    assert not any(p.requires_grad for p in bb.model.parameters()) and not bb.model.training
    with pytest.raises(CulturalignError, match="no such directory"):
        load_backbone("./does/not/exist")
