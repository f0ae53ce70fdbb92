"""Differential Evolution (the paper's optimizer) through nevergrad."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from culturalign.blackbox.nevergrad_base import NevergradOptimizer
from culturalign.blackbox.protocol import SearchSetup
from culturalign.errors import CulturalignError


class DE(NevergradOptimizer):
    """Differential Evolution over the soft prompt (nevergrad `DifferentialEvolution`).

    Args:
        popsize: Population size; one generation = one batched survey of `popsize` prompts.
        F1: Differential weight on the (random - random) term (nevergrad: x + F1 (a - b) + F2 (best - x)).
        F2: Differential weight on the (best - current) term.
        crossover: Crossover: a rate CR in (0, 1], or one of twopoints, onepoint, dimension, random.
        initialization: How the first population is drawn: parametrization (Gaussian around the init prompt), LHS or QR.
        restart_after: Generations without a better loss than the run's best before DE starts a fresh population
            around the best point so far (None: never). The run's best is kept; the new population gets the rest of the budget.
        restart_sigma: Spread of a restarted population, as a fraction of search.sigma.
    """

    name = "DE"

    def __init__(
        self,
        popsize: int = 16,
        F1: float = 0.8,
        F2: float = 0.8,
        crossover: float | Literal["twopoints", "onepoint", "dimension", "random"] = 0.5,
        initialization: Literal["parametrization", "LHS", "QR"] = "parametrization",
        restart_after: int | None = None,
        restart_sigma: float = 0.5,
    ) -> None:
        super().__init__(popsize)
        if isinstance(crossover, float) and not 0 < crossover <= 1:
            raise CulturalignError(f"optimizer.crossover={crossover} must be in (0, 1] or a named crossover")
        if F1 <= 0 or F2 <= 0:
            raise CulturalignError(f"optimizer.F1={F1}, F2={F2} must be > 0; the usual range is 0.5-1.0")
        if restart_after is not None and restart_after < 1:
            raise CulturalignError(f"optimizer.restart_after={restart_after} must be >= 1 generation, or null for no restarts")
        if restart_sigma <= 0:
            raise CulturalignError(f"optimizer.restart_sigma={restart_sigma} must be > 0 (a fraction of search.sigma); try 0.5")
        self.F1, self.F2, self.crossover, self.initialization = F1, F2, crossover, initialization
        self.restart_after, self.restart_sigma = restart_after, restart_sigma

    def setup(self, setup: SearchSetup) -> None:
        super().setup(setup)
        self._best_loss, self._best_z = np.inf, np.zeros(setup.dim)
        self._stalled, self.restarts, self._told = 0, 0, 0

    def tell(self, candidates: np.ndarray, losses: np.ndarray) -> None:
        super().tell(candidates, losses)
        self._told += len(losses)
        i = int(np.argmin(losses))
        if losses[i] < self._best_loss:
            self._best_loss, self._best_z, self._stalled = float(losses[i]), np.array(candidates[i], dtype=np.float64), 0
        else:
            self._stalled += 1
        if self.restart_after is not None and self._stalled >= self.restart_after:
            self._restart()

    def _restart(self) -> None:
        """A new nevergrad DE around the best point: the old population has stopped finding anything better.

        Decided from the told losses alone and seeded by (run seed, restart number), so a replayed
        record restarts at the same generation with the same draws and resume stays exact.
        """
        self.restarts += 1
        setup = self._setup
        state = np.random.RandomState([setup.seed, self.restarts])
        remaining = max(self.popsize, setup.budget - self._told)
        self._opt = self._start(self._best_z, setup.sigma * self.restart_sigma, state, remaining)
        self._stalled = 0

    def progress(self) -> dict[str, int]:
        return {"restarts": self.restarts} if self.restart_after is not None else {}

    def recommend(self) -> np.ndarray:
        # After a restart the new population's recommendation may be worse than the run's best point.
        return self._best_z.copy() if self.restarts else super().recommend()

    def _build(self, parametrization: Any, budget: int) -> Any:
        import nevergrad as ng

        # popsize is passed explicitly: nevergrad otherwise uses max(30, num_workers).
        family = ng.families.DifferentialEvolution(
            crossover=self.crossover, F1=self.F1, F2=self.F2, popsize=self.popsize, initialization=self.initialization
        )
        return family(parametrization, budget=budget, num_workers=self.popsize)
