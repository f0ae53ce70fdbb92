"""The shared survey fitness: batched + KV-reusing equals the naive per-item computation."""

from __future__ import annotations

import pytest
import torch

from culturalign.model.chat import answer_token_ids, chat_ids
from culturalign.model.soft_prompt import init_prompt, prompted_logits
from culturalign.survey.definition import load_survey
from culturalign.survey.fitness import Answering, SurveyFitness
from culturalign.survey.scoring import Scoring, indices, target_loss

SAU = {"PDI": 72, "IDV": 48, "MAS": 43, "UAI": 64, "LTO": 27, "IVR": 14}


def naive_expected_answers(backbone, survey, prompt, reverse=False, instruction=None):
    """One forward per item per candidate, no cache, no batching: the reference."""
    ids5 = torch.tensor(answer_token_ids(backbone.tokenizer, 5))
    out = []
    for item in survey.items:
        ids = torch.tensor([chat_ids(backbone.tokenizer, survey.render(item, reverse), instruction)])
        logits = prompted_logits(backbone, prompt, ids, torch.ones_like(ids))[0, -1]
        p = torch.softmax(logits[ids5].float(), -1)
        e = float((p * torch.arange(1, 6)).sum())
        out.append(6 - e if reverse else e)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("debias", [False, True])
def test_batched_kv_fitness_equals_naive(tiny_backbone, debias):
    survey = load_survey("vsm13")
    prompts = torch.stack([init_prompt(tiny_backbone, 4, "random", seed=s) for s in range(3)])
    # Small row budget: forces several candidate and row chunks, the paths that could misalign.
    fit = SurveyFitness(tiny_backbone, survey, SAU, Scoring(), Answering(debias=debias, max_batch_rows=20))
    res = fit(prompts)
    for n in range(3):
        ref = naive_expected_answers(tiny_backbone, survey, prompts[n])
        if debias:
            ref = (ref + naive_expected_answers(tiny_backbone, survey, prompts[n], reverse=True)) / 2
        assert torch.allclose(res.answers[n, 0], ref, atol=1e-4), (res.answers[n, 0] - ref).abs().max()
        idx = indices(ref.unsqueeze(0), survey, fit.constants)
        assert torch.allclose(res.indices[n], idx[0], atol=1e-2)
        assert torch.allclose(res.losses[n], target_loss(idx, survey.dimensions, SAU, Scoring())[0], atol=1e-2)
    # Different prompts must give different answers, or the equality above proves nothing.
    # (With debias a content-blind tiny model averages to exactly 3, so compare distributions.)
    assert (res.distributions[0] - res.distributions[1]).abs().max() > 1e-3


def test_fitness_is_deterministic_and_batch_independent(tiny_backbone):
    survey = load_survey("vsm13")
    prompts = torch.stack([init_prompt(tiny_backbone, 4, "vocab", seed=s) for s in range(4)])
    fit = SurveyFitness(tiny_backbone, survey, SAU)
    a, b = fit(prompts), fit(prompts)
    assert torch.equal(a.losses, b.losses)
    single = fit(prompts[2])
    assert torch.allclose(single.losses[0], a.losses[2], atol=1e-6)


def test_no_prompt_and_instruction(tiny_backbone):
    survey = load_survey("vsm13")
    plain = SurveyFitness(tiny_backbone, survey, SAU)(None)
    persona = SurveyFitness(tiny_backbone, survey, SAU, answering=Answering(instruction="You are a person from Saudi Arabia."))(None)
    ref = naive_expected_answers(tiny_backbone, survey, None, instruction="You are a person from Saudi Arabia.")
    assert torch.allclose(persona.answers[0, 0], ref, atol=1e-4)
    assert not torch.allclose(plain.answers, persona.answers)


def test_gradient_flows_through_the_same_fitness(tiny_backbone):
    survey = load_survey("vsm13")
    prompt = init_prompt(tiny_backbone, 4).requires_grad_(True)
    fit = SurveyFitness(tiny_backbone, survey, SAU, answering=Answering(max_batch_rows=10))
    res = fit(prompt, grad=True)
    res.losses.sum().backward()
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0
    with torch.no_grad():
        assert torch.allclose(res.losses.detach(), fit(prompt.detach()).losses, atol=1e-5)


def test_nan_candidate_is_failed_not_crash(tiny_backbone):
    survey = load_survey("vsm13")
    prompts = torch.stack([init_prompt(tiny_backbone, 4, seed=s) for s in range(2)])
    prompts[1, 0, 0] = float("nan")
    res = SurveyFitness(tiny_backbone, survey, SAU)(prompts)
    assert res.failed.tolist() == [False, True]
    assert res.losses[1] == 1e9 and res.losses[0] < 1e3


def test_generate_mode_parses_and_counts_invalid(tiny_backbone):
    survey = load_survey("vsm13")
    res = SurveyFitness(tiny_backbone, survey, SAU, answering=Answering(mode="generate", max_new_tokens=3))(None)
    # A random tiny model rarely writes a digit: invalid answers are counted, the loss stays finite.
    from culturalign.survey.fitness import parse_answer

    expected_invalid = sum(1 for t in res.texts[0] if parse_answer(t) != parse_answer(t))  # NaN != NaN
    assert int(res.invalid[0]) == expected_invalid
    assert torch.isfinite(res.losses).all()
    assert len(res.texts[0]) == 24


def test_parse_answer():
    from culturalign.survey.fitness import parse_answer

    assert parse_answer("3") == 3 and parse_answer("I'd say 2.") == 2
    assert parse_answer("7") != parse_answer("7") and parse_answer("none") != parse_answer("none")
