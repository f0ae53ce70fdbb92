"""What one loss is read from (a *reading*), how per-reading losses make one loss, and which readings a
training step draws.

The survey is asked in several renderings: wording x layout x answer order (a *group* of
SurveyFitness). A reading is what one set of six indices, and so one loss to the target, is
computed from:

    pooled      the answers of a wording's answer orders averaged item by item, then the indices
                (what `--answering.debias` always did; the default, so earlier results hold)
    per_order   each answer order's answers alone give their own indices and loss

With pooled readings the two orders can err in opposite directions and still average to the
target (NOTES.md §7); per_order makes the loss hold each order on its own. The losses of all
readings are then combined: `mean`, `max` (the worst rendering), or `mean_std` (mean + lambda * std
across readings, a variance penalty).

Sampling (`draw_readings`) is the one mechanism by which a training step sees part of the pool: GD
draws a batch per optimizer step, black-box optimizers one sample per generation that every
candidate is scored on (common random numbers). A draw depends only on (seed, step), so a resumed
run draws the same readings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from culturalign.errors import CulturalignError

READINGS = ("pooled", "per_order")
COMBINES = ("mean", "max", "mean_std")


@dataclass(frozen=True)
class Combine:
    """How per-reading losses become one loss (recorded beside every result as `readings`)."""

    reading: str = "pooled"
    how: str = "mean"
    std_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.reading not in READINGS:
            raise CulturalignError(f"survey.reading={self.reading!r} is unknown; use {' or '.join(READINGS)}")
        if self.how not in COMBINES:
            raise CulturalignError(f"survey.combine={self.how!r} is unknown; use {', '.join(COMBINES)}")
        if not self.std_weight >= 0:
            raise CulturalignError(f"survey.combine_std={self.std_weight} must be >= 0 (the lambda of mean + lambda * std)")

    def __call__(self, losses: torch.Tensor) -> torch.Tensor:
        """(N, R) per-reading losses -> (N,) combined loss."""
        if self.how == "max":
            return losses.max(-1).values
        mean = losses.mean(-1)
        if self.how == "mean_std":
            # Population std (ddof 0): one reading has spread 0, not NaN.
            return mean + self.std_weight * losses.std(-1, unbiased=False)
        return mean

    def record(self) -> dict[str, object]:
        return {"reading": self.reading, "combine": self.how} | ({"combine_std": self.std_weight} if self.how == "mean_std" else {})


def draw_readings(num: int, seed: int, step: int, sample: int = 0, dropout: float = 0.0) -> list[int]:
    """The readings (0..num-1, ascending) a step uses; never none.

    sample K > 0: K readings without replacement (all of them when K >= num). Else `dropout` p: each
    reading is dropped with probability p (GD's `wording_dropout`). Else all. Seeded by (seed, step)
    only, so every candidate of a generation, every rank and a resumed run draw the same readings."""
    if num < 1:
        raise CulturalignError("nothing to draw from: the survey has no readings")
    if sample < 0:
        raise CulturalignError(f"survey.sample={sample} must be >= 0 (0 = every reading every step)")
    if sample >= num or (not sample and (dropout <= 0 or num == 1)):
        return list(range(num))
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)  # the formula wording_dropout always used
    if sample:
        return sorted(torch.randperm(num, generator=gen)[:sample].tolist())
    keep = (torch.rand(num, generator=gen) >= dropout).nonzero().flatten().tolist()
    return keep or [int(torch.randint(num, (1,), generator=gen))]
