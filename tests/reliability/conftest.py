"""Fixtures for the reliability suite: a four-item survey (fast fits) and a CLI argv builder.

The tiny model comes from tests/conftest.py (`tiny_model_dir`). Fits here ask a four-item survey
instead of VSM13's 24 items: the faults under test live in the loop and the checkpoint files, not
in the survey, and six times fewer rows keep the whole suite within its time budget.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_helpers import MINI_SURVEY, fit_args


@pytest.fixture(scope="session")
def mini_survey(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("survey") / "mini.yaml"
    path.write_text(MINI_SURVEY)
    return path


@pytest.fixture
def fit_cmd(tiny_model_dir, mini_survey, tmp_path):
    """fit_cmd(*extra, budget=, popsize=, root=) -> CLI argv of a small DE fit."""

    def make(*extra: str, budget: int = 16, popsize: int = 4, root: Path | None = None) -> list[str]:
        return fit_args(tiny_model_dir, mini_survey, root or tmp_path / "runs", *extra, budget=budget, popsize=popsize)

    return make
