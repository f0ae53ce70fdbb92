"""What a black-box optimizer implements: setup / ask / tell / recommend over a flat search vector.

The shared loop (`culturalign.blackbox.loop`) does everything else (fitness, checkpoints, resume,
distribution), so a new black-box optimizer is one small module.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from culturalign.blackbox.space import Search
from culturalign.errors import CulturalignError
from culturalign.fit.launch import LaunchArgs
from culturalign.fit.run import FitContext
from culturalign.optimizers.base import Optimizer


@dataclass
class SearchSetup:
    """What the loop tells a black-box optimizer before the first ask."""

    dim: int
    budget: int  # total candidate evaluations
    sigma: float  # initial spread, in search-space units (the start point is the origin)
    seed: int


class BlackBoxOptimizer(Optimizer):
    """Minimise f(z), z in R^dim, starting around z = 0 (the init prompt).

    Given the same setup (seed included) and the same losses, ask() must return the same candidates,
    bit for bit, and use no random state but its own: resume replays the run's asks and tells into a
    fresh instance (`culturalign.blackbox.replay`) and refuses if an ask differs.
    """

    def __init__(self, popsize: int = 16) -> None:
        if popsize < 2:
            raise CulturalignError(f"optimizer.popsize={popsize} must be >= 2 (a population of 1 cannot recombine); try 16")
        self.popsize = popsize

    def fit(self, ctx: FitContext, launch: LaunchArgs, search: Search = Search()) -> dict[str, Any]:  # noqa: B008
        """The shared ask-score-tell loop; `search` is the black-box-only option group (`--search.*`)."""
        from culturalign.blackbox.loop import run_blackbox

        return run_blackbox(ctx, self, search)

    @abstractmethod
    def setup(self, setup: SearchSetup) -> None:
        """Create the underlying optimizer (seeded)."""

    @abstractmethod
    def ask(self) -> np.ndarray:
        """A generation of candidates, shape (popsize, dim)."""

    @abstractmethod
    def tell(self, candidates: np.ndarray, losses: np.ndarray) -> None:
        """Report the losses of the candidates returned by the last ask."""

    @abstractmethod
    def recommend(self) -> np.ndarray:
        """The optimizer's current best guess, shape (dim,)."""

    def progress(self) -> dict[str, int]:
        """Counters worth showing beside the loss (e.g. DE's restarts): on the progress bar and in meta.json."""
        return {}
