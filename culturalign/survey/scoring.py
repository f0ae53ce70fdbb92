"""From mean answers to dimension indices to a loss against a country's scores.

Every VSM13 index is linear in the mean answers: index_d = sum_k W[d, k] * m_k + C_d. With the
expected answer sum_k k * p(k) as m_k, the whole chain is differentiable in the soft prompt.

Constants C default to 50: with all answers equal every index equals its C (the weights of each
formula cancel), so C = 50 puts a neutral respondent mid-scale on Hofstede's 0..100 range. The
manual leaves C to each study; absolute losses depend on it, so every result records it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from culturalign.errors import CulturalignError
from culturalign.survey.definition import Survey

LossKind = Literal["l2", "l1"]
DEFAULT_CONSTANT = 50.0


@dataclass
class Scoring:
    """How indices and the loss are computed: recorded in every result."""

    loss: LossKind = "l2"
    """l2: Euclidean distance over the target's dimensions (the paper's text); l1: sum of absolute errors."""
    constants: dict[str, float] = field(default_factory=dict)
    """C per dimension, e.g. {PDI: 50}; dimensions not given use 50."""
    weights: dict[str, float] = field(default_factory=dict)
    """Optional per-dimension loss weights (default 1)."""

    def __post_init__(self) -> None:
        if self.loss not in ("l2", "l1"):
            raise CulturalignError(f"loss={self.loss!r} is unknown; use l2 or l1")
        for name, table in (("constants", self.constants), ("weights", self.weights)):
            for k, v in table.items():
                if not torch.isfinite(torch.tensor(float(v))):
                    raise CulturalignError(f"{name}.{k}={v} must be a finite number")
        if any(float(v) < 0 for v in self.weights.values()):
            raise CulturalignError(f"weights {self.weights} must be >= 0")

    def constants_for(self, survey: Survey) -> dict[str, float]:
        unknown = set(self.constants) - set(survey.dimensions)
        if unknown:
            raise CulturalignError(f"constants for {sorted(unknown)} but the survey has {list(survey.dimensions)}")
        return {d: float(self.constants.get(d, DEFAULT_CONSTANT)) for d in survey.dimensions}


def indices(mean_answers: torch.Tensor, survey: Survey, constants: dict[str, float]) -> torch.Tensor:
    """(N, I) mean answers -> (N, D) indices, in the order of `survey.dimensions`."""
    W = survey.weight_matrix().to(device=mean_answers.device, dtype=mean_answers.dtype)
    C = torch.tensor([constants[d] for d in survey.dimensions], device=mean_answers.device, dtype=mean_answers.dtype)
    return mean_answers @ W.T + C


def target_loss(index_values: torch.Tensor, dimensions: tuple[str, ...], target: dict[str, float], scoring: Scoring) -> torch.Tensor:
    """(N, D) indices -> (N,) loss over the dimensions the target has (missing ones are skipped)."""
    dims = [i for i, d in enumerate(dimensions) if d in target]
    if not dims:
        raise CulturalignError(f"the target has none of the survey's dimensions {list(dimensions)}")
    t = torch.tensor([target[dimensions[i]] for i in dims], device=index_values.device, dtype=index_values.dtype)
    w = torch.tensor([scoring.weights.get(dimensions[i], 1.0) for i in dims], device=t.device, dtype=t.dtype)
    err = index_values[:, dims] - t
    if scoring.loss == "l1":
        return (w * err.abs()).sum(-1)
    return (w * err.square()).sum(-1).sqrt()
